// Package demo fills a database with a living control plane: four orgs, one
// on each plan and one upgraded, their people, clusters and tokens, and
// their history. The recent part is made the way the control plane makes
// it, each mutation in a transaction that records its event through the
// auditlog package; the older part, which fills each plan's retention
// window, goes through the bulk import. Run does it all in one transaction,
// once: a database that has the demo orgs is left alone.
package demo

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/importer"
	"github.com/auditlog/auditlog/internal/pat"
)

// Config configures Run.
type Config struct {
	// Logger receives what the demo does; default discard.
	Logger *slog.Logger
	// Now is the clock the history is laid out on; default time.Now.
	Now func() time.Time
	// Progress, if set, receives the bulk import's progress.
	Progress func(importer.Progress)
	// Seed makes the history reproducible; runs with the same seed and
	// clock make the same events.
	Seed uint64
}

// Org is a demo org.
type Org struct {
	ID, Name, Plan string
}

// Result is what Run did.
type Result struct {
	// Created is false when the demo was already there and Run did nothing.
	Created bool
	// Orgs are the demo orgs, with their plans now.
	Orgs []Org
	// Recorded is the number of events the live part recorded.
	Recorded int
	// Imported is the report of the history's bulk import.
	Imported importer.Report
}

//go:embed schema.sql
var schemaSQL string

//go:embed queries.sql
var queriesSQL string

// queries are the statements of queries.sql by name.
var queries = parseQueries(queriesSQL)

// parseQueries splits a file of statements each headed by "-- name: NAME".
func parseQueries(src string) map[string]string {
	out := map[string]string{}
	var name string
	var body strings.Builder
	flush := func() {
		if name != "" {
			out[name] = strings.TrimSpace(body.String())
		}
		body.Reset()
	}
	sc := bufio.NewScanner(strings.NewReader(src))
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "-- name: "); ok {
			flush()
			name = strings.TrimSpace(n)
			continue
		}
		if !strings.HasPrefix(line, "--") {
			body.WriteString(line + "\n")
		}
	}
	flush()
	return out
}

// query is the statement of queries.sql called name.
func query(name string) string {
	q, ok := queries[name]
	if !ok {
		panic("demo: no query " + name + " in queries.sql")
	}
	return q
}

// Run makes the demo unless its orgs exist, in one transaction of db, as a
// role that owns the control-plane tables and may record and import events
// (the migrating role).
func Run(ctx context.Context, db importer.DB, cfg Config) (Result, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var res Result
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, query("lock")); err != nil {
			return fmt.Errorf("demo: lock: %w", err)
		}
		ids := make([]string, len(world))
		for i, o := range world {
			ids[i] = o.id
		}
		var existing int
		if err := tx.QueryRow(ctx, query("existing-orgs"), ids).Scan(&existing); err != nil {
			return fmt.Errorf("demo: look for demo orgs: %w", err)
		}
		if existing == 0 {
			r := newRunner(tx, cfg)
			if err := r.run(ctx); err != nil {
				return err
			}
			res.Created, res.Recorded, res.Imported = true, r.recorded, r.imported
		} else {
			cfg.Logger.Info("demo: the demo orgs are there already; nothing to do", "orgs", existing)
		}
		return loadOrgs(ctx, tx, ids, &res)
	})
	return res, err
}

func loadOrgs(ctx context.Context, tx pgx.Tx, ids []string, res *Result) error {
	rows, err := tx.Query(ctx, query("list-orgs"), ids)
	if err != nil {
		return fmt.Errorf("demo: list orgs: %w", err)
	}
	res.Orgs, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Org])
	if err != nil {
		return fmt.Errorf("demo: list orgs: %w", err)
	}
	return nil
}

// person is someone with an account.
type person struct {
	id, email string
}

// runner is one run of the demo, inside its transaction.
type runner struct {
	tx       pgx.Tx
	cfg      Config
	now      time.Time
	rng      *rand.Rand
	people   map[string]*person  // by email
	clusters map[string]string   // id by name (names are unique across the demo)
	pats     map[string]string   // id by name
	seeded   map[*orgSpec]*state // what each org has, for the history
	recorded int
	imported importer.Report
}

func newRunner(tx pgx.Tx, cfg Config) *runner {
	return &runner{
		tx: tx, cfg: cfg, now: cfg.Now(), rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		people: map[string]*person{}, clusters: map[string]string{}, pats: map[string]string{},
		seeded: map[*orgSpec]*state{},
	}
}

func (r *runner) run(ctx context.Context) error {
	if _, err := r.tx.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("demo: make schema demo: %w", err)
	}
	for _, o := range world {
		if !o.live {
			if err := r.seed(ctx, o); err != nil {
				return fmt.Errorf("demo: seed %s: %w", o.name, err)
			}
		}
	}
	// History first, so the live part's plan upgrade happens after it.
	if err := r.history(ctx); err != nil {
		return err
	}
	if err := r.live(ctx); err != nil {
		return err
	}
	r.cfg.Logger.Info("demo: made", "orgs", len(world), "recorded", r.recorded, "imported", r.imported.Loaded)
	return nil
}

// seed stores an org as it was before the demo's history begins: the org,
// its members, clusters, tokens and subscription, each created when the
// spec says.
func (r *runner) seed(ctx context.Context, o *orgSpec) error {
	if _, err := r.tx.Exec(ctx, query("insert-org"), o.id, o.name, o.plan, r.now.Add(-o.age)); err != nil {
		return err
	}
	if _, err := r.tx.Exec(ctx, query("insert-org-settings"), o.id); err != nil {
		return err
	}
	st := &state{}
	r.seeded[o] = st
	for _, m := range o.members {
		p, err := r.member(ctx, r.tx, o, m.name, m.role, r.now.Add(-m.joined))
		if err != nil {
			return err
		}
		st.members = append(st.members, seededMember{person: p, role: m.role, joined: r.now.Add(-m.joined)})
	}
	for _, c := range o.clusters {
		var id string
		err := r.tx.QueryRow(ctx, query("insert-cluster"), o.id, c.name, c.env, c.region, agentVersions[0],
			pat.Hash(pat.Generate()), r.now.Add(-c.created)).Scan(&id)
		if err != nil {
			return err
		}
		r.clusters[c.name] = id
		st.clusters = append(st.clusters, seededCluster{id: id, spec: c, created: r.now.Add(-c.created)})
	}
	for _, p := range o.pats {
		var id string
		owner := r.people[o.email(p.owner)]
		if err := r.tx.QueryRow(ctx, query("insert-pat"), owner.id, p.name, pat.Hash(pat.Generate()), r.now.Add(-p.created)).Scan(&id); err != nil {
			return err
		}
		r.pats[p.name] = id
		st.pats = append(st.pats, seededPAT{id: id, spec: p, owner: owner, created: r.now.Add(-p.created)})
	}
	if o.subscription != "" {
		if _, err := r.tx.Exec(ctx, query("insert-subscription"), o.id, o.subscription, len(o.clusters)); err != nil {
			return err
		}
	}
	return nil
}

// member makes the account of name@domain (unless it exists) and a member of
// the org.
func (r *runner) member(ctx context.Context, tx pgx.Tx, o *orgSpec, name, role string, at time.Time) (*person, error) {
	email := o.email(name)
	p := r.people[email]
	if p == nil {
		p = &person{email: email}
		if err := tx.QueryRow(ctx, query("insert-user"), email, at).Scan(&p.id); err != nil {
			return nil, err
		}
		r.people[email] = p
	}
	if _, err := tx.Exec(ctx, query("insert-member"), o.id, p.id, role, at); err != nil {
		return nil, err
	}
	return p, nil
}

// requestID is a request id as the control plane's load balancer makes them.
func (r *runner) requestID() string {
	return fmt.Sprintf("req_%016x", r.rng.Uint64())
}
