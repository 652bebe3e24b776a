// Package api is the read-only HTTP API of the audit log (Gin): health,
// metrics, the catalog, an org's events as JSON pages or CSV, and the
// Activity page.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config holds what the API needs.
type Config struct {
	// Pool connects as a role holding audit_reader; the API writes nothing.
	Pool *pgxpool.Pool
	// Logger receives one line per request and every internal error.
	Logger *slog.Logger
}

// New returns the API's handler.
func New(cfg Config) http.Handler {
	s := &server{pool: cfg.Pool, logger: cfg.Logger}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	r := gin.New()
	r.Use(s.logRequests, gin.CustomRecovery(s.recovered))
	r.GET("/healthz", s.healthz)
	return r
}

type server struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
}

// healthz answers 200 when the database answers within two seconds, 503 when
// it does not.
func (s *server) healthz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		s.logger.Warn("health check: database unreachable", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "database": "unreachable"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok", "database": "ok"})
}

func (s *server) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	s.logger.Info("request", "method", c.Request.Method, "path", c.Request.URL.Path,
		"status", c.Writer.Status(), "bytes", c.Writer.Size(), "duration", time.Since(start))
}

func (s *server) recovered(c *gin.Context, err any) {
	s.logger.Error("panic serving request", "path", c.Request.URL.Path, "panic", err)
	c.AbortWithStatus(http.StatusInternalServerError)
}
