// Package retention is the retention worker: on a cron schedule, one pass
// (1) premakes the leaves of every tier a few days ahead, (2) re-tiers the
// orgs whose plan changed, in bounded batches, (3) drops every leaf wholly
// past its tier's retention (DETACH PARTITION ... CONCURRENTLY, then DROP
// TABLE, with a lock timeout and retries, so that inserts and reads never
// queue behind it), and (4) records what it did in audit.retention_runs.
// Re-tiering comes before dropping: after an upgrade, the org's events in
// an old tier's leaf that has just expired move to the new tier first (a
// leaf still needed by a change not yet re-tiered is not dropped at all).
//
// One worker acts at a time whatever the number of replicas: a pass holds a
// session advisory lock, and a pass that cannot take it does nothing. A pass
// that stopped half-way (a crash between the two transactions of a concurrent
// detach, say) is finished by the next one. See docs/retention.md.
//
// The work and its checks are SQL functions (sql/retention.sql, the leaf
// lifecycle; sql/retier.sql, re-tiering) that the worker's role calls
// through audit_maintainer; the one statement it runs otherwise, the
// concurrent detach, needs audit_owner.
package retention

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/robfig/cron/v3"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/sqlstate"
)

// Acquirer hands out the connection a pass runs on; *pgxpool.Pool satisfies
// it. The pass takes the connection out of the pool and closes it at the end,
// so its role, settings and advisory lock go with it.
type Acquirer interface {
	Acquire(ctx context.Context) (*pgxpool.Conn, error)
}

// Config configures a Worker. The zero value of each field means its default.
type Config struct {
	// Logger receives one line per pass with its counts, and each error.
	// Default: discard.
	Logger *slog.Logger

	// Now is the instant a pass acts at. Default (nil): the database's
	// clock, which keeps the hosts' clocks out of it. A pass that drops or
	// removes events refuses a Now later than the database's clock; dry runs
	// may use any time.
	Now func() time.Time

	// Schedule is when Run starts a pass, in cron syntax with descriptors
	// ("@hourly", "*/15 * * * *", "@every 30m"), in UTC. Default: "@hourly".
	Schedule string

	// PremakeDays is how many days after today (UTC) each tier has a leaf
	// made ahead of time, 0 to 90. Default: 3.
	PremakeDays int

	// BatchSize is the most events one re-tier step moves or removes, in one
	// transaction. Default: 5000.
	BatchSize int

	// LockTimeout bounds every lock wait of a pass (lock_timeout). A step
	// whose wait times out is retried; whoever waits behind the worker
	// waits at most this long. Default: 1s.
	LockTimeout time.Duration

	// DetachWait bounds how long a concurrent detach waits for the
	// transactions that had the tier table open when it started (its
	// lock_timeout). That wait holds no lock anyone else queues behind, so it
	// may be longer than LockTimeout; a detach that runs out of it is left
	// pending and finished by a retry or the next pass. Default: 30s.
	DetachWait time.Duration

	// StatementTimeout bounds every statement of a pass: a batch, a drop
	// (statement_timeout); a detach gets at least DetachWait. Default: 1m.
	StatementTimeout time.Duration

	// Retries is how many more times a step is tried in one pass after a lock
	// or statement timeout. Default: 5.
	Retries int

	// Backoff is the wait before the first retry of a step; it doubles with
	// each retry after that. Default: 250ms.
	Backoff time.Duration
}

// Worker runs retention passes. Make one with New.
type Worker struct {
	db       Acquirer
	cfg      Config
	schedule cron.Schedule
	log      *slog.Logger
	id       string // host and pid, recorded with each run
}

// New returns a worker whose passes run on connections from db.
func New(db Acquirer, cfg Config) (*Worker, error) {
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.Schedule = cmp.Or(cfg.Schedule, "@hourly")
	cfg.PremakeDays = cmp.Or(cfg.PremakeDays, 3)
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 5000)
	cfg.LockTimeout = cmp.Or(cfg.LockTimeout, time.Second)
	cfg.DetachWait = cmp.Or(cfg.DetachWait, 30*time.Second)
	cfg.StatementTimeout = cmp.Or(cfg.StatementTimeout, time.Minute)
	cfg.Retries = cmp.Or(cfg.Retries, 5)
	cfg.Backoff = cmp.Or(cfg.Backoff, 250*time.Millisecond)
	if cfg.PremakeDays < 0 || cfg.PremakeDays > 90 {
		return nil, fmt.Errorf("retention: premake %d days ahead: want 0 to 90", cfg.PremakeDays)
	}
	sched, err := cron.ParseStandard(cfg.Schedule)
	if err != nil {
		return nil, fmt.Errorf("retention: schedule %q: %w", cfg.Schedule, err)
	}
	host, _ := os.Hostname()
	return &Worker{db: db, cfg: cfg, schedule: sched, log: cfg.Logger, id: fmt.Sprintf("%s:%d", host, os.Getpid())}, nil
}

// Report says what a pass did, or for a dry run what it would do.
type Report struct {
	// Clock is the instant the pass acted at.
	Clock time.Time
	// DryRun is true for a pass that changed nothing (Worker.DryRun).
	DryRun bool
	// Skipped is true when another worker held the lock: the pass did nothing.
	Skipped bool
	// Created names the leaves made ahead of time.
	Created []string
	// Dropped names the expired leaves detached and dropped, and the empty
	// ones found beyond the premake horizon (90 days past the database's
	// clock).
	Dropped []string
	// Kept names the leaves beyond the premake horizon that hold events and
	// were left in place: only a superuser can have written them.
	Kept []string
	// Retiered lists the plan changes whose events were moved in this pass.
	Retiered []Retier
	// Errors holds one message per step that failed; the next pass tries again.
	Errors []string
	// Duration is how long the pass took.
	Duration time.Duration
	// RunID is the pass's row in audit.retention_runs; 0 when not recorded.
	RunID int64
}

// Moved is the number of events moved to another tier in the pass.
func (r Report) Moved() int64 { return r.sum(func(c Retier) int64 { return c.Moved }) }

// Removed is the number of events removed in the pass because their org's
// new plan no longer retains them.
func (r Report) Removed() int64 { return r.sum(func(c Retier) int64 { return c.Removed }) }

func (r Report) sum(f func(Retier) int64) int64 {
	var n int64
	for _, c := range r.Retiered {
		n += f(c)
	}
	return n
}

// Retier is the re-tiering of one plan change (a row of audit.plan_changes).
type Retier struct {
	// ChangeID is the change's audit.plan_changes.id.
	ChangeID int64
	// OrgID is the org whose plan changed.
	OrgID string
	// FromTier is the plan before the change; ToTier is the org's current
	// plan, whose tier its events go to (the change's new plan, as only an
	// org's latest change is re-tiered).
	FromTier, ToTier string
	// Moved and Removed count the events moved to ToTier and removed (for a
	// dry run: that would be).
	Moved, Removed int64
	// Done is true once the org has nothing left in FromTier.
	Done bool
	// Waiting is true for a change not ready yet: a transaction that may
	// still write to an old tier of the org is running, or (in a dry run,
	// which fences nothing) no pass has fenced the change yet. Only dry runs
	// list such changes.
	Waiting bool
}

// RunOnce runs one pass: premake, re-tier, drop, record. A pass whose steps
// failed returns its report and an error naming them; the next pass retries.
// Against a hot standby it does nothing and returns an error wrapping
// database.ErrStandby.
func (w *Worker) RunOnce(ctx context.Context) (Report, error) { return w.pass(ctx, false) }

// DryRun reports what a pass would do, changing nothing and recording
// nothing. It may use any clock.
func (w *Worker) DryRun(ctx context.Context) (Report, error) { return w.pass(ctx, true) }

// Run runs a pass at once and then on the schedule until ctx ends, never two
// at a time in this process; it returns once a pass under way has stopped.
// Errors are logged, not returned.
func (w *Worker) Run(ctx context.Context) {
	job := cron.NewChain(cron.SkipIfStillRunning(cronLogger{w.log})).Then(cron.FuncJob(func() {
		if ctx.Err() != nil {
			return
		}
		if _, err := w.RunOnce(ctx); err != nil && ctx.Err() == nil {
			w.log.Error("retention pass failed", "err", err)
		}
	}))
	c := cron.New(cron.WithLocation(time.UTC), cron.WithLogger(cronLogger{w.log}))
	c.Schedule(w.schedule, job)
	var first sync.WaitGroup
	first.Go(job.Run)
	c.Start()
	w.log.Info("retention worker started", "schedule", w.cfg.Schedule)
	<-ctx.Done()
	<-c.Stop().Done()
	first.Wait()
	w.log.Info("retention worker stopped")
}

// pass is one pass in progress.
type pass struct {
	w    *Worker
	conn *pgx.Conn
	dry  bool
	r    Report
	errs []error
}

func (w *Worker) pass(ctx context.Context, dry bool) (Report, error) {
	start := time.Now()
	pooled, err := w.db.Acquire(ctx)
	if err != nil {
		return Report{DryRun: dry}, fmt.Errorf("retention: connect: %w", err)
	}
	conn := pooled.Hijack()
	// Closing ends the session: role and settings go with it, and so would
	// the advisory lock, but only once the server has noticed; unlocking
	// first frees it for the next pass at once.
	defer conn.Close(context.WithoutCancel(ctx))
	p := &pass{w: w, conn: conn, dry: dry, r: Report{DryRun: dry}}
	if !dry {
		if err := database.CheckPrimary(ctx, conn, "retention worker"); err != nil {
			return p.r, err
		}
	}

	var locked bool
	if err := conn.QueryRow(ctx, tryLockSQL, database.RetentionLock).Scan(&locked); err != nil {
		return p.r, fmt.Errorf("retention: advisory lock: %w", err)
	}
	if !locked {
		p.r.Skipped = true
		w.log.Info("retention pass skipped: another worker is running one")
		return p.r, nil
	}
	defer conn.Exec(context.WithoutCancel(ctx), unlockSQL, database.RetentionLock)
	if err := p.asMaintainer(ctx); err != nil {
		return p.r, fmt.Errorf("retention: %w", err)
	}
	var started time.Time
	if err := conn.QueryRow(ctx, clockSQL, w.now(), !dry).Scan(&p.r.Clock, &started); err != nil {
		return p.r, fmt.Errorf("retention: clock: %w", err)
	}

	for _, step := range []func(context.Context){p.premake, p.retier, p.drop} {
		if ctx.Err() == nil {
			step(ctx)
		}
	}
	p.r.Duration = time.Since(start)
	if ctx.Err() != nil {
		return p.r, fmt.Errorf("retention: pass interrupted: %w", ctx.Err())
	}
	if !dry {
		p.record(ctx, started)
	}
	w.log.Info("retention pass", "dry_run", dry, "clock", p.r.Clock, "leaves_created", len(p.r.Created),
		"leaves_dropped", len(p.r.Dropped), "orgs_retiered", len(p.orgsRetiered()), "rows_moved", p.r.Moved(),
		"rows_removed", p.r.Removed(), "errors", len(p.r.Errors), "duration", p.r.Duration.Round(time.Millisecond))
	if len(p.errs) > 0 {
		return p.r, fmt.Errorf("retention: %d step(s) failed: %w", len(p.errs), errors.Join(p.errs...))
	}
	return p.r, nil
}

// now is the clock argument of the SQL functions: NULL for the database's.
func (w *Worker) now() *time.Time {
	if w.cfg.Now == nil {
		return nil
	}
	t := w.cfg.Now()
	return &t
}

// premake makes the leaves of the coming days (or lists them, dry).
func (p *pass) premake(ctx context.Context) {
	sql := premakeSQL
	if p.dry {
		sql = missingLeavesSQL
	}
	err := p.retry(ctx, func() error {
		rows, err := p.conn.Query(ctx, sql, p.w.cfg.PremakeDays, p.r.Clock)
		if err != nil {
			return err
		}
		p.r.Created, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	p.fail("premake leaves", err)
}

// list runs a query of the pass that takes its clock, and collects the rows.
func list[T any](ctx context.Context, p *pass, sql string) ([]T, error) {
	rows, err := p.conn.Query(ctx, sql, p.r.Clock)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[T])
}

// expiredLeaf is a row of audit.expired_leaves.
type expiredLeaf struct {
	Tier      string `db:"tier"`
	Leaf      string `db:"leaf"`
	DetachSQL string `db:"detach_sql"`
}

// drop retires the expired leaves (or lists them, dry). A tier table allows
// one pending detach at a time, so a leaf that cannot be retired leaves the
// rest of its tier to the next pass.
func (p *pass) drop(ctx context.Context) {
	leaves, err := list[expiredLeaf](ctx, p, expiredLeavesSQL)
	if err != nil {
		p.fail("list expired leaves", err)
		return
	}
	blocked := map[string]bool{}
	for _, l := range leaves {
		if p.dry {
			p.r.Dropped = append(p.r.Dropped, l.Leaf)
			continue
		}
		if blocked[l.Tier] || ctx.Err() != nil {
			continue
		}
		var state string
		err := p.retry(ctx, func() (err error) {
			state, err = p.retire(ctx, l)
			return err
		})
		switch {
		case err != nil:
			blocked[l.Tier] = true
			p.fail("drop leaf "+l.Leaf, err)
		case state == "dropped":
			p.r.Dropped = append(p.r.Dropped, l.Leaf)
		case state == "kept":
			p.r.Kept = append(p.r.Kept, l.Leaf)
			p.w.log.Warn("retention: leaf beyond the premake horizon holds events; kept", "leaf", l.Leaf)
		}
	}
}

// retire takes one expired leaf as far as it goes: detached (as audit_owner)
// if attached, then dropped, a pending detach being finished first. It
// returns audit.drop_leaf's last answer.
func (p *pass) retire(ctx context.Context, l expiredLeaf) (state string, err error) {
	state, err = p.dropLeaf(ctx, l.Leaf)
	if err != nil || state != "attached" {
		return state, err
	}
	if err := p.asOwner(ctx, l.DetachSQL); err != nil {
		return "", err
	}
	return p.dropLeaf(ctx, l.Leaf)
}

func (p *pass) dropLeaf(ctx context.Context, leaf string) (state string, err error) {
	err = p.conn.QueryRow(ctx, dropLeafSQL, leaf, p.r.Clock).Scan(&state)
	return state, err
}

// asMaintainer makes the session audit_maintainer, with the pass's timeouts:
// how every step but the detach runs.
func (p *pass) asMaintainer(ctx context.Context) error {
	_, err := p.conn.Exec(ctx, sessionSQL, "audit_maintainer", millis(p.w.cfg.LockTimeout), millis(p.w.cfg.StatementTimeout))
	if err != nil {
		return fmt.Errorf("set role audit_maintainer (grant audit_maintainer to the worker's role): %w", err)
	}
	return nil
}

// asOwner runs one detach statement as audit_owner, waiting at most
// DetachWait, and is audit_maintainer again after it.
func (p *pass) asOwner(ctx context.Context, sql string) error {
	cfg := p.w.cfg
	_, err := p.conn.Exec(ctx, sessionSQL, "audit_owner", millis(cfg.DetachWait), millis(max(cfg.DetachWait, cfg.StatementTimeout)))
	if err != nil {
		return fmt.Errorf("set role audit_owner, needed to detach (grant audit_owner to the worker's role, see docs/retention.md): %w", err)
	}
	_, err = p.conn.Exec(ctx, sql)
	if p.conn.IsClosed() { // cancelled: the session is gone, and its role with it
		return err
	}
	return errors.Join(err, p.asMaintainer(ctx))
}

// pendingChange is a row of audit.pending_plan_changes.
type pendingChange struct {
	ID       int64  `db:"id"`
	OrgID    string `db:"org_id"`
	FromTier string `db:"from_tier"`
	ToTier   string `db:"to_tier"`
	Ready    bool   `db:"ready"`
	ToMove   int64  `db:"to_move"`
	ToRemove int64  `db:"to_remove"`
}

// fence fences the plan changes no snapshot can miss any more
// (audit.fence_plan_changes), then, while fenced changes still wait for
// transactions older than their fence (usually a moment from ending), looks
// again after Backoff, doubling, at most Retries times: so a change is
// re-tiered in the pass that fences it, not an interval later.
func (p *pass) fence(ctx context.Context) error {
	wait := p.w.cfg.Backoff
	for attempt := 0; ; attempt++ {
		var waiting int
		if err := p.conn.QueryRow(ctx, fenceSQL).Scan(&waiting); err != nil || waiting == 0 || attempt >= p.w.cfg.Retries {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// retier moves the events of orgs whose plan changed, batch by batch (or
// counts them, dry).
func (p *pass) retier(ctx context.Context) {
	if !p.dry {
		p.fail("fence plan changes", p.fence(ctx))
	}
	changes, err := list[pendingChange](ctx, p, pendingChangesSQL)
	if err != nil {
		p.fail("list plan changes", err)
		return
	}
	for _, c := range changes {
		rt := Retier{ChangeID: c.ID, OrgID: c.OrgID, FromTier: c.FromTier, ToTier: c.ToTier, Waiting: !c.Ready}
		switch {
		case p.dry:
			rt.Moved, rt.Removed = c.ToMove, c.ToRemove
			p.r.Retiered = append(p.r.Retiered, rt)
			continue
		case !c.Ready:
			p.w.log.Debug("retention: plan change not ready to re-tier", "change", c.ID, "org", c.OrgID)
			continue
		}
		for !rt.Done && ctx.Err() == nil {
			var moved, removed int64
			err := p.retry(ctx, func() error {
				return p.conn.QueryRow(ctx, retierSQL, c.ID, p.w.cfg.BatchSize, p.r.Clock).Scan(&moved, &removed, &rt.Done)
			})
			if err != nil {
				p.fail(fmt.Sprintf("re-tier org %s (plan change %d)", c.OrgID, c.ID), err)
				break
			}
			rt.Moved += moved
			rt.Removed += removed
		}
		p.r.Retiered = append(p.r.Retiered, rt)
	}
}

func (p *pass) orgsRetiered() []string {
	var orgs []string
	for _, c := range p.r.Retiered {
		if c.Done {
			orgs = append(orgs, c.OrgID)
		}
	}
	return orgs
}

// record writes the pass to audit.retention_runs.
func (p *pass) record(ctx context.Context, started time.Time) {
	err := p.conn.QueryRow(ctx, recordRunSQL, started, p.r.Clock, p.w.id, p.r.Created, p.r.Dropped,
		p.orgsRetiered(), p.r.Moved(), p.r.Removed(), p.r.Errors).Scan(&p.r.RunID)
	p.fail("record the run", err)
}

// fail notes a failed step, if err is not nil.
func (p *pass) fail(step string, err error) {
	if err == nil {
		return
	}
	err = fmt.Errorf("%s: %w", step, err)
	p.errs = append(p.errs, err)
	p.r.Errors = append(p.r.Errors, err.Error())
	if errors.Is(err, context.Canceled) {
		// A shutdown: the pass reports it interrupted, nothing went wrong.
		p.w.log.Info("retention step cut short", "step", step)
		return
	}
	p.w.log.Error("retention step failed", "step", step, "err", err)
}

// retry runs f until it succeeds, fails for a reason other than a timeout,
// or has been retried Config.Retries times, waiting Config.Backoff, then
// twice as long each time, in between.
func (p *pass) retry(ctx context.Context, f func() error) error {
	wait := p.w.cfg.Backoff
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil || attempt >= p.w.cfg.Retries || !transient(err) || ctx.Err() != nil {
			return err
		}
		p.w.log.Info("retention step will be retried", "attempt", attempt+1, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// transient says whether err is worth retrying: a lock or statement timeout,
// a deadlock or a serialization failure.
func transient(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case sqlstate.LockNotAvailable, sqlstate.QueryCanceled, sqlstate.DeadlockDetected, sqlstate.SerializationFailure:
		return true
	}
	return false
}

func millis(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

// cronLogger hands the scheduler's messages to slog.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.log.Debug("retention scheduler: "+msg, kv...) }

func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("retention scheduler: "+msg, append(kv, "err", err)...)
}
