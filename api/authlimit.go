package api

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/auditlog/auditlog/internal/pat"
	"github.com/auditlog/auditlog/internal/store"
)

// Guards against guessing tokens: each client address may fail
// authentication failedAuthRate times a second on average, in bursts of
// failedAuthBurst (429 past that, before any lookup), and a token the
// database did not know is answered 401 from memory for tokenCacheTTL
// (unless the database is a hot standby, which may learn it by replay). A
// token the database knew within tokenCacheTTL is no guess: its lookups
// skip the per-address guard, so its owner's concurrent requests (which
// the guard would count as attempts that may fail) are never refused for it.
const (
	failedAuthRate  = 1
	failedAuthBurst = 10
	tokenCacheTTL   = 30 * time.Second
)

// checkToken looks a personal access token up for authenticate and signIn,
// behind the guards: a token known to be bad costs no query, and an address
// that failed too often gets no lookup at all, unless for a token known to
// be good (which is still looked up: it may have been revoked since).
func (s *server) checkToken(c *gin.Context, token, org string) (store.Principal, error) {
	hash := pat.Hash(token)
	if s.unknownTokens.has(hash) {
		return store.Principal{}, store.ErrUnauthenticated
	}
	addr, guarded := clientKey(c), !s.knownTokens.has(hash)
	if guarded {
		if wait := s.failures.begin(addr); wait > 0 {
			return store.Principal{}, tooManyRequests(fmt.Sprintf(
				"too many failed authentications from your address (%d a second, bursts of %d); retry in %s",
				failedAuthRate, failedAuthBurst, wait.Round(time.Millisecond)), wait)
		}
	}
	ctx, cancel := s.queryContext(c)
	defer cancel()
	p, err := s.store.Authenticate(ctx, hash, org, s.asOf())
	failed := errors.Is(err, store.ErrUnauthenticated)
	switch {
	// A standby may know the token once it has replayed further: not
	// remembered, so it works there as soon as it is replayed.
	case failed && !errors.Is(err, store.ErrUnauthenticatedOnStandby):
		s.unknownTokens.add(hash)
	case err == nil:
		s.knownTokens.add(hash)
	}
	if guarded {
		s.failures.end(addr, failed)
	}
	return p, err
}

// clientKey is the address a request is counted against: gin's ClientIP,
// which believes X-Forwarded-For only from Config.TrustedProxies. An IPv6
// client counts as its /64, which one host usually has whole.
func clientKey(c *gin.Context) string {
	addr, err := netip.ParseAddr(c.ClientIP())
	if err != nil {
		return c.ClientIP()
	}
	addr = addr.Unmap()
	if addr.Is6() {
		return netip.PrefixFrom(addr, 64).Masked().String()
	}
	return addr.String()
}

// ParseTrustedProxies parses a comma-separated list of addresses and CIDR
// prefixes (`10.0.0.0/8, 192.0.2.7`) for Config.TrustedProxies.
func ParseTrustedProxies(list string) ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if addr, err := netip.ParseAddr(item); err == nil {
			prefixes = append(prefixes, netip.PrefixFrom(addr, addr.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an address or a CIDR prefix", item)
		}
		prefixes = append(prefixes, p.Masked())
	}
	return prefixes, nil
}

// tokenCache remembers hashes of tokens the database did not know (unknown,
// expired or revoked), or did, for ttl, at most maxBuckets of them. It keeps
// real time: the ttl is there for a token minted (or revoked) meanwhile.
type tokenCache struct {
	ttl time.Duration

	mu    sync.Mutex
	until map[string]time.Time
	swept time.Time
}

func newTokenCache(ttl time.Duration) *tokenCache {
	return &tokenCache{ttl: ttl, until: map[string]time.Time{}}
}

func (t *tokenCache) has(hash []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	until, ok := t.until[string(hash)]
	return ok && time.Now().Before(until)
}

func (t *tokenCache) add(hash []byte) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	makeRoom(t.until, maxBuckets, now, &t.swept, func(until time.Time) bool { return !now.Before(until) })
	t.until[string(hash)] = now.Add(t.ttl)
}
