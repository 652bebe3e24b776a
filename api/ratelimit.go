package api

import (
	"fmt"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// limiter is a token bucket per key: per personal access token, or per
// client address for failed authentications.
type limiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	swept   time.Time      // last sweep of idle buckets
	running map[string]int // attempts begun and not ended, by key
}

// maxBuckets bounds the buckets a limiter keeps.
const maxBuckets = 10_000

// makeRoom drops entries of m until one more fits under max: the idle ones
// (a full bucket, an expired entry), looked for at most once a second as
// swept records, else arbitrary ones. Memory stays bounded whatever keys
// clients send, and a full map costs no scan per request.
func makeRoom[V any](m map[string]V, max int, now time.Time, swept *time.Time, idle func(V) bool) {
	if len(m) < max {
		return
	}
	if now.Sub(*swept) >= time.Second {
		*swept = now
		for k, v := range m {
			if idle(v) {
				delete(m, k)
			}
		}
	}
	for k := range m {
		if len(m) < max {
			return
		}
		delete(m, k)
	}
}

func newLimiter(perSecond float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, now: now, buckets: map[string]*rate.Limiter{}, running: map[string]int{}}
}

// bucket is key's bucket, made if need be; l.mu is held.
func (l *limiter) bucket(key string, now time.Time) *rate.Limiter {
	if b := l.buckets[key]; b != nil {
		return b
	}
	makeRoom(l.buckets, maxBuckets, now, &l.swept, func(b *rate.Limiter) bool {
		return b.TokensAt(now) >= float64(l.burst)
	})
	b := rate.NewLimiter(l.rate, l.burst)
	l.buckets[key] = b
	return b
}

// allow takes one request from key's bucket, or says how long until it may.
func (l *limiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.bucket(key, now).ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// begin admits an attempt by key that may fail, or says how long to wait:
// it admits one only while key's bucket holds a token for it and for every
// attempt still running, so that concurrent attempts cannot overdraw the
// bucket. end records the attempt's outcome.
func (l *limiter) begin(key string) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	tokens := float64(l.burst)
	if b := l.buckets[key]; b != nil {
		tokens = b.TokensAt(now)
	}
	if missing := 1 + float64(l.running[key]) - tokens; missing > 0 {
		return time.Duration(missing / float64(l.rate) * float64(time.Second))
	}
	l.running[key]++
	return 0
}

// end ends an attempt begin admitted, taking a token from key's bucket if
// it failed.
func (l *limiter) end(key string, failed bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running[key]--; l.running[key] <= 0 {
		delete(l.running, key)
	}
	if failed {
		l.bucket(key, now).AllowN(now, 1)
	}
}

// rateLimit answers 429 with Retry-After once a token has made more than
// its share of requests; it runs after authenticate.
func (s *server) rateLimit(c *gin.Context) {
	p := principalOf(c)
	if ok, wait := s.limiter.allow(p.PATID); !ok {
		s.writeProblem(c, tooManyRequests(fmt.Sprintf("this token may make %g requests a second (bursts of %d); retry in %s",
			float64(s.limiter.rate), s.limiter.burst, wait.Round(time.Millisecond)), wait))
		return
	}
	c.Next()
}
