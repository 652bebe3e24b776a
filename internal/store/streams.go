package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// MaxStreams bounds the subscriptions one listing shows; StreamAttempts the
// recent attempts shown with each.
const (
	MaxStreams     = 100
	StreamAttempts = 20
)

// Stream is a subscription as the API shows it: never its destination's
// URL or secrets (docs/delivery.md).
type Stream struct {
	ID           string     `json:"id" db:"id"`
	Name         string     `json:"name" db:"name"`
	Kind         string     `json:"kind" db:"kind"`
	Host         string     `json:"host" db:"host"`
	Actions      []string   `json:"actions" db:"actions"`
	TargetTypes  []string   `json:"target_types" db:"target_types"`
	ActorEmails  []string   `json:"actor_emails" db:"actor_emails"`
	State        string     `json:"state" db:"state"`
	Position     int64      `json:"position" db:"position"`
	Lag          int64      `json:"lag" db:"lag"`
	FailingSince *time.Time `json:"failing_since" db:"failing_since"`
	CreatedAt    time.Time  `json:"created_at" db:"created_at"`
	Attempts     []Attempt  `json:"attempts" db:"-"`
}

// Attempt is one delivery attempt.
type Attempt struct {
	AttemptedAt time.Time `json:"attempted_at" db:"attempted_at"`
	Status      *int      `json:"status" db:"status"`
	LatencyMS   int       `json:"latency_ms" db:"latency_ms"`
	FirstSeq    int64     `json:"first_seq" db:"first_seq"`
	LastSeq     int64     `json:"last_seq" db:"last_seq"`
	Events      int       `json:"events" db:"events"`
	Error       *string   `json:"error" db:"error"`
}

// Streams lists org orgID's subscriptions by name, each with its latest
// attempts, newest first.
func (s *Store) Streams(ctx context.Context, orgID string) ([]Stream, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id::text AS id, name, kind, host, actions, target_types, actor_emails, state, position, lag,
		       failing_since, created_at
		FROM audit.streams WHERE org_id = $1 ORDER BY name LIMIT $2`, orgID, MaxStreams)
	if err != nil {
		return nil, fmt.Errorf("read streams of org %s: %w", orgID, err)
	}
	streams, err := pgx.CollectRows(rows, pgx.RowToStructByNameLax[Stream])
	if err != nil || len(streams) == 0 {
		return []Stream{}, err
	}
	ids := make([]string, len(streams))
	for i, st := range streams {
		ids[i] = st.ID
		streams[i].Attempts = []Attempt{}
	}
	rows, err = s.pool.Query(ctx, `
		SELECT a.subscription_id::text AS subscription_id, a.attempted_at, a.status, a.latency_ms, a.first_seq, a.last_seq, a.events, a.error
		FROM unnest($1::uuid[]) AS sub(id)
		CROSS JOIN LATERAL (SELECT * FROM audit.delivery_attempts d WHERE d.subscription_id = sub.id
		                    ORDER BY d.attempted_at DESC LIMIT $2) a`, ids, StreamAttempts)
	if err != nil {
		return nil, fmt.Errorf("read delivery attempts of org %s: %w", orgID, err)
	}
	type subAttempt struct {
		SubscriptionID string `db:"subscription_id"`
		Attempt
	}
	attempts, err := pgx.CollectRows(rows, pgx.RowToStructByName[subAttempt])
	if err != nil {
		return nil, fmt.Errorf("read delivery attempts of org %s: %w", orgID, err)
	}
	index := make(map[string]int, len(streams))
	for i, st := range streams {
		index[st.ID] = i
	}
	for _, a := range attempts {
		i := index[a.SubscriptionID]
		streams[i].Attempts = append(streams[i].Attempts, a.Attempt)
	}
	return streams, nil
}

// DeliveryStatus is, for a destination kind and a state, how many
// subscriptions there are and the greatest lag among them.
type DeliveryStatus struct {
	Kind, State   string
	Subscriptions int64
	MaxLag        int64
}

// DeliveryStatus counts the subscriptions of every org by kind and state.
func (s *Store) DeliveryStatus(ctx context.Context) ([]DeliveryStatus, error) {
	rows, err := s.pool.Query(ctx, "SELECT kind, state, count(*), coalesce(max(lag), 0) FROM audit.streams GROUP BY kind, state")
	if err != nil {
		return nil, fmt.Errorf("read delivery status: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[DeliveryStatus])
	if err != nil {
		return nil, fmt.Errorf("read delivery status: %w", err)
	}
	return out, nil
}
