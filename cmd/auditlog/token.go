package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/pat"
)

func runToken(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "token create", "--org ID --email EMAIL [--name NAME] [--expires DURATION] [--database-url URL]")
	org := fs.String("org", "", "the org the token is for (required)")
	email := fs.String("email", "", "the member the token acts as (required)")
	name := fs.String("name", "auditlog-cli", "the token's name, recorded as metadata.via_pat on what it does")
	expires := fs.String("expires", "", "how long the token works, e.g. 720h or 90d; default: until revoked")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "the control plane's database, as a role that may insert into cloud.pats and record events (env DATABASE_URL)")
	if len(args) > 0 && isHelp(args[0]) {
		fs.Usage()
		return flag.ErrHelp
	}
	if len(args) == 0 || args[0] != "create" {
		fs.Usage()
		return errors.New("token: the one subcommand is create")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *org == "" || *email == "" {
		fs.Usage()
		return errors.New("token create: --org and --email are required")
	}
	expiresIn, err := parseExpiry(*expires)
	if err != nil {
		return fmt.Errorf("token create: --expires: %w", err)
	}
	conn, err := database.Connect(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var m pat.Minted
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) (err error) {
		m, err = pat.Mint(ctx, tx, pat.MintOpts{OrgID: *org, UserEmail: *email, Name: *name, ExpiresIn: expiresIn})
		return err
	})
	if err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	fmt.Fprintln(e.stdout, m.Token)
	until := "until revoked"
	if m.ExpiresAt != nil {
		until = "until " + m.ExpiresAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(e.stderr, "Token %q (id %s) for %s works %s. It is shown only now: store it.\n", *name, m.ID, *email, until)
	return nil
}

// parseExpiry reads a Go duration, or a number of days as "90d", up to
// pat.MaxLifetime.
func parseExpiry(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	maxDays := int(pat.MaxLifetime / (24 * time.Hour))
	tooLong := fmt.Errorf("%q is longer than the %d days a token may last; leave --expires out for a token that works until revoked", s, maxDays)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if errors.Is(err, strconv.ErrRange) || n > maxDays { // checked before multiplying, which could overflow
			return 0, tooLong
		}
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s) // fails on overflow
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration such as 720h or 90d, at most %dd", s, maxDays)
	}
	if d > pat.MaxLifetime {
		return 0, tooLong
	}
	return d, nil
}
