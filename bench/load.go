package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// loadResult is what runClients measured.
type loadResult struct {
	ops       int64
	elapsed   time.Duration
	latencies []time.Duration // every operation's, sorted
	done      []time.Duration // when each operation ended, from the start
	worstEnd  time.Duration   // when the slowest one ended, from the start
}

func (r loadResult) perSecond() float64 { return float64(r.ops) / r.elapsed.Seconds() }

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(q*float64(len(r.latencies))))]
}

// idleSeconds counts the whole seconds from the start in which no operation
// ended.
func (r loadResult) idleSeconds() int {
	idle := make([]bool, int(r.elapsed/time.Second))
	for i := range idle {
		idle[i] = true
	}
	for _, d := range r.done {
		if s := int(d / time.Second); s < len(idle) {
			idle[s] = false
		}
	}
	n := 0
	for _, v := range idle {
		if v {
			n++
		}
	}
	return n
}

func (r loadResult) max() time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[len(r.latencies)-1]
}

// runClients runs op in a loop on `clients` connections of their own for d,
// after each connection ran setup, and counts and times the operations.
func runClients(ctx context.Context, url string, clients int, d time.Duration,
	setup func(context.Context, *pgx.Conn) error, op func(context.Context, *pgx.Conn, int) error) (loadResult, error) {
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			return loadResult{}, err
		}
		defer c.Close(context.Background())
		if setup != nil {
			if err := setup(ctx, c); err != nil {
				return loadResult{}, err
			}
		}
		conns[i] = c
	}
	var (
		ops     atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		lat     []time.Duration
		done    []time.Duration
		worst   time.Duration
		worstAt time.Duration
		firstMu sync.Mutex
		first   error
	)
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	for ci, c := range conns {
		wg.Go(func() {
			var mine, ended []time.Duration
			var myWorst, myWorstAt time.Duration
			for i := 0; runCtx.Err() == nil; i++ {
				t0 := time.Now()
				if err := op(runCtx, c, ci*1_000_000+i); err != nil {
					if runCtx.Err() != nil && errors.Is(err, context.DeadlineExceeded) || runCtx.Err() != nil {
						break
					}
					firstMu.Lock()
					if first == nil {
						first = err
					}
					firstMu.Unlock()
					cancel()
					break
				}
				mine = append(mine, time.Since(t0))
				ended = append(ended, time.Since(start))
				if mine[len(mine)-1] > myWorst {
					myWorst, myWorstAt = mine[len(mine)-1], ended[len(ended)-1]
				}
				ops.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			done = append(done, ended...)
			if myWorst > worst {
				worst, worstAt = myWorst, myWorstAt
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return loadResult{}, first
	}
	slices.Sort(lat)
	return loadResult{ops: ops.Load(), elapsed: elapsed, latencies: lat, done: done, worstEnd: worstAt}, nil
}
