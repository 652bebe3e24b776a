package api

import (
	"fmt"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// limiter is a token bucket per personal access token.
type limiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// sweepAt is the number of buckets past which full (idle) ones are dropped.
const sweepAt = 10_000

func newLimiter(perSecond float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, now: now, buckets: map[string]*rate.Limiter{}}
}

// allow takes one request from key's bucket, or says how long until it may.
func (l *limiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= sweepAt {
			for k, v := range l.buckets {
				if v.TokensAt(now) >= float64(l.burst) {
					delete(l.buckets, k)
				}
			}
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
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
