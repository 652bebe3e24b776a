package verify_test

import (
	"context"
	"crypto/ed25519"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/internal/verify"
	"github.com/auditlog/auditlog/sealer"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// sealedOrg records n events of a new org, seals them, stops the sealer and
// returns the database's superuser URL and pool, the org and its event ids
// in seq order.
func sealedOrg(t *testing.T, n int, key ed25519.PrivateKey) (string, *pgxpool.Pool, string, []string) {
	t.Helper()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	stop := sealtest.Start(t, url, sealer.Config{Key: key})
	var ids []string
	for i := range n {
		var id string
		err := pool.QueryRow(context.Background(), "SELECT audit.log_event($1, 'cluster.token_rotated', 'c1', jsonb_build_object('n', $2::int))", org, i).Scan(&id)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	sealtest.WaitSealed(t, pool, org, int64(n))
	stop()
	return url, pool, org, ids
}

func TestOrgIntact(t *testing.T) {
	t.Parallel()
	_, pool, org, _ := sealedOrg(t, 3, nil)
	res, err := verify.Org(context.Background(), pool, strings.ToUpper(org), nil, verify.DefaultSealerWait)
	if err != nil {
		t.Fatal(err)
	}
	if res.Break != nil || res.First != 1 || res.Last != 3 || res.Verified != 3 || res.Given != 0 || res.Unsealed != 0 {
		t.Fatalf("intact chain: %+v (break %v)", res, res.Break)
	}
}

// TestOrgFindsTampering: what a superuser does to the stored log is found
// at the seq it was done.
func TestOrgFindsTampering(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// tamper changes the stored log; ids are the events in seq order.
		tamper     func(t *testing.T, pool *pgxpool.Pool, org string, ids []string)
		wantSeq    int64
		wantEvent  int // index in ids of the event the break names
		wantReason string
	}{
		{
			name: "an event's metadata changed",
			tamper: func(t *testing.T, pool *pgxpool.Pool, org string, ids []string) {
				sealtest.Tamper(t, pool, `UPDATE audit.events_free SET metadata = '{"n": 99}' WHERE org_id = $1 AND id = $2`, org, ids[2])
			},
			wantSeq: 3, wantEvent: 2, wantReason: "differs from what was sealed",
		},
		{
			name: "an event deleted, its seal kept",
			tamper: func(t *testing.T, pool *pgxpool.Pool, org string, ids []string) {
				sealtest.Tamper(t, pool, `DELETE FROM audit.events_free WHERE org_id = $1 AND id = $2`, org, ids[1])
			},
			wantSeq: 2, wantEvent: 1, wantReason: "deleted",
		},
		{
			name: "an event deleted with its seal",
			tamper: func(t *testing.T, pool *pgxpool.Pool, org string, ids []string) {
				sealtest.Tamper(t, pool, `DELETE FROM audit.events_free WHERE org_id = $1 AND id = $2`, org, ids[1])
				sealtest.Tamper(t, pool, `DELETE FROM audit.seals WHERE org_id = $1 AND seq = 2`, org)
			},
			wantSeq: 3, wantEvent: 2, wantReason: "seals 2 to 2 are missing",
		},
		{
			name: "a seal's prev_hash changed",
			tamper: func(t *testing.T, pool *pgxpool.Pool, org string, ids []string) {
				sealtest.Tamper(t, pool, `UPDATE audit.seals SET prev_hash = sha256('forged') WHERE org_id = $1 AND seq = 3`, org)
			},
			wantSeq: 3, wantEvent: 2, wantReason: "prev_hash",
		},
		{
			name: "two events swapped in seq order",
			tamper: func(t *testing.T, pool *pgxpool.Pool, org string, ids []string) {
				for _, move := range [][2]int{{2, 100}, {3, 2}, {100, 3}} {
					sealtest.Tamper(t, pool, `UPDATE audit.seals SET seq = $2 WHERE org_id = $1 AND seq = $3`, org, move[1], move[0])
				}
			},
			wantSeq: 2, wantEvent: 2, wantReason: "differs from what was sealed",
		},
		{
			name: "an event inserted directly, the seals after it renumbered",
			tamper: func(t *testing.T, pool *pgxpool.Pool, org string, ids []string) {
				sealtest.Tamper(t, pool, `UPDATE audit.seals SET seq = seq + 10 WHERE org_id = $1 AND seq >= 3`, org)
				sealtest.Tamper(t, pool, `UPDATE audit.seals SET seq = seq - 9 WHERE org_id = $1 AND seq >= 13`, org)
				// At the org's last event's instant, in its leaf (now() may be
				// past midnight UTC, on a day with no leaf).
				sealtest.Tamper(t, pool, `
					INSERT INTO audit.events_free (id, org_id, occurred_at, action, target_type, actor_type, metadata)
					SELECT '00000000-0000-4000-8000-0000000000ff', $1, max(occurred_at), 'cluster.deleted', 'cluster', 'system', '{}'
					FROM audit.events_free WHERE org_id = $1`, org)
				sealtest.Tamper(t, pool, `
					INSERT INTO audit.seals (org_id, seq, occurred_at, event_id, hash)
					SELECT $1, 3, occurred_at, id, sha256('forged') FROM audit.events_free WHERE id = '00000000-0000-4000-8000-0000000000ff'`, org)
			},
			wantSeq: 3, wantEvent: -1, wantReason: "differs from what was sealed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, pool, org, ids := sealedOrg(t, 5, nil)
			tc.tamper(t, pool, org, ids)
			res, err := verify.Org(context.Background(), pool, org, nil, verify.DefaultSealerWait)
			if err != nil {
				t.Fatal(err)
			}
			b := res.Break
			want := "00000000-0000-4000-8000-0000000000ff"
			if tc.wantEvent >= 0 {
				want = ids[tc.wantEvent]
			}
			if b == nil || b.Seq != tc.wantSeq || b.EventID != want || !strings.Contains(b.Reason, tc.wantReason) {
				t.Fatalf("break %v, want seq %d (event %s) with %q", b, tc.wantSeq, want, tc.wantReason)
			}
		})
	}
}

// TestOrgAcceptsSealsWithoutPrevHash: the seals the sealer recorded while
// migration 015 was being applied, between its commit and the code
// package's install (the audit.record_seals of before wrote no prev_hash),
// have none, though the seal before is stored; as exports take the hash of
// the seal before (internal/store/events.sql), the chain verifies from it.
func TestOrgAcceptsSealsWithoutPrevHash(t *testing.T) {
	t.Parallel()
	_, pool, org, _ := sealedOrg(t, 5, nil)
	sealtest.Tamper(t, pool, `UPDATE audit.seals SET prev_hash = NULL WHERE org_id = $1 AND seq IN (3, 4)`, org)
	res, err := verify.Org(context.Background(), pool, org, nil, verify.DefaultSealerWait)
	if err != nil {
		t.Fatal(err)
	}
	if res.Break != nil || res.First != 1 || res.Last != 5 || res.Verified != 5 {
		t.Fatalf("chain with seals recorded without prev_hash: %+v (break %v); want seq 1 to 5 verified", res, res.Break)
	}
}

// TestOrgAcceptsEventsRetentionRemoved: an expired event removed before its
// seal was pruned is no break.
func TestOrgAcceptsEventsRetentionRemoved(t *testing.T) {
	t.Parallel()
	_, pool, org, ids := sealedOrg(t, 3, nil)
	// As if the event were older than the free plan's 7 days and its leaf
	// dropped.
	sealtest.Tamper(t, pool, `UPDATE audit.seals SET occurred_at = now() - interval '8 days' WHERE org_id = $1 AND seq = 1`, org)
	sealtest.Tamper(t, pool, `DELETE FROM audit.events_free WHERE org_id = $1 AND id = $2`, org, ids[0])
	res, err := verify.Org(context.Background(), pool, org, nil, verify.DefaultSealerWait)
	if err != nil {
		t.Fatal(err)
	}
	if res.Break != nil || res.Given != 1 || res.Verified != 2 {
		t.Fatalf("chain with an expired event removed: %+v (break %v); want 1 given, 2 verified", res, res.Break)
	}
}

// TestPruneKeepsSealsOfDeletedEvents: the sealer prunes the seal of an event
// retention removed, but not of one deleted while retention keeps it:
// signing a removal checkpoint for it would hide the deletion for good.
func TestPruneKeepsSealsOfDeletedEvents(t *testing.T) {
	t.Parallel()
	url, pool, org, ids := sealedOrg(t, 3, nil)
	// Seq 1 as if expired on the free plan and its leaf dropped; seq 2
	// deleted within retention.
	sealtest.Tamper(t, pool, `UPDATE audit.seals SET occurred_at = now() - interval '8 days' WHERE org_id = $1 AND seq = 1`, org)
	sealtest.Tamper(t, pool, `DELETE FROM audit.events_free WHERE org_id = $1 AND id = ANY($2)`, org, ids[:2])

	sealtest.Start(t, url, sealer.Config{PruneEvery: 10 * time.Millisecond})
	sealtest.WaitFor(t, pool, "a removal checkpoint", func(ctx context.Context) (bool, error) {
		var ok bool
		err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT FROM audit.checkpoints WHERE org_id = $1 AND kind = 'removal')", org).Scan(&ok)
		return ok, err
	})
	var first int64
	if err := pool.QueryRow(context.Background(), "SELECT min(seq) FROM audit.seals WHERE org_id = $1", org).Scan(&first); err != nil {
		t.Fatal(err)
	}
	if first != 2 {
		t.Fatalf("after pruning, the seals start at seq %d; want 2 (seq 1 expired, seq 2 deleted)", first)
	}
	res, err := verify.Org(context.Background(), pool, org, nil, verify.DefaultSealerWait)
	if err != nil {
		t.Fatal(err)
	}
	if b := res.Break; b == nil || b.Seq != 2 || b.EventID != ids[1] || !strings.Contains(b.Reason, "deleted") {
		t.Fatalf("break %v, want the deletion at seq 2 (event %s)", b, ids[1])
	}
}

// TestOrgReadsOneSnapshot: the sealer prunes seals while verify reads, after
// it read the checkpoints and before it reads the seals; verify still sees
// one consistent state, and no break.
func TestOrgReadsOneSnapshot(t *testing.T) {
	t.Parallel()
	key := sealtest.Key(t)
	_, pool, org, ids := sealedOrg(t, 3, key)
	sealtest.Tamper(t, pool, `UPDATE audit.seals SET occurred_at = now() - interval '8 days' WHERE org_id = $1 AND seq = 1`, org)
	sealtest.Tamper(t, pool, `DELETE FROM audit.events_free WHERE org_id = $1 AND id = $2`, org, ids[0])

	// What the sealer's prune does: remove seal 1, sign its removal.
	prune := func(ctx context.Context) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		var c chain.Checkpoint
		var hash []byte
		if err := tx.QueryRow(ctx, "SELECT org_id::text, seq, hash FROM audit.prune_seals(100)").Scan(&c.OrgID, &c.Seq, &hash); err != nil {
			t.Fatalf("prune: %v", err)
		}
		c.Kind, c.Hash, c.SignedAt = "removal", chain.Hash(hash), time.Now()
		c.Sign(key)
		if _, err := tx.Exec(ctx, "SELECT audit.record_checkpoints('removal', $1, $2, $3, $4, $5, $6)",
			c.KeyID, []string{c.OrgID}, []int64{c.Seq}, [][]byte{hash}, []time.Time{c.SignedAt}, [][]byte{c.Signature}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	res, err := verify.Org(context.Background(), &interrupting{pool: pool, at: "audit.sealed_events", do: prune}, org, nil, verify.DefaultSealerWait)
	if err != nil {
		t.Fatal(err)
	}
	if res.Break != nil || res.Verified != 2 || res.Given != 1 {
		t.Fatalf("chain pruned while read: %+v (break %v); want 2 verified, 1 given", res, res.Break)
	}
}

// TestOrgWhereTheSealerHasNotReadPastTheEvents: events without a seal, and
// a sealer that has not read past their commits although its progress or
// slot says a later position; verify says the sealer is behind, not that
// seals were removed (exit status 3, not 1):
//   - a sealer that makes its slot while verify waits (its first start, a
//     slot that lost WAL, a promoted standby): the new slot is confirmed at
//     its consistent point, past the events' commits, but their seals come
//     from its first pass over the stored events, not done yet (its
//     progress is 0/0);
//   - a database restored from a dump into another server, no sealer
//     started there yet: audit.sealer_progress holds the old server's
//     position, and there is no slot.
func TestOrgWhereTheSealerHasNotReadPastTheEvents(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		// meanwhile runs while verify waits for the sealer.
		meanwhile func(ctx context.Context, pool *pgxpool.Pool, slot string) error
	}{
		{
			name: "a sealer making its slot, before its first pass",
			// What a starting sealer does first (sealer.ensureSlot).
			meanwhile: func(ctx context.Context, pool *pgxpool.Pool, slot string) error {
				_, err := pool.Exec(ctx, "SELECT audit.set_sealer_progress($1, '0/0')", slot)
				if err == nil {
					_, err = pool.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
				}
				return err
			},
		},
		{
			name: "another server's progress, restored from a dump",
			meanwhile: func(ctx context.Context, pool *pgxpool.Pool, slot string) error {
				_, err := pool.Exec(ctx, "SELECT audit.set_sealer_progress($1, 'FFFF/0')", slot)
				return err
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			url := testdb.New(t)
			pool := testdb.Pool(t, url)
			org := fixture.Org(t, pool, fixture.OrgOpts{})
			for range 2 {
				fixture.Event(t, pool, fixture.EventOpts{OrgID: org})
			}
			u, err := neturl.Parse(url)
			if err != nil {
				t.Fatal(err)
			}
			slot := sealer.SlotName(strings.TrimPrefix(u.Path, "/"))
			t.Cleanup(func() {
				pool.Exec(context.Background(), "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot)
			})
			meanwhile := func(ctx context.Context) {
				if err := c.meanwhile(ctx, pool, slot); err != nil {
					t.Error(err)
				}
			}
			res, err := verify.Org(context.Background(), &interrupting{pool: pool, at: "audit.sealer_progress", do: meanwhile}, org, nil, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if res.SealsRemoved() || !res.SealerBehind() || res.Unresolved != 2 {
				t.Fatalf("verify: %+v; want 2 events unresolved and the sealer behind, not seals removed", res)
			}
		})
	}
}

// TestOrgWithMoreEventsWithoutASealThanItLooksFor: an attacker removed the
// newest seal and rewound the head while the sealer was stopped, and more
// than verify.PendingMax older events (an import) wait for the sealer.
// Verify looks for the seals of the oldest PendingMax again, which the
// sealer, started meanwhile, records; the removed seal is not among them.
// That is not a verified chain (nor an event "committed while verify ran").
func TestOrgWithMoreEventsWithoutASealThanItLooksFor(t *testing.T) {
	t.Parallel()
	url, pool, org, _ := sealedOrg(t, 3, nil)
	sealtest.Tamper(t, pool, "DELETE FROM audit.seals WHERE org_id = $1 AND seq = 3", org)
	sealtest.Tamper(t, pool, "UPDATE audit.seal_heads h SET seq = 2, hash = s.hash FROM audit.seals s WHERE h.org_id = $1 AND s.org_id = h.org_id AND s.seq = 2", org)
	fixture.Event(t, pool, fixture.EventOpts{OrgID: org, OccurredAt: time.Now().AddDate(0, 0, -2)})
	if _, err := pool.Exec(context.Background(), `
		INSERT INTO audit.events_free (id, org_id, occurred_at, action, target_type, actor_type, metadata)
		SELECT gen_random_uuid(), $1, now() - interval '2 days' + i * interval '1 ms', 'auth.signout', 'auth', 'system', '{}'
		FROM generate_series(1, $2::int) i`, org, verify.PendingMax); err != nil {
		t.Fatal(err)
	}
	startSealer := func(context.Context) { sealtest.Start(t, url, sealer.Config{}) }
	res, err := verify.Org(context.Background(), &interrupting{pool: pool, at: "audit.sealer_progress", do: startSealer}, org, nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Broken() && !res.Unproved() || res.Unchecked != 2 {
		t.Fatalf("verify: break %v, %d unresolved, %d unchecked, %d unsealed, sealer passed %v; want the chain not verified, 2 events unchecked",
			res.Break, res.Unresolved, res.Unchecked, res.Unsealed, res.SealerPassed)
	}
}

// interrupting runs do once, in the middle of verify.Org: just before its
// first query naming at.
type interrupting struct {
	pool *pgxpool.Pool
	at   string
	do   func(context.Context)
	done bool
}

func (p *interrupting) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	tx, err := p.pool.BeginTx(ctx, opts)
	return &interruptingTx{Tx: tx, p: p}, err
}

func (p *interrupting) before(ctx context.Context, sql string) {
	if !p.done && strings.Contains(sql, p.at) {
		p.done = true
		p.do(ctx)
	}
}

type interruptingTx struct {
	pgx.Tx
	p *interrupting
}

func (t *interruptingTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	t.p.before(ctx, sql)
	return t.Tx.Query(ctx, sql, args...)
}

func (t *interruptingTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	t.p.before(ctx, sql)
	return t.Tx.QueryRow(ctx, sql, args...)
}
