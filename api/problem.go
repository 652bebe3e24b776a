package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditlog/auditlog/internal/sqlstate"
	"github.com/auditlog/auditlog/internal/store"
)

// problem is an error response, RFC 9457 (application/problem+json). Every
// error the API answers is one; Type names the kind, and InvalidParams the
// query parameters that were wrong and why.
type problem struct {
	Type          string         `json:"type"`
	Title         string         `json:"title"`
	Status        int            `json:"status"`
	Detail        string         `json:"detail,omitempty"`
	Instance      string         `json:"instance,omitempty"`
	InvalidParams []invalidParam `json:"invalid_params,omitempty"`

	// retryAfter, if set, is sent as the Retry-After header.
	retryAfter time.Duration
	// kind labels the problem in metrics: the last part of Type.
	kind string
}

// invalidParam names one bad query parameter and says what is wrong with it.
type invalidParam struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

func (p *problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail) }

// problemTypePrefix starts every problem type URI; docs/api.md lists them.
const problemTypePrefix = "urn:auditlog:problem:"

// newProblem makes a problem titled with the status's standard text.
func newProblem(status int, kind, detail string) *problem {
	return &problem{Type: problemTypePrefix + kind, Title: http.StatusText(status), Status: status, Detail: detail, kind: kind}
}

func invalidParams(params []invalidParam) *problem {
	p := newProblem(http.StatusBadRequest, "invalid-parameter", "")
	p.Title = "Invalid query parameter"
	p.InvalidParams = params
	p.Detail = params[0].Name + ": " + params[0].Reason
	if len(params) > 1 {
		p.Detail += fmt.Sprintf(" (and %d more, see invalid_params)", len(params)-1)
	}
	return p
}

func invalidParamProblem(name, reason string) *problem {
	return invalidParams([]invalidParam{{Name: name, Reason: reason}})
}

func unauthorized(detail string) *problem {
	return newProblem(http.StatusUnauthorized, "unauthorized", detail)
}

// The fixed problems.
var (
	errForbidden        = newProblem(http.StatusForbidden, "forbidden", "only the org's owners may read its audit log")
	errOrgNotFound      = newProblem(http.StatusNotFound, "not-found", "no such org, or you are not a member of it")
	errEventNotFound    = newProblem(http.StatusNotFound, "not-found", "no such event in this org's log, or older than its plan keeps")
	errRouteNotFound    = newProblem(http.StatusNotFound, "not-found", "no such endpoint; see /api/openapi.json")
	errMethodNotAllowed = newProblem(http.StatusMethodNotAllowed, "method-not-allowed", "the API is read-only: GET only (but POST and DELETE /api/session, to sign a browser in and out)")
	errUnavailable      = newProblem(http.StatusServiceUnavailable, "unavailable", "the database is unavailable or overloaded; try again shortly")
	errTimeout          = newProblem(http.StatusServiceUnavailable, "timeout", "the query took too long; narrow the range or the filters, or try again")
	errInternal         = newProblem(http.StatusInternalServerError, "internal", "something went wrong on our side; it has been logged")
)

func tooManyRequests(detail string, retryAfter time.Duration) *problem {
	p := newProblem(http.StatusTooManyRequests, "rate-limited", detail)
	p.retryAfter = retryAfter
	return p
}

// problemFor translates any error a handler meets into the problem to answer,
// in this one place: the API's own problems as they are, the store's errors
// and PostgreSQL's SQLSTATEs by class. It returns nil when the client has
// gone and there is no one to answer.
func problemFor(ctx context.Context, err error) (p *problem, internal bool) {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &p):
		return p, false
	case errors.Is(err, store.ErrUnauthenticated):
		return unauthorized("the token is unknown, expired or revoked"), false
	case errors.Is(err, store.ErrNoSuchOrg):
		return errOrgNotFound, false
	case errors.Is(err, store.ErrNoSuchEvent):
		return errEventNotFound, false
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return nil, false
	case errors.Is(err, context.DeadlineExceeded):
		return withRetry(errTimeout), false
	case errors.As(err, &pgErr):
		switch {
		case pgErr.Code == sqlstate.QueryCanceled: // statement_timeout
			return withRetry(errTimeout), false
		case pgErr.Code[:2] == sqlstate.ClassConnectionException, pgErr.Code[:2] == sqlstate.ClassInsufficientResources,
			pgErr.Code == sqlstate.AdminShutdown, pgErr.Code == sqlstate.CrashShutdown, pgErr.Code == sqlstate.CannotConnectNow,
			pgErr.Code == sqlstate.SerializationFailure, pgErr.Code == sqlstate.DeadlockDetected, pgErr.Code == sqlstate.LockNotAvailable:
			return withRetry(errUnavailable), true
		}
	case pgconn.Timeout(err), pgconn.SafeToRetry(err), isConnectError(err):
		return withRetry(errUnavailable), true
	}
	return errInternal, true
}

func isConnectError(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}

func withRetry(p *problem) *problem {
	q := *p
	q.retryAfter = 5 * time.Second
	return &q
}

// fail answers err as a problem and stops the handler chain. Internal
// errors are logged; none of their details reach the client.
func (s *server) fail(c *gin.Context, err error) {
	p, internal := problemFor(c.Request.Context(), err)
	if internal {
		s.logger.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	if p == nil {
		s.metrics.errors.WithLabelValues("client-gone").Inc()
		c.Abort()
		return
	}
	s.writeProblem(c, p)
}

func (s *server) writeProblem(c *gin.Context, p *problem) {
	s.metrics.errors.WithLabelValues(p.kind).Inc()
	body := *p
	body.Instance = c.Request.URL.RequestURI()
	b, err := json.Marshal(body)
	if err != nil { // cannot happen: strings and ints
		b = []byte(`{"type":"about:blank","status":500}`)
	}
	if p.retryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(p.retryAfter.Seconds()))))
	}
	if p.Status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="auditlog"`)
	}
	c.Header("Cache-Control", "no-store")
	c.Data(p.Status, "application/problem+json", b)
	c.Abort()
}
