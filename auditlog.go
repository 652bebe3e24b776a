// Package auditlog records audit events from Go application code, inside the
// application's own PostgreSQL transaction: the event commits or rolls back
// with the action it describes.
//
// Record an action's event with the request it came from, in the
// transaction that performs it: one statement, one round trip.
//
//	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
//		if _, err := tx.Exec(ctx, "UPDATE clusters SET name = $1 WHERE id = $2", name, id); err != nil {
//			return err
//		}
//		_, err := auditlog.Record(ctx, tx, auditlog.Context{Actor: auditlog.Actor{ID: userID}, IP: clientIP}, auditlog.Event{
//			OrgID: orgID, Action: auditlog.ClusterUpdated, TargetID: id,
//			Metadata: map[string]any{"changes": map[string]any{"name": name}},
//		})
//		return err
//	})
//
// A transaction recording several events may instead set the context once
// with SetContext and call Log per event.
//
// Record, Log and SetContext are thin wrappers over the SQL functions
// audit.log_event and audit.set_context (docs/recording.md), which the
// connecting role may call through audit_writer. A refused event is an
// *Error; errors.Is tells which rule it broke (ErrUnknownOrg,
// ErrMissingMetadata, ...).
package auditlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditlog/auditlog/internal/sqlstate"
)

// Querier runs a query: pgx.Tx, *pgx.Conn, *pgxpool.Pool and *pgxpool.Conn
// all satisfy it. Pass the transaction the action runs in.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Actor is who acted. The zero Actor means the platform itself (actor_type
// system).
type Actor struct {
	// ID is the acting user's id (cloud.users.id).
	ID string
	// Email is the acting user's email; looked up from cloud.users when empty.
	Email string
	// ViaPAT is the name of the personal access token the user acted with,
	// empty for browser sessions. Recorded as metadata.via_pat.
	ViaPAT string
}

// Context describes the request an action comes from: given to Record, for
// that event; given to SetContext, for every event the transaction logs
// after it.
type Context struct {
	Actor Actor
	// IP is the client address; the zero Addr records none.
	IP netip.Addr
	// UserAgent is the client's User-Agent header; cut to 512 characters.
	UserAgent string
	// RequestID correlates the event with application logs; cut to 128 characters.
	RequestID string
}

// Event is one mutating action to record.
type Event struct {
	// OrgID is the org the action belongs to (cloud.orgs.id). Required.
	OrgID string
	// Action is what happened. Required.
	Action Action
	// TargetID names what was acted on (a cluster id, a user id, ...).
	TargetID string
	// Metadata holds the action's details; it must marshal to a JSON object
	// with the action's required keys (see Actions). Nil means none.
	Metadata any
	// Actor, if set, overrides the Context's actor for this event alone.
	Actor *Actor
}

// Limits enforced by audit.log_event; longer values are refused (ErrTooLong).
const (
	MaxTargetIDLen   = 256   // characters
	MaxEmailLen      = 254   // characters
	MaxViaPATLen     = 100   // characters
	MaxMetadataBytes = 16384 // bytes, as stored (jsonb), via_pat included
	MaxUserAgentLen  = 512   // characters; longer ones are cut, not refused
	MaxRequestIDLen  = 128   // characters; longer ones are cut, not refused
)

const setContextSQL = `SELECT audit.set_context(actor_id => $1, actor_email => $2, via_pat => $3,
	ip => $4, user_agent => $5, request_id => $6)`

const logEventSQL = `SELECT audit.log_event(org_id => $1, action => $2, target_id => $3, metadata => $4,
	actor_id => $5, actor_email => $6, via_pat => $7, ip => $8, user_agent => $9, request_id => $10)`

// SetContext records who is acting for the rest of the transaction q runs in.
func SetContext(ctx context.Context, q Querier, c Context) error {
	var discard any
	err := q.QueryRow(ctx, setContextSQL, null(c.Actor.ID), null(c.Actor.Email), null(c.Actor.ViaPAT),
		ip(c.IP), null(c.UserAgent), null(c.RequestID)).Scan(&discard)
	if err != nil {
		return fmt.Errorf("auditlog: set context: %w", err)
	}
	return nil
}

// Log records e in the transaction q runs in, with the context SetContext
// gave it if any, and returns the event's id. If the event is refused the
// error is an *Error, and the transaction has failed: roll it back, the
// action must not happen without its event.
func Log(ctx context.Context, q Querier, e Event) (string, error) {
	return Record(ctx, q, Context{}, e)
}

// Record is Log with the request's context given alongside the event, in
// the same statement: one round trip, where SetContext then Log take two.
// What c leaves empty comes from SetContext's context, if any; e.Actor, if
// set, overrides c.Actor.
func Record(ctx context.Context, q Querier, c Context, e Event) (string, error) {
	var metadata any
	if e.Metadata != nil {
		b, err := json.Marshal(e.Metadata)
		if err != nil {
			return "", fmt.Errorf("auditlog: %s metadata: %w", e.Action, err)
		}
		if string(b) != "null" { // a nil map or pointer in an interface: none, as documented
			metadata = string(b)
		}
	}
	actor := c.Actor
	if e.Actor != nil {
		actor = *e.Actor
	}
	var id string
	err := q.QueryRow(ctx, logEventSQL, null(e.OrgID), null(string(e.Action)), null(e.TargetID), metadata,
		null(actor.ID), null(actor.Email), null(actor.ViaPAT), ip(c.IP), null(c.UserAgent), null(c.RequestID)).Scan(&id)
	if err != nil {
		return "", wrap(e.Action, err)
	}
	return id, nil
}

// ip is a client address as an argument: SQL NULL for the zero Addr.
func ip(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a.String()
}

// null turns an empty string into SQL NULL.
func null(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// The rules audit.log_event enforces. An *Error matches one with errors.Is.
var (
	ErrUnknownOrg        = errors.New("unknown org")
	ErrUnknownAction     = errors.New("unknown action")
	ErrMetadataNotObject = errors.New("metadata is not a JSON object")
	ErrMissingMetadata   = errors.New("required metadata key missing")
	ErrTooLong           = errors.New("value too long")
	ErrMalformedEmail    = errors.New("malformed email")
	ErrMissingArgument   = errors.New("org and action are required")
)

// sqlStates maps audit.log_event's SQLSTATEs to the rules.
var sqlStates = map[string]error{
	sqlstate.UnknownOrg:        ErrUnknownOrg,
	sqlstate.UnknownAction:     ErrUnknownAction,
	sqlstate.MetadataNotObject: ErrMetadataNotObject,
	sqlstate.MissingMetadata:   ErrMissingMetadata,
	sqlstate.TooLong:           ErrTooLong,
	sqlstate.MalformedEmail:    ErrMalformedEmail,
	sqlstate.MissingArgument:   ErrMissingArgument,
}

// Error is an event refused by audit.log_event.
type Error struct {
	// Rule is the rule broken, one of the Err variables.
	Rule error
	// Action is the action that was being recorded.
	Action Action
	// PgError is PostgreSQL's error, with the SQLSTATE and full message.
	PgError *pgconn.PgError
}

func (e *Error) Error() string { return "auditlog: " + e.PgError.Message }

// Unwrap lets errors.Is match both the rule and the PostgreSQL error.
func (e *Error) Unwrap() []error { return []error{e.Rule, e.PgError} }

func wrap(action Action, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if rule, ok := sqlStates[pgErr.Code]; ok {
			return &Error{Rule: rule, Action: action, PgError: pgErr}
		}
	}
	return fmt.Errorf("auditlog: log %s: %w", action, err)
}
