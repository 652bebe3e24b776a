package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/delivery"
	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/store"
)

// listFlag is a flag given any number of times, or with commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

const subscriptionsSynopsis = `add|list|pause|resume|rm|test --org ID [flags] [SUBSCRIPTION_ID]

  add --name NAME --url URL [--kind webhook|slack|splunk_hec] [--token T] [--action A]... [--target-type T]... [--actor-email E]...
  list                 the org's subscriptions, their lag and latest attempt
  pause|resume|rm ID
  test ID --delivery-key FILE   send a signed delivery with no events and print the answer`

func runSubscriptions(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "subscriptions", subscriptionsSynopsis)
	org := fs.String("org", "", "the org (required)")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""),
		"database, as a role holding audit_writer (add, pause, resume, rm), audit_reader (list) or audit_deliverer (test) (env DATABASE_URL)")
	as := fs.String("as", "", "the email of the person acting, recorded as the actor of the audit_stream event")
	name := fs.String("name", "", "add: the subscription's name, unique in the org")
	kind := fs.String("kind", delivery.KindWebhook, "add: webhook, slack or splunk_hec")
	// The URL (a Slack one is the secret) and the token can come from the
	// environment: a command line is readable by every local user (ps).
	rawURL := fs.String("url", envOr("AUDITLOG_SUBSCRIPTION_URL", ""), "add: the destination URL (https) (env AUDITLOG_SUBSCRIPTION_URL)")
	token := fs.String("token", envOr("AUDITLOG_SUBSCRIPTION_TOKEN", ""), "add: the Splunk HEC token (env AUDITLOG_SUBSCRIPTION_TOKEN)")
	var actions, targetTypes, actors listFlag
	fs.Var(&actions, "action", "add: an action to deliver, exact or a prefix such as cluster.* (repeatable; default all)")
	fs.Var(&targetTypes, "target-type", "add: a target type to deliver (repeatable; default all)")
	fs.Var(&actors, "actor-email", "add: an actor email to deliver (repeatable; default all)")
	var d deliverFlags
	fs.StringVar(&d.keyPath, "delivery-key", envOr("AUDITLOG_DELIVERY_KEY", ""), "test: the delivery worker's key file")
	fs.StringVar(&d.allow, "delivery-allow", envOr("AUDITLOG_DELIVERY_ALLOW", ""), "add, test: addresses or CIDR prefixes allowed although private or loopback (as the worker's)")
	if len(args) > 0 && isHelp(args[0]) {
		fs.Usage()
		return flag.ErrHelp
	}
	verbs := []string{"add", "list", "pause", "resume", "rm", "test"}
	if len(args) == 0 || !slices.Contains(verbs, args[0]) {
		fs.Usage()
		return errors.New("subscriptions: the subcommands are " + strings.Join(verbs, ", "))
	}
	verb := args[0]
	// The id may come before or after the flags.
	var ids []string
	for rest := args[1:]; ; rest = fs.Args()[1:] {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		ids = append(ids, fs.Arg(0))
	}
	if *org == "" {
		return fmt.Errorf("subscriptions %s: --org is required", verb)
	}
	var id string
	if verb == "pause" || verb == "resume" || verb == "rm" || verb == "test" {
		if len(ids) != 1 {
			return fmt.Errorf("subscriptions %s: give the subscription's id", verb)
		}
		id = ids[0]
	}
	allow, err := parseAllow(d.allow)
	if err != nil {
		return err
	}
	pool, err := database.Pool(ctx, *dbURL, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	switch verb {
	case "list":
		return listSubscriptions(ctx, e, pool, *org)
	case "test":
		if d.keyPath == "" {
			return errors.New("subscriptions test: --delivery-key is required (it opens the destination)")
		}
		key, err := delivery.LoadOrCreateKey(d.keyPath, false)
		if err != nil {
			return err
		}
		status, err := delivery.Test(ctx, pool, key, delivery.Guard{Allow: allow}, *org, id)
		if err != nil {
			return fmt.Errorf("subscriptions test: %w", err)
		}
		fmt.Fprintf(e.stdout, "HTTP %d\n", status)
		if status < 200 || status > 299 {
			return fmt.Errorf("subscriptions test: the destination answered %d", status)
		}
		return nil
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if *as != "" {
			if _, err := tx.Exec(ctx, "SELECT audit.set_context(actor_email => $1)", *as); err != nil {
				return err
			}
		}
		switch verb {
		case "add":
			newID, dest, err := delivery.Subscribe(ctx, tx, delivery.Guard{Allow: allow}, delivery.Subscription{
				OrgID: *org, Name: *name, Kind: *kind,
				Rule:        delivery.Rule{Actions: actions, TargetTypes: targetTypes, ActorEmails: actors},
				Destination: delivery.Destination{URL: *rawURL, Token: *token},
			})
			if err != nil {
				return fmt.Errorf("subscriptions add: %w", err)
			}
			fmt.Fprintln(e.stdout, newID)
			if dest.Secret != "" {
				fmt.Fprintf(e.stderr, "Signing secret (shown only now; give it to the receiver): %s\n", dest.Secret)
			}
			return nil
		case "pause":
			_, err = tx.Exec(ctx, "SELECT audit.pause_subscription($1, $2)", *org, id)
		case "resume":
			_, err = tx.Exec(ctx, "SELECT audit.resume_subscription($1, $2)", *org, id)
		case "rm":
			_, err = tx.Exec(ctx, "SELECT audit.unsubscribe($1, $2)", *org, id)
		}
		if err != nil {
			return fmt.Errorf("subscriptions %s: %w", verb, err)
		}
		return nil
	})
}

// listSubscriptions prints the org's subscriptions as a table, each with
// its latest attempt.
func listSubscriptions(ctx context.Context, e env, pool *pgxpool.Pool, org string) error {
	streams, err := store.New(pool).Streams(ctx, org)
	if err != nil {
		return fmt.Errorf("subscriptions list: %w", err)
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tKIND\tHOST\tSTATE\tPOSITION\tLAG\tLAST ATTEMPT")
	for _, s := range streams {
		last := "-"
		if len(s.Attempts) > 0 {
			a := s.Attempts[0]
			last = a.AttemptedAt.UTC().Format("2006-01-02T15:04:05Z")
			if a.Status != nil {
				last += fmt.Sprintf(" HTTP %d", *a.Status)
			}
			if a.Error != nil {
				last += " " + *a.Error
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.ID, s.Name, s.Kind, s.Host, s.State, s.Position, s.Lag, last)
	}
	return w.Flush()
}
