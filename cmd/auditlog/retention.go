package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/retention"
)

// retentionFlags configure the retention worker that serve runs in-process.
type retentionFlags struct {
	dbURL    string
	schedule string
	disabled bool
}

func (r *retentionFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.dbURL, "retention-database-url", envOr("AUDITLOG_RETENTION_DATABASE_URL", ""),
		"database for the retention worker, as a role holding audit_maintainer and audit_owner (env AUDITLOG_RETENTION_DATABASE_URL; default: the --database-url)")
	fs.StringVar(&r.schedule, "retention-schedule", envOr("AUDITLOG_RETENTION_SCHEDULE", "@hourly"),
		"when the retention worker runs a pass, in cron syntax, UTC (env AUDITLOG_RETENTION_SCHEDULE)")
	fs.BoolVar(&r.disabled, "no-retention", envOr("AUDITLOG_NO_RETENTION", "") != "",
		"do not run the retention worker in this process (env AUDITLOG_NO_RETENTION, any value)")
}

// startRetention starts the retention worker in the background, on a pool of
// its own, unless disabled. stop ends it and waits for a pass under way.
func startRetention(ctx context.Context, e env, serveURL string, r retentionFlags) (stop func(), err error) {
	if r.disabled {
		e.logger.Info("retention worker disabled")
		return func() {}, nil
	}
	pool, err := database.Pool(ctx, cmp.Or(r.dbURL, serveURL), func(c *pgxpool.Config) { c.MaxConns = 2 })
	if err != nil {
		return nil, fmt.Errorf("retention worker: %w", err)
	}
	if err := checkWorkerRole(ctx, e, pool); err != nil {
		pool.Close()
		return nil, err
	}
	w, err := retention.New(pool, retention.Config{Logger: e.logger, Schedule: r.schedule})
	if err != nil {
		pool.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	return func() {
		cancel()
		<-done
		pool.Close()
	}, nil
}

// checkWorkerRole refuses to start a worker whose role could not run a
// pass: one left on the API's audit_reader URL would fail every pass while
// the server looked healthy, and writers would make the leaves themselves.
// A role without audit_owner can do everything but detach: a warning.
func checkWorkerRole(ctx context.Context, e env, pool *pgxpool.Pool) error {
	var role string
	var maintainer, owner bool
	err := pool.QueryRow(ctx, `SELECT current_user, pg_has_role(current_user, 'audit_maintainer', 'MEMBER'),
		pg_has_role(current_user, 'audit_owner', 'MEMBER')`).Scan(&role, &maintainer, &owner)
	if err != nil {
		return fmt.Errorf("retention worker: check its role: %w", err)
	}
	if !maintainer {
		return fmt.Errorf("retention worker: role %q is not a member of audit_maintainer; give serve --retention-database-url "+
			"for a role holding audit_maintainer and audit_owner (docs/retention.md), or --no-retention and run the worker elsewhere", role)
	}
	if !owner {
		e.logger.Warn("retention worker: its role is not a member of audit_owner, so it cannot detach expired leaves (docs/retention.md)", "role", role)
	}
	return nil
}

func runRetention(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "retention run", "[--dry-run] [--now RFC3339] [--database-url URL]")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "database, as a role holding audit_maintainer and audit_owner (env DATABASE_URL)")
	dry := fs.Bool("dry-run", false, "print what a pass would do, change nothing")
	now := fs.String("now", "", "act as if it were this instant (RFC 3339); a pass that drops or removes refuses one later than the database's clock")
	if len(args) > 0 && isHelp(args[0]) {
		fs.Usage()
		return flag.ErrHelp
	}
	if len(args) == 0 || args[0] != "run" {
		fs.Usage()
		return fmt.Errorf("retention: want the subcommand run")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg := retention.Config{Logger: e.logger}
	if *now != "" {
		t, err := time.Parse(time.RFC3339, *now)
		if err != nil {
			return fmt.Errorf("--now: %w", err)
		}
		cfg.Now = func() time.Time { return t }
	}
	pool, err := database.Pool(ctx, *dbURL, func(c *pgxpool.Config) { c.MaxConns = 1 })
	if err != nil {
		return err
	}
	defer pool.Close()
	w, err := retention.New(pool, cfg)
	if err != nil {
		return err
	}
	pass := w.RunOnce
	if *dry {
		pass = w.DryRun
	}
	r, err := pass(ctx)
	printPass(e.stdout, r)
	return err
}

// printPass says what a retention pass did, or would do.
func printPass(out io.Writer, r retention.Report) {
	if r.Skipped {
		fmt.Fprintln(out, "Another retention worker is running a pass; this one did nothing.")
		return
	}
	if r.Clock.IsZero() {
		return // the pass did not start
	}
	verb := func(done, would string) string {
		if r.DryRun {
			return would
		}
		return done
	}
	fmt.Fprintf(out, "Retention pass as of %s%s\n", r.Clock.UTC().Format(time.RFC3339), verb("", " (dry run: nothing changed)"))
	list := func(what string, names []string) {
		fmt.Fprintf(out, "%s: %d\n", what, len(names))
		for _, n := range names {
			fmt.Fprintf(out, "  %s\n", n)
		}
	}
	list(verb("Leaves made", "Leaves to make"), r.Created)
	list(verb("Leaves dropped", "Leaves to drop"), r.Dropped)
	if len(r.Kept) > 0 {
		list("Leaves kept beyond the premake horizon (they hold events)", r.Kept)
	}
	fmt.Fprintf(out, "%s: %d\n", verb("Plan changes re-tiered", "Plan changes to re-tier"), len(r.Retiered))
	for _, c := range r.Retiered {
		state := "done"
		switch {
		case c.Waiting:
			state = "waiting: not fenced by a pass yet, or a transaction that may still write to the old tier is open"
		case r.DryRun:
			state = "ready"
		case !c.Done:
			state = "not finished"
		}
		fmt.Fprintf(out, "  org %s, %s → %s: %d events %s, %d %s (%s)\n", c.OrgID, c.FromTier, c.ToTier,
			c.Moved, verb("moved", "to move"), c.Removed, verb("removed", "to remove"), state)
	}
	list("Errors", r.Errors)
	if r.RunID != 0 {
		fmt.Fprintf(out, "Took %s; recorded as run %d in audit.retention_runs.\n", r.Duration.Round(time.Millisecond), r.RunID)
	}
}

func runPartitions(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "partitions", "[--database-url URL]")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "database, as a role holding audit_reader (env DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, err := database.Connect(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	parts, err := retention.Partitions(ctx, conn)
	if err != nil {
		return err
	}
	printPartitions(e.stdout, parts, time.Now())
	holdups, err := retention.Holdups(ctx, conn, nil)
	if err != nil {
		return err
	}
	printHoldups(e.stdout, holdups)
	return nil
}

// printHoldups says, for each leaf past its retention still stored, what
// keeps it.
func printHoldups(out io.Writer, holdups []retention.Holdup) {
	if len(holdups) == 0 {
		return
	}
	fmt.Fprintf(out, "\nPast their retention, still stored: %d\n", len(holdups))
	for _, h := range holdups {
		why := "held by nothing: the next retention pass drops it"
		switch {
		case h.HeldBy == "plan change" && h.ChangeID != nil:
			why = fmt.Sprintf("held by plan change %d, not re-tiered yet, until the next pass", *h.ChangeID)
		case h.HeldBy == "transactions":
			pids := make([]string, len(h.PIDs))
			for i, p := range h.PIDs {
				pids[i] = fmt.Sprint(p)
			}
			waits := "its detach waits for the transactions that hold its tier table"
			if h.State == "detached" {
				waits = "its drop waits for plan changes not committed yet"
			}
			why = fmt.Sprintf("%s: pids %s (see pg_stat_activity)", waits, strings.Join(pids, ", "))
		}
		fmt.Fprintf(out, "  %s (%s, expired %s UTC, %s): %s\n", h.Leaf, h.Tier,
			h.ExpiresAt.UTC().Format("2006-01-02 15:04"), h.State, why)
	}
}

// printPartitions writes the leaves as a table, one row per leaf, then a
// total per tier.
func printPartitions(out io.Writer, parts []retention.Partition, now time.Time) {
	const day = "2006-01-02"
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tLEAF\tFROM (UTC)\tTO (UTC)\tEXPIRES (UTC)\tROWS (EST.)\tSIZE\tSTATE")
	type total struct {
		leaves int
		bytes  int64
	}
	var tiers []string
	totals := map[string]*total{}
	for _, p := range parts {
		rows, state := "-", ""
		if p.EstimatedRows != nil {
			rows = fmt.Sprint(*p.EstimatedRows)
		}
		switch {
		case p.DetachPending:
			state = "detach pending"
		case !p.ExpiresAt.After(now):
			state = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Tier, p.Leaf, p.RangeStart.UTC().Format(day),
			p.RangeEnd.UTC().Format(day), p.ExpiresAt.UTC().Format(day), rows, size(p.Bytes), state)
		if totals[p.Tier] == nil {
			tiers = append(tiers, p.Tier)
			totals[p.Tier] = &total{}
		}
		totals[p.Tier].leaves++
		totals[p.Tier].bytes += p.Bytes
	}
	tw.Flush()
	var sums []string
	for _, t := range tiers {
		noun := "leaves"
		if totals[t].leaves == 1 {
			noun = "leaf"
		}
		sums = append(sums, fmt.Sprintf("%s: %d %s, %s", t, totals[t].leaves, noun, size(totals[t].bytes)))
	}
	if len(sums) == 0 {
		sums = append(sums, "no leaves")
	}
	fmt.Fprintf(out, "\n%s\n", strings.Join(sums, "; "))
}

// size formats a byte count the way pg_size_pretty does.
func size(b int64) string {
	units := []string{"bytes", "kB", "MB", "GB", "TB"}
	i, v := 0, float64(b)
	for v >= 10*1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d bytes", b)
	}
	return fmt.Sprintf("%.0f %s", v, units[i])
}
