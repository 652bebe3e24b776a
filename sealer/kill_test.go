package sealer_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/store"
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
// eight writers commit and roll back and a follower walks the feed with
// after: once a sealer finishes the job, the follower has read, per org,
// seqs 1..n without a gap, every committed event once and no rolled-back
// one, and every chain verifies. AUDITLOG_TEST_EVENTS_PER_WRITER sets the
// run's size (default 400; the full run is 10000).
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

	perWriter := 400
	if n, err := strconv.Atoi(os.Getenv("AUDITLOG_TEST_EVENTS_PER_WRITER")); err == nil && n > 0 {
		perWriter = n
	}
	const writers, minKills = 8, 5
	var mu sync.Mutex
	committed := map[string]bool{}
	var rolledBack []string
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for written := 0; written < perWriter; {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					ids := make([]string, 1+r.IntN(3))
					for i := range ids {
						if err := tx.QueryRow(ctx, "SELECT audit.log_event($1, 'auth.signout')", orgs[r.IntN(len(orgs))]).Scan(&ids[i]); err != nil {
							return err
						}
					}
					rollback := r.IntN(5) == 0
					written += len(ids)
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
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()
	f := newFollower(pool, orgs)
	followCtx, stopFollowing := context.WithCancel(ctx)
	defer stopFollowing()
	followed := make(chan error, 1)
	go func() { followed <- f.follow(followCtx) }()
	kills := 0
	for done := false; !done || kills < minKills; kills++ {
		select {
		case <-writing:
			done = true
		default:
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperURL+"="+sealerURL, helperKey+"="+hex.EncodeToString(key.Seed()))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
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
	stopFollowing()
	if err := <-followed; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if err := f.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, org := range orgs {
		ids := sealed(t, pool, org)
		if !slices.Equal(f.read[org], ids) {
			t.Errorf("org %s: the follower read %d events, the seals hold %d, or in another order", org, len(f.read[org]), len(ids))
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

// follower walks each org's feed with after, as a consumer does, and
// checks that seqs follow each other.
type follower struct {
	st    *store.Store
	orgs  []string
	after map[string]int64
	read  map[string][]string
}

func newFollower(pool *pgxpool.Pool, orgs []string) *follower {
	return &follower{st: store.New(pool), orgs: orgs, after: map[string]int64{}, read: map[string][]string{}}
}

// follow reads until ctx ends.
func (f *follower) follow(ctx context.Context) error {
	for {
		if err := f.catchUp(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// catchUp reads every org's feed to its head.
func (f *follower) catchUp(ctx context.Context) error {
	for _, org := range f.orgs {
		scope, err := f.st.Scope(ctx, org, nil)
		if err != nil {
			return err
		}
		for {
			page, err := f.st.Feed(ctx, store.FeedQuery{OrgID: org, Tiers: scope.Tiers, Floor: scope.Floor, After: f.after[org], Limit: 500})
			if err != nil {
				return err
			}
			for _, e := range page.Events {
				if e.Seq != f.after[org]+1 {
					return fmt.Errorf("org %s: the feed went from seq %d to %d", org, f.after[org], e.Seq)
				}
				f.after[org] = e.Seq
				f.read[org] = append(f.read[org], e.ID)
			}
			if page.Next != f.after[org] {
				return fmt.Errorf("org %s: next_after %d, last event read %d", org, page.Next, f.after[org])
			}
			if page.Next == page.Head {
				break
			}
		}
	}
	return nil
}

var errRollback = errors.New("roll back")
