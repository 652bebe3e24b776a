package delivery_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/delivery"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sealtest"
)

// eventsPerWriter is the size of a run: AUDITLOG_TEST_DELIVERY_EVENTS_PER_WRITER
// for a quicker look, else the 5000 (about 90 s with the race
// detector on a loaded 2-core machine, within the outage test's 2 minutes).
func eventsPerWriter() int {
	if n, err := strconv.Atoi(os.Getenv("AUDITLOG_TEST_DELIVERY_EVENTS_PER_WRITER")); err == nil && n > 0 {
		return n
	}
	return 5000
}

// write records n events of org from each of writers goroutines, cycling
// through actions and actors, and returns how many were written.
func write(t *testing.T, e env, org string, writers, n int) int64 {
	t.Helper()
	actions := []auditlog.Event{
		{Action: auditlog.ClusterCreated, Metadata: map[string]string{"name": "c"}},
		{Action: auditlog.ClusterDeleted, Metadata: map[string]string{"name": "c"}},
		{Action: auditlog.PATCreated, Metadata: map[string]string{"name": "t"}},
		{Action: auditlog.AuthSignout},
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range n {
				ev := actions[(w+i)%len(actions)]
				ev.OrgID = org
				ev.TargetID = fmt.Sprint(w, "-", i)
				ev.Actor = &auditlog.Actor{Email: fmt.Sprintf("user%d@example.com", i%3)}
				if _, err := auditlog.Log(context.Background(), e.admin, ev); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return int64(writers * n)
}

// matching are the seqs of org after seq after whose events rule keeps,
// in seq order, read from the database.
func matching(t *testing.T, e env, org string, after int64, rule delivery.Rule) []int64 {
	t.Helper()
	rows, err := e.admin.Query(context.Background(), `
		SELECT seq, action, target_type, actor_email FROM audit.sealed_events
		WHERE org_id = $1 AND seq > $2 ORDER BY seq`, org, after)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var seqs []int64
	for rows.Next() {
		var seq int64
		var ev auditlog.ActionInfo
		var email *string
		if err := rows.Scan(&seq, &ev.Action, &ev.TargetType, &email); err != nil {
			t.Fatal(err)
		}
		if rule.Match(storeEvent(string(ev.Action), ev.TargetType, email)) {
			seqs = append(seqs, seq)
		}
	}
	return seqs
}

// TestDeliversMatchingEventsInOrder: writers record events concurrently;
// three subscriptions with different rules each receive exactly their
// matching events, in seq order, each batch signed right, with two workers
// running (none twice).
func TestDeliversMatchingEventsInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := fixture.Org(t, e.admin, fixture.OrgOpts{Plan: "team"})
	rules := []delivery.Rule{
		{},
		{Actions: []string{"cluster.*"}},
		{TargetTypes: []string{"pat", "auth"}, ActorEmails: []string{"USER1@example.com"}},
	}
	var rcs []*receiver
	var from []int64
	for i, rule := range rules {
		rc := newReceiver(t, nil)
		from = append(from, e.position(t, e.subscribe(t, org, fmt.Sprint("sub", i), rule, rc)))
		rcs = append(rcs, rc)
	}
	// Two workers, as two replicas would run: each subscription is
	// delivered by one at a time.
	e.start(t, delivery.Config{Guard: guard(rcs...)})
	e.start(t, delivery.Config{Guard: guard(rcs...)})
	n := write(t, e, org, 4, eventsPerWriter())
	sealtest.WaitSealed(t, e.admin, org, int64(len(rules))+n)
	for i, rc := range rcs {
		want := matching(t, e, org, from[i], rules[i])
		waitFor(t, fmt.Sprintf("subscription %d's %d events", i, len(want)), func() bool {
			got, _ := rc.seqs()
			return len(got) >= len(want)
		})
		got, signed := rc.seqs()
		if !slices.Equal(got, want) {
			t.Errorf("subscription %d got %d seqs %v..., want %d %v...", i, len(got), got[:min(5, len(got))], len(want), want[:min(5, len(want))])
		}
		if !signed {
			t.Errorf("subscription %d: a batch with a bad signature", i)
		}
	}
}

// TestFailingReceiverRecovers: a receiver that answers 500 for the
// outage, then 200, gets every event once it recovers, in order, and the
// attempt log shows the failures backing off: the delay grows from the
// first (1 s for a 2-minute outage) to the cap (10 s), far fewer attempts
// than at a fixed delay.
func TestFailingReceiverRecovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	// The outage. Shorter ones, with delays shortened alike, are
	// not a test of backing off on a loaded machine: a step's own time
	// (a feed read, a request, a transaction) rivals the delays.
	const down = 2 * time.Minute
	// Down from its first request, whenever that comes (a loaded machine
	// may seal and deliver late).
	var mu sync.Mutex
	var downUntil time.Time
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		if downUntil.IsZero() {
			downUntil = time.Now().Add(down)
		}
		isDown := time.Now().Before(downUntil)
		mu.Unlock()
		if isDown {
			http.Error(w, "down", http.StatusInternalServerError)
			return true
		}
		return false
	})
	id := e.subscribe(t, org, "flaky", delivery.Rule{}, rc)
	from := e.position(t, id)
	const minBackoff, maxBackoff = time.Second, 10 * time.Second
	e.start(t, delivery.Config{Guard: guard(rc), MinBackoff: minBackoff, MaxBackoff: maxBackoff})
	n := write(t, e, org, 2, 20)
	sealtest.WaitSealed(t, e.admin, org, n+1)
	want := matching(t, e, org, from, delivery.Rule{})
	deadline := time.Now().Add(down + time.Minute)
	for got, _ := rc.seqs(); len(got) < len(want); got, _ = rc.seqs() {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events a minute after the outage", len(got), len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, _ := rc.seqs(); !slices.Equal(got, want) {
		t.Errorf("got seqs %v, want %v", got, want)
	}
	rows, err := e.admin.Query(context.Background(), "SELECT attempted_at FROM audit.delivery_attempts WHERE subscription_id = $1 AND status = 500 ORDER BY attempted_at", id)
	if err != nil {
		t.Fatal(err)
	}
	at, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		t.Fatal(err)
	}
	// At a fixed first delay of 1 s the outage would take 120 attempts;
	// backing off to the cap (jitter takes up to half of a delay) about 15
	// to 25.
	if len(at) < 8 || len(at) > 35 {
		t.Fatalf("%d failed attempts logged in %v, want 8 to 35 (backing off from %v to %v)", len(at), down, minBackoff, maxBackoff)
	}
	first, longest := at[1].Sub(at[0]), time.Duration(0)
	for i := 1; i < len(at); i++ {
		longest = max(longest, at[i].Sub(at[i-1]))
	}
	if first > 2*minBackoff || longest < maxBackoff/2 {
		t.Errorf("delays between failed attempts: first %v, longest %v; want about %v growing to %v", first, longest, minBackoff, maxBackoff)
	}
}

// TestHangingReceiverHoldsNoOtherUp: a receiver that never answers times
// out, its attempts logged as failures, while another subscription of the
// same org gets every event.
func TestHangingReceiverHoldsNoOtherUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	// The receiver answers nothing until the test ends, and then no
	// success: an attempt it is part of can only time out.
	release := make(chan struct{})
	hang := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		<-release
		http.Error(w, "released", http.StatusServiceUnavailable)
		return true
	})
	t.Cleanup(func() { close(release) }) // before the receiver's Close waits for its handlers
	ok := newReceiver(t, nil)
	hung := e.subscribe(t, org, "hangs", delivery.Rule{}, hang)
	from := e.position(t, e.subscribe(t, org, "answers", delivery.Rule{}, ok))
	// The default timeout, 10 s, bounds the hanging receiver's attempts.
	e.start(t, delivery.Config{Guard: guard(hang, ok), MinBackoff: 50 * time.Millisecond, Batch: 5})
	n := write(t, e, org, 1, 30)
	sealtest.WaitSealed(t, e.admin, org, n+2)
	want := matching(t, e, org, from, delivery.Rule{})
	start := time.Now()
	waitFor(t, "the answering receiver's events", func() bool {
		got, _ := ok.seqs()
		return len(got) >= len(want)
	})
	if got, _ := ok.seqs(); !slices.Equal(got, want) {
		t.Errorf("answering receiver got %v, want %v", got, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the answering receiver took %v", d)
	}
	waitFor(t, "a timed-out attempt", func() bool {
		var n int
		e.admin.QueryRow(context.Background(), "SELECT count(*) FROM audit.delivery_attempts WHERE subscription_id = $1", hung).Scan(&n)
		return n > 0
	})
	var errText *string
	var latency int
	if err := e.admin.QueryRow(context.Background(), "SELECT error, latency_ms FROM audit.delivery_attempts WHERE subscription_id = $1 ORDER BY attempted_at LIMIT 1", hung).Scan(&errText, &latency); err != nil {
		t.Fatal(err)
	}
	if errText == nil {
		t.Fatalf("the hanging receiver's first attempt succeeded after %d ms, want a timeout after 10 s", latency)
	}
	if !strings.Contains(*errText, "Timeout exceeded") || latency < 9500 || latency > 15000 {
		t.Errorf("the hanging receiver's attempt: %q after %d ms, want a timeout after 10 s", *errText, latency)
	}
}

// TestFailingTooLongStops: a subscription failing for longer than
// FailAfter is marked failing, audit_stream.failing is recorded, and it is
// no longer attempted.
func TestFailingTooLongStops(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	})
	id := e.subscribe(t, org, "dead", delivery.Rule{}, rc)
	e.start(t, delivery.Config{Guard: guard(rc), MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, FailAfter: 500 * time.Millisecond})
	write(t, e, org, 1, 1)
	waitFor(t, "the failing state", func() bool {
		var state string
		e.admin.QueryRow(context.Background(), "SELECT state FROM audit.subscriptions WHERE id = $1", id).Scan(&state)
		return state == "failing"
	})
	var events int
	e.admin.QueryRow(context.Background(), "SELECT count(*) FROM audit.events WHERE org_id = $1 AND action = 'audit_stream.failing' AND target_id = $2", org, id).Scan(&events)
	if events != 1 {
		t.Errorf("%d audit_stream.failing events, want 1", events)
	}
	rc.mu.Lock()
	before := rc.requests
	rc.mu.Unlock()
	time.Sleep(300 * time.Millisecond)
	rc.mu.Lock()
	after := rc.requests
	rc.mu.Unlock()
	if after != before {
		t.Errorf("%d requests after it was marked failing", after-before)
	}
}

// TestStoppedMidBatchLeavesNoGap: a worker stopped while its request is
// in flight (the receiver holding it, unanswered) leaves the position
// where it was; the next worker sends that batch again and the receiver
// has every event, in order, none missing.
func TestStoppedMidBatchLeavesNoGap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	held := make(chan struct{})
	var holdOnce sync.Once
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		hold := false
		holdOnce.Do(func() { hold = true })
		if !hold {
			return false
		}
		io.Copy(io.Discard, r.Body)
		close(held)
		<-r.Context().Done()
		return true
	})
	id := e.subscribe(t, org, "hook", delivery.Rule{}, rc)
	from := e.position(t, id)
	n := write(t, e, org, 1, 20)
	sealtest.WaitSealed(t, e.admin, org, n+1)
	stop := e.start(t, delivery.Config{Guard: guard(rc), Batch: 5})
	<-held
	stop()
	if p := e.position(t, id); p != from {
		t.Fatalf("position moved to %d by a batch never answered", p)
	}
	e.start(t, delivery.Config{Guard: guard(rc), Batch: 5})
	want := matching(t, e, org, from, delivery.Rule{})
	waitFor(t, "every event", func() bool {
		got, _ := rc.seqs()
		return len(got) >= len(want)
	})
	if got, _ := rc.seqs(); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestPausedAndResumedDeliversAgain: a subscription paused and resumed at
// any moment, also between two of the worker's looks at its list, is
// delivered again once active.
func TestPausedAndResumedDeliversAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	rc := newReceiver(t, nil)
	id := e.subscribe(t, org, "hook", delivery.Rule{}, rc)
	const poll = 100 * time.Millisecond
	e.start(t, delivery.Config{Guard: guard(rc), Poll: poll})
	r := rand.New(rand.NewPCG(1, 2))
	for range 40 {
		if _, err := e.control.Exec(ctx, "SELECT audit.pause_subscription($1, $2)", org, id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(r.Int64N(int64(poll))))
		if _, err := e.control.Exec(ctx, "SELECT audit.resume_subscription($1, $2)", org, id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(r.Int64N(int64(poll))))
	}
	// 1 audit_stream.created, 80 audit_stream.updated, 3 more events.
	write(t, e, org, 1, 3)
	waitFor(t, "delivery after the last resume", func() bool {
		var pos int64
		e.admin.QueryRow(ctx, "SELECT position FROM audit.subscriptions WHERE id = $1", id).Scan(&pos)
		return pos == 84
	})
}

// TestReceiverTextIsNotLoggedRaw: a receiver's reason phrase (like its
// certificate's names) is its own text, which errors quote; with terminal
// control sequences in it, the attempt log (which `auditlog subscriptions
// list` prints to a terminal) holds no control character.
func TestReceiverTextIsNotLoggedRaw(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return true
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 500 \x1b]8;;https://evil.example\x07click\x1b[2J\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		buf.Flush()
		return true
	})
	id := e.subscribe(t, org, "hook", delivery.Rule{}, rc)
	e.start(t, delivery.Config{Guard: guard(rc), MinBackoff: time.Minute})
	write(t, e, org, 1, 1)
	var errText string
	waitFor(t, "a failed attempt", func() bool {
		return e.admin.QueryRow(context.Background(), "SELECT error FROM audit.delivery_attempts WHERE subscription_id = $1 LIMIT 1", id).Scan(&errText) == nil
	})
	if strings.ContainsAny(errText, "\x1b\x07") || !strings.Contains(errText, "500") {
		t.Errorf("attempt error %q", errText)
	}
}

// TestAttemptsKeptSevenDays: the worker removes attempts older than 7
// days when it starts (then hourly), and keeps the newer ones.
func TestAttemptsKeptSevenDays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	rc := newReceiver(t, nil)
	id := e.subscribe(t, org, "hook", delivery.Rule{}, rc)
	for _, age := range []string{"7 days 1 minute", "6 days 23 hours"} {
		if _, err := e.admin.Exec(ctx, `
			INSERT INTO audit.delivery_attempts (subscription_id, org_id, attempted_at, status, latency_ms, first_seq, last_seq, events)
			VALUES ($1, $2, now() - $3::interval, 200, 1, 1, 1, 1)`, id, org, age); err != nil {
			t.Fatal(err)
		}
	}
	e.start(t, delivery.Config{Guard: guard(rc)})
	var ages []string
	waitFor(t, "the old attempt removed", func() bool {
		rows, _ := e.admin.Query(ctx, "SELECT justify_interval(date_trunc('hour', now() - attempted_at))::text FROM audit.delivery_attempts WHERE subscription_id = $1", id)
		ages, _ = pgx.CollectRows(rows, pgx.RowTo[string])
		return len(ages) == 1
	})
	if ages[0] != "6 days 23:00:00" {
		t.Errorf("attempts left: %v, want the one 6 days 23 hours old", ages)
	}
}

// TestTooLargeBatchIsSplit: a receiver that takes at most 3 events a
// request answers 413 to a larger batch; the worker sends smaller ones
// instead of the same batch for ever, and the receiver gets every event
// once, in order.
func TestTooLargeBatchIsSplit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		body, _ := io.ReadAll(r.Body)
		if strings.Count(string(body), `"seq":`) > 3 {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return true
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		return false
	})
	id := e.subscribe(t, org, "hook", delivery.Rule{}, rc)
	from := e.position(t, id)
	n := write(t, e, org, 1, 10)
	sealtest.WaitSealed(t, e.admin, org, n+1)
	want := matching(t, e, org, from, delivery.Rule{})
	e.start(t, delivery.Config{Guard: guard(rc), MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	waitFor(t, "every event", func() bool {
		got, _ := rc.seqs()
		return len(got) >= len(want)
	})
	if got, signed := rc.seqs(); !slices.Equal(got, want) || !signed {
		t.Errorf("receiver got %v (signed %v), want %v", got, signed, want)
	}
}
