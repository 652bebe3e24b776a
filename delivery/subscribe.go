package delivery

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Kinds of destination.
const (
	KindWebhook   = "webhook"
	KindSlack     = "slack"
	KindSplunkHEC = "splunk_hec"
)

// Rule selects the events a subscription delivers; an empty list keeps all.
type Rule struct {
	// Actions are action names, exact or a prefix ending in ".*"
	// ("cluster.*").
	Actions []string `json:"actions"`
	// TargetTypes are target types ("cluster", "pat", ...).
	TargetTypes []string `json:"target_types"`
	// ActorEmails are actor emails, compared without case.
	ActorEmails []string `json:"actor_emails"`
}

// Subscription is a new subscription of an org.
type Subscription struct {
	OrgID, Name, Kind string
	Rule
	Destination
}

// Querier runs a query: a connection, a pool or a transaction of the
// control plane (a role holding audit_writer).
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Subscribe checks the destination (the SSRF rule for its host, a secret
// for a webhook: made when none is given), seals it to the worker's key and
// makes the subscription with audit.subscribe in db, which records
// audit_stream.created. It returns the subscription's id and its
// destination as sealed, with the webhook secret to give the receiver once.
func Subscribe(ctx context.Context, db Querier, g Guard, s Subscription) (string, Destination, error) {
	u, err := g.CheckURL(ctx, s.URL)
	if err != nil {
		return "", Destination{}, err
	}
	d := s.Destination
	switch s.Kind {
	case KindWebhook:
		if d.Secret == "" {
			b := make([]byte, 32)
			rand.Read(b)
			d.Secret = "whsec_" + base64.RawURLEncoding.EncodeToString(b)
		}
	case KindSplunkHEC:
		if d.Token == "" {
			return "", Destination{}, errors.New("a splunk_hec subscription needs its HEC token")
		}
	}
	var keyID string
	var pubBytes []byte
	if err := db.QueryRow(ctx, "SELECT coalesce(key_id, ''), coalesce(public_key, '') FROM audit.delivery_key()").Scan(&keyID, &pubBytes); err != nil {
		return "", Destination{}, fmt.Errorf("read the delivery key: %w", err)
	}
	if keyID == "" {
		return "", Destination{}, errors.New("no delivery key registered yet: start the delivery worker once (auditlog deliver)")
	}
	pub, err := ecdh.X25519().NewPublicKey(pubBytes)
	if err != nil {
		return "", Destination{}, fmt.Errorf("read the delivery key: %w", err)
	}
	sealed, err := Seal(pub, d)
	if err != nil {
		return "", Destination{}, err
	}
	var id string
	err = db.QueryRow(ctx, "SELECT audit.subscribe($1, $2, $3, $4, $5, $6, $7, $8, $9)::text",
		s.OrgID, s.Name, s.Kind, u.Hostname(), keyID, sealed,
		nonNil(s.Actions), nonNil(s.TargetTypes), nonNil(s.ActorEmails)).Scan(&id)
	if err != nil {
		return "", Destination{}, fmt.Errorf("subscribe: %w", err)
	}
	return id, d, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
