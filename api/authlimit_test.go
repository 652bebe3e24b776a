package api

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/pat"
)

// call sends a request with the token (none if empty) as Bearer, or for
// POST /api/session in the body, and X-Forwarded-For set to forwardedFor if
// not empty, and returns the response with its body read.
func (b *testBundle) call(t testing.TB, method, path, token, forwardedFor string) (*http.Response, []byte) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"token":"` + token + `"}`)
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	} else if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// failUntilLimited sends failedAuthBurst guessed tokens from the address,
// each a 401, then one more, which must be a 429 with Retry-After.
func (b *testBundle) failUntilLimited(t *testing.T, method, path, forwardedFor string) {
	t.Helper()
	for i := range failedAuthBurst {
		resp, body := b.call(t, method, path, pat.Generate(), forwardedFor)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d from %q: %d %s, want 401", i+1, forwardedFor, resp.StatusCode, body)
		}
	}
	resp, body := b.call(t, method, path, pat.Generate(), forwardedFor)
	wantProblem(t, resp, body, http.StatusTooManyRequests)
	if resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q, want 1 (one failure a second)", resp.Header.Get("Retry-After"))
	}
}

// lockPATs locks cloud.pats against every lookup until the test ends, or
// until it calls the function returned.
func (b *testBundle) lockPATs(t *testing.T) (unlock func()) {
	ctx := context.Background()
	tx, err := b.admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unlock = func() { _ = tx.Rollback(ctx) }
	t.Cleanup(unlock)
	if _, err := tx.Exec(ctx, "LOCK cloud.pats IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	return unlock
}

// atOnce sends n requests for the catalog at once, each with a token from
// token, runs meanwhile, and counts the statuses they get.
func (b *testBundle) atOnce(t *testing.T, n int, token func() string, meanwhile func()) map[int]int {
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, b.base+"/api/audit/actions", nil)
			req.Header.Set("Authorization", "Bearer "+token())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	meanwhile()
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for status := range statuses {
		count[status]++
	}
	return count
}

// loopback trusts the test client as a proxy.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// TestFailedAuthIsLimitedPerAddress: guessing tokens from one address gets
// 429 (for any token not known good, the real owner's too) while an owner at
// another address still gets 200, and then from the limited address too;
// an IPv6 client counts as its /64.
func TestFailedAuthIsLimitedPerAddress(t *testing.T) {
	t.Parallel()
	start := time.Now() // a fixed clock: no failure is forgiven while the test runs
	b := setup(t, Config{TrustedProxies: loopback, Now: func() time.Time { return start }})
	org, token := b.owner(t, "team")
	events := "/api/orgs/" + org + "/audit"

	b.failUntilLimited(t, http.MethodGet, events, "203.0.113.1")
	resp, body := b.call(t, http.MethodGet, events, token, "203.0.113.1")
	wantProblem(t, resp, body, http.StatusTooManyRequests)
	if resp, body := b.call(t, http.MethodGet, events, token, "203.0.113.2"); resp.StatusCode != http.StatusOK {
		t.Fatalf("owner at another address: %d %s", resp.StatusCode, body)
	}
	if resp, body := b.call(t, http.MethodGet, events, pat.Generate(), "203.0.113.2"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("another address's first guess: %d %s, want 401", resp.StatusCode, body)
	}
	// What a client puts before the trusted proxy's entry is not believed.
	if resp, body := b.call(t, http.MethodGet, events, token, "203.0.113.1, 198.51.100.9"); resp.StatusCode != http.StatusOK {
		t.Fatalf("owner behind a spoofed X-Forwarded-For entry: %d %s", resp.StatusCode, body)
	}

	org2, token2 := b.owner(t, "team")
	events2 := "/api/orgs/" + org2 + "/audit"
	b.failUntilLimited(t, http.MethodGet, events2, "2001:db8:1:2::1")
	resp, body = b.call(t, http.MethodGet, events2, token2, "2001:db8:1:2:ffff::9")
	wantProblem(t, resp, body, http.StatusTooManyRequests)
	if resp, body := b.call(t, http.MethodGet, events2, token2, "2001:db8:1:3::1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("owner in another /64: %d %s", resp.StatusCode, body)
	}
	// A token that worked a moment ago is no guess: the guard lets it by.
	if resp, body := b.call(t, http.MethodGet, events2, token2, "2001:db8:1:2::1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("owner's token known good, from the limited /64: %d %s", resp.StatusCode, body)
	}
}

// TestConcurrentGuessesCannotOverdraw: guesses sent all at once from one
// address get no more lookups (401s) than the burst; the rest get 429.
func TestConcurrentGuessesCannotOverdraw(t *testing.T) {
	t.Parallel()
	start := time.Now()
	b := setup(t, Config{Now: func() time.Time { return start }})
	count := b.atOnce(t, 64, pat.Generate, func() {})
	if count[http.StatusUnauthorized] > failedAuthBurst || count[http.StatusUnauthorized]+count[http.StatusTooManyRequests] != 64 {
		t.Fatalf("%v: want at most %d 401s, the rest 429", count, failedAuthBurst)
	}
}

// TestSessionSignInIsLimited: POST /api/session answers 429 to an address
// that guessed too many tokens, a valid one included.
func TestSessionSignInIsLimited(t *testing.T) {
	t.Parallel()
	start := time.Now()
	b := setup(t, Config{Now: func() time.Time { return start }})
	_, token := b.owner(t, "team")
	b.failUntilLimited(t, http.MethodPost, "/api/session", "")
	resp, body := b.call(t, http.MethodPost, "/api/session", token, "")
	wantProblem(t, resp, body, http.StatusTooManyRequests)
}

// TestForwardedForIgnoredUnlessTrusted: without a trusted proxy, a client
// that sends a new X-Forwarded-For with each guess is still one address.
func TestForwardedForIgnoredUnlessTrusted(t *testing.T) {
	t.Parallel()
	start := time.Now()
	for _, proxies := range [][]netip.Prefix{nil, {netip.MustParsePrefix("192.0.2.0/24")}} {
		b := setup(t, Config{TrustedProxies: proxies, Now: func() time.Time { return start }})
		for i := range failedAuthBurst {
			resp, body := b.call(t, http.MethodGet, "/api/audit/actions", pat.Generate(), fmt.Sprintf("203.0.113.%d", i+1))
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("trusting %v, guess %d: %d %s", proxies, i+1, resp.StatusCode, body)
			}
		}
		resp, body := b.call(t, http.MethodGet, "/api/audit/actions", pat.Generate(), "198.51.100.1")
		wantProblem(t, resp, body, http.StatusTooManyRequests)
	}
}

// TestUnknownTokenAnsweredWithoutTheDatabase: a token the database did not
// know, sent again, is answered 401 while cloud.pats is locked, which a
// lookup would wait for; a new token still waits.
func TestUnknownTokenAnsweredWithoutTheDatabase(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	unknown := pat.Generate()
	if resp, body := b.call(t, http.MethodGet, "/api/audit/actions", unknown, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unknown token: %d %s", resp.StatusCode, body)
	}

	b.lockPATs(t)
	client := &http.Client{Timeout: time.Second}
	get := func(token string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, b.base+"/api/audit/actions", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if status, err := get(unknown); status != http.StatusUnauthorized {
		t.Fatalf("the same unknown token with cloud.pats locked: %d %v, want 401 without a lookup", status, err)
	}
	if status, err := get(pat.Generate()); status == http.StatusUnauthorized {
		t.Fatalf("a new token with cloud.pats locked: %d %v; the lock does not stop lookups, so this test proves nothing", status, err)
	}
}

// TestLimiterMemoryBounded: however many addresses and tokens fail, the
// limiter and the cache keep at most maxBuckets entries.
func TestLimiterMemoryBounded(t *testing.T) {
	t.Parallel()
	l := newLimiter(failedAuthRate, failedAuthBurst, time.Now)
	cache := newTokenCache(time.Hour)
	for i := range 3 * maxBuckets {
		l.begin(fmt.Sprint(i))
		l.end(fmt.Sprint(i), true)
		cache.add([]byte(fmt.Sprint(i)))
	}
	if len(l.buckets) > maxBuckets || len(cache.until) > maxBuckets {
		t.Fatalf("%d buckets, %d cached tokens; want at most %d", len(l.buckets), len(cache.until), maxBuckets)
	}
}

// TestParseTrustedProxies: addresses and prefixes, comma-separated.
func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	got, err := ParseTrustedProxies(" 10.0.0.0/8, 192.0.2.7,2001:db8::/32,,")
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::/32")}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v %v, want %v", got, err, want)
	}
	if _, err := ParseTrustedProxies("10.0.0.0/8,proxy.example"); err == nil || !strings.Contains(err.Error(), "proxy.example") {
		t.Fatalf("a host name: %v, want an error naming it", err)
	}
}

// TestKnownTokenNotLimitedByItsOwnConcurrency: twice the burst of requests
// at once with a token that worked a moment ago, from one address, all
// waiting on a locked cloud.pats, all get their answer once it is
// released: they are not counted as guesses that may fail.
func TestKnownTokenNotLimitedByItsOwnConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	_, token := b.owner(t, "team")
	if resp, body := b.call(t, http.MethodGet, "/api/audit/actions", token, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("owner: %d %s", resp.StatusCode, body)
	}
	unlock := b.lockPATs(t)
	count := b.atOnce(t, 2*failedAuthBurst, func() string { return token }, func() {
		time.Sleep(500 * time.Millisecond)
		unlock()
	})
	if count[http.StatusOK] != 2*failedAuthBurst {
		t.Errorf("%d requests at once with a known token: %v, want every one 200", 2*failedAuthBurst, count)
	}
}
