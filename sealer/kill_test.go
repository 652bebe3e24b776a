package sealer_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/sealer"
)

// The test binary runs as a sealer process when these are set, so that a
// test can kill it with SIGKILL.
const (
	helperURL = "AUDITLOG_TEST_SEALER_URL"
	helperKey = "AUDITLOG_TEST_SEALER_KEY" // the private key's seed, hex
)

// runHelperSealer seals until killed (or interrupted).
func runHelperSealer(url string) int {
	seed, err := hex.DecodeString(os.Getenv(helperKey))
	if err != nil || len(seed) != ed25519.SeedSize {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := sealer.Run(ctx, sealer.Config{DatabaseURL: url, Key: ed25519.NewKeyFromSeed(seed), RetryDelay: 50 * time.Millisecond}); err != nil {
		return 1
	}
	return 0
}

// A sealer killed with SIGKILL at random instants, again and again, while
// eight writers commit and roll back: once a sealer finishes the job, every
// committed event has exactly one seal, each org's seqs run 1..n without a
// gap, no rolled-back event is sealed and every chain verifies.
func TestSealerSurvivesKill9(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "SELECT audit.premake_leaves(1)"); err != nil {
		t.Fatal(err)
	}
	orgs := make([]string, 4)
	for i := range orgs {
		orgs[i] = fixture.Org(t, pool, fixture.OrgOpts{Plan: []string{"free", "team", "enterprise"}[i%3]})
	}
	sealerURL := sealtest.SealerURL(t, url)
	key := sealtest.Key(t)

	const writers, kills = 8, 12
	var mu sync.Mutex
	committed := map[string]bool{}
	var rolledBack []string
	var wg sync.WaitGroup
	var stop atomic.Bool
	defer stop.Store(true)
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for !stop.Load() {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					ids := make([]string, 1+r.IntN(3))
					for i := range ids {
						if err := tx.QueryRow(ctx, "SELECT audit.log_event($1, 'auth.signout')", orgs[r.IntN(len(orgs))]).Scan(&ids[i]); err != nil {
							return err
						}
					}
					rollback := r.IntN(5) == 0
					mu.Lock() // a failed COMMIT fails the test

					for _, id := range ids {
						if rollback {
							rolledBack = append(rolledBack, id)
						} else {
							committed[id] = true
						}
					}
					mu.Unlock()
					if rollback {
						return errRollback
					}
					return nil
				})
				if err != nil && !errors.Is(err, errRollback) {
					t.Error(err)
					return
				}
			}
		})
	}
	for range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperURL+"="+sealerURL, helperKey+"="+hex.EncodeToString(key.Seed()))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d sealer processes killed; %d events committed, %d rolled back", kills, len(committed), len(rolledBack))

	// One more sealer, left to finish.
	sealtest.Start(t, url, sealer.Config{Key: key})
	sealtest.WaitFor(t, pool, "every event sealed", func(ctx context.Context) (bool, error) {
		var n int
		err := pool.QueryRow(ctx, "SELECT count(*) FROM audit.unsealed_events").Scan(&n)
		return n == 0, err
	})
	var all []string
	for _, org := range orgs {
		ids := sealed(t, pool, org)
		var max int64
		if err := pool.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM audit.seals WHERE org_id = $1", org).Scan(&max); err != nil {
			t.Fatal(err)
		}
		if max != int64(len(ids)) {
			t.Errorf("org %s: %d seals up to seq %d: a gap", org, len(ids), max)
		}
		checkChain(t, pool, org, int64(len(ids)))
		all = append(all, ids...)
	}
	slices.Sort(all)
	if len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Error("an event was sealed twice")
	}
	if len(all) != len(committed) {
		t.Errorf("%d events sealed, %d committed", len(all), len(committed))
	}
	for _, id := range all {
		if !committed[id] {
			t.Errorf("sealed %s, which was not committed", id)
		}
	}
}

var errRollback = errors.New("roll back")
