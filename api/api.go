// Package api is the read-only HTTP API of the audit log (Gin): health,
// metrics, the catalog, an org's events as JSON pages or exports, a summary of
// them per day, its OpenAPI document, and the Activity page that reads it. Every /api route wants a personal access token; an org's
// events are for its owners only. The API writes nothing, and reading is
// not audited. docs/api.md is the guide; openapi.json the reference.
package api

import (
	"cmp"
	"context"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/retention"
)

// Config holds what the API needs. Zero values get the defaults given.
type Config struct {
	// Pool connects as a role holding audit_reader; the API needs nothing
	// more and writes nothing.
	Pool *pgxpool.Pool
	// Logger receives one line per request and every internal error.
	Logger *slog.Logger
	// Collectors are more metrics GET /metrics shows (the in-process
	// delivery worker's).
	Collectors []prometheus.Collector
	// Now is the clock; default time.Now. When it is left nil, what decides
	// retention and token expiry is the database's clock, not this host's.
	Now func() time.Time
	// RateLimit is how many requests a second each token may make on
	// average; default 10. math.Inf(1) lifts the limit.
	RateLimit float64
	// RateBurst is how many requests a token may make at once; default 20.
	RateBurst int
	// QueryTimeout bounds the queries of a request (authentication, the
	// org's scope, a JSON page, a summary); default 10 s, the
	// statement_timeout ConfigurePool sets. Exports run as long as the
	// client reads.
	QueryTimeout time.Duration
	// PageBytes is the most a JSON page's body may hold; default 4 MiB. A
	// page ends early, with a cursor, rather than pass it.
	PageBytes int
	// MaxExports is how many exports (CSV or NDJSON) run at once, each holding a
	// database connection; default 4. More are answered 429.
	MaxExports int
	// MaxOrgExports is how many of them one org may run at once; default
	// 2. More are answered 429, so one org cannot take every slot.
	MaxOrgExports int
	// ExportFloorBytes and ExportFloorWindow are the slowest a client may
	// read an export: it may keep the server waiting at most
	// ExportFloorWindow in all for each ExportFloorBytes it takes; default
	// 256 KiB per 10 s. A slower client is cut off, so it cannot hold an
	// export slot and a read transaction (which holds back vacuum and
	// concurrent detaches) open.
	ExportFloorBytes  int
	ExportFloorWindow time.Duration
	// ExportTimeout bounds a whole export; default 30 min.
	ExportTimeout time.Duration
	// TrustedProxies are the proxies whose X-Forwarded-For is believed for
	// the client's address, which failed authentications are counted
	// against; default none: the address is the connection's.
	TrustedProxies []netip.Prefix
}

// defaultQueryTimeout is Config.QueryTimeout's default.
const defaultQueryTimeout = 10 * time.Second

// lockTimeout is how long a query of the API waits for a lock: something
// holding a lock the reads need (a LOCK TABLE, a long DDL) gets each request
// a fast 503 instead of parking it, and its connection, until the lock goes.
const lockTimeout = 2 * time.Second

// ConfigurePool sets the runtime parameters of the API's connections:
// lock_timeout, and statement_timeout as a server-side bound behind each
// request's context (QueryTimeout), for a query the cancellation misses.
// An export lifts statement_timeout for its own transaction.
func ConfigurePool(c *pgxpool.Config) {
	params := c.ConnConfig.RuntimeParams
	params["lock_timeout"] = strconv.FormatInt(lockTimeout.Milliseconds(), 10)
	params["statement_timeout"] = strconv.FormatInt(defaultQueryTimeout.Milliseconds(), 10)
}

// New returns the API's handler.
func New(cfg Config) http.Handler {
	st := store.New(cfg.Pool)
	s := &server{
		store:        st,
		logger:       cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		now:          cfg.Now,
		queryTimeout: cmp.Or(cfg.QueryTimeout, defaultQueryTimeout),
		pageBytes:    cmp.Or(cfg.PageBytes, 4<<20),
		exports:      make(chan struct{}, cmp.Or(cfg.MaxExports, 4)),
		exportTotal:  cmp.Or(cfg.ExportTimeout, 30*time.Minute),
		metrics:      newMetrics(),
		keys:         &keyring{store: st},
	}
	if s.now == nil {
		s.now = time.Now
	} else {
		s.fixedClock = true
	}
	s.metrics.registry.MustRegister(newSealerCollector(st.SealerStatus), newDeliveryCollector(st.DeliveryStatus), newReplicationCollector(st.Replication),
		newRetentionCollector(func(ctx context.Context, now time.Time) ([]retention.Holdup, error) {
			return retention.Holdups(ctx, cfg.Pool, &now)
		}, s.now))
	s.metrics.registry.MustRegister(cfg.Collectors...)
	s.catalog = &catalog{store: st, now: s.now}
	s.limiter = newLimiter(cmp.Or(cfg.RateLimit, 10), cmp.Or(cfg.RateBurst, 20), s.now)
	if math.IsInf(cfg.RateLimit, 1) {
		s.limiter = newLimiter(math.Inf(1), 1, s.now)
	}
	s.guards = guards{
		failures:          newLimiter(failedAuthRate, failedAuthBurst, s.now),
		unknownTokens:     newTokenCache(tokenCacheTTL),
		knownTokens:       newTokenCache(tokenCacheTTL),
		orgExports:        newOrgSlots(cmp.Or(cfg.MaxOrgExports, 2)),
		feedWaits:         newOrgSlots(maxOrgFeedWaits),
		exportFloorBytes:  cmp.Or(cfg.ExportFloorBytes, 256<<10),
		exportFloorWindow: cmp.Or(cfg.ExportFloorWindow, 10*time.Second),
	}

	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	proxies := make([]string, len(cfg.TrustedProxies))
	for i, p := range cfg.TrustedProxies {
		proxies[i] = p.String()
	}
	_ = r.SetTrustedProxies(proxies) // valid prefixes cannot fail; none (nil) trusts none
	r.Use(s.metrics.observe, s.logRequests, noSniff, s.recover)
	r.NoRoute(func(c *gin.Context) { s.writeProblem(c, errRouteNotFound) })
	r.NoMethod(func(c *gin.Context) { s.writeProblem(c, errMethodNotAllowed) })

	r.GET("/healthz", s.healthz)
	r.GET("/metrics", s.metrics.handler())
	r.GET("/api/openapi.json", serveOpenAPI)
	r.GET("/orgs/:id/activity", s.activityPage)
	r.GET("/orgs/:id/activity/events/:event_id", s.activityPage)
	r.GET("/static/:file", s.staticFile)
	r.POST("/api/session", s.signIn)
	r.DELETE("/api/session", s.signOut)
	api := r.Group("/api", s.authenticate, s.rateLimit)
	api.GET("/audit/actions", s.listActions)
	api.GET("/orgs/:id/audit", s.requireOwner, s.listEvents)
	api.GET("/orgs/:id/audit/summary", s.requireOwner, s.summarize)
	api.GET("/orgs/:id/audit/events/:event_id", s.requireOwner, s.getEvent)
	api.GET("/orgs/:id/audit/feed", s.requireOwner, s.feed)
	api.GET("/orgs/:id/audit/checkpoints", s.requireOwner, s.checkpoints)
	api.GET("/orgs/:id/audit/streams", s.requireOwner, s.streams)
	api.GET("/audit/keys", s.sealKeys)
	return r
}

type server struct {
	store        *store.Store
	fixedClock   bool // Config.Now was given: the database is asked as of it
	logger       *slog.Logger
	now          func() time.Time
	queryTimeout time.Duration
	pageBytes    int           // Config.PageBytes
	exports      chan struct{} // one slot per running export
	exportTotal  time.Duration // Config.ExportTimeout
	metrics      *metrics
	catalog      *catalog
	keys         *keyring
	limiter      *limiter
	guards
}

// guards hold the limits against abuse: guessing tokens (authlimit.go) and
// one org taking every export, or holding one open (exportlimit.go).
type guards struct {
	failures          *limiter    // failed authentications per client address
	unknownTokens     *tokenCache // token hashes the database did not know
	knownTokens       *tokenCache // token hashes the database knew
	orgExports        *orgSlots   // Config.MaxOrgExports
	feedWaits         *orgSlots   // feed requests waiting (wait=), per org
	exportFloorBytes  int         // Config.ExportFloorBytes
	exportFloorWindow time.Duration
}

// asOf is the instant the database checks retention and token expiry at:
// its own clock (nil), unless a clock was injected.
func (s *server) asOf() *time.Time {
	if !s.fixedClock {
		return nil
	}
	now := s.now()
	return &now
}

// queryContext bounds the queries a request makes before its main one (or
// instead of it) by the query timeout.
func (s *server) queryContext(c *gin.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request.Context(), s.queryTimeout)
}

// healthz answers 200 when the database answers within two seconds, 503
// when it does not. It says whether the database is a hot standby and, if
// so, how far its replay is behind the primary (store.Replication): what a
// replica serves is that old.
func (s *server) healthz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	r, err := s.store.Replication(ctx)
	if err != nil {
		s.logger.Warn("health check: database unreachable", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "database": "unreachable"})
		return
	}
	h := gin.H{"status": "ok", "database": "ok", "standby": r.Standby}
	if r.Standby {
		h["receiving_wal"] = r.ReceivingWAL
		h["replay_lag_seconds"] = nil
		if r.ReplayLag != nil {
			h["replay_lag_seconds"] = r.ReplayLag.Seconds()
		}
	}
	c.JSON(http.StatusOK, h)
}

func (s *server) logRequests(c *gin.Context) {
	start := time.Now()
	defer func() {
		s.logger.Info("request", "method", c.Request.Method, "path", c.Request.URL.Path,
			"status", c.Writer.Status(), "bytes", c.Writer.Size(), "duration", time.Since(start))
	}()
	c.Next()
}

// noSniff tells browsers to take every response for the type it declares:
// JSON, a problem, CSV, the page alike.
func noSniff(c *gin.Context) {
	c.Header("X-Content-Type-Options", "nosniff")
	c.Next()
}

// recover turns a panic into a logged 500, except http.ErrAbortHandler,
// which it passes on to net/http to cut the response short.
func (s *server) recover(c *gin.Context) {
	defer func() {
		rec := recover()
		if rec == nil {
			return
		}
		if rec == http.ErrAbortHandler {
			panic(rec)
		}
		s.logger.Error("panic serving request", "path", c.Request.URL.Path, "panic", rec)
		if !c.Writer.Written() {
			s.writeProblem(c, errInternal)
		}
	}()
	c.Next()
}
