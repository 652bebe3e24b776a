// Package chain defines the per-org hash chain that seals the audit log
// (docs/feed.md): the canonical bytes of an event, the link hash, the signed
// checkpoints and a verifier that recomputes a chain from its links.
//
// hash(seq) = SHA-256(hash(seq-1) || seq as 8 bytes big-endian || Canonical(event)),
// with hash(0) = 32 zero bytes.
package chain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/auditlog/auditlog/internal/store"
)

// HashSize is the length of a link hash.
const HashSize = sha256.Size

// Hash is one link of the chain.
type Hash [HashSize]byte

// Genesis is the hash before an org's first event.
var Genesis Hash

// Next is the hash of the link seq, holding an event whose canonical bytes
// are canonical, after the link whose hash is prev.
func Next(prev Hash, seq int64, canonical []byte) Hash {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(seq)))
	h.Write(canonical)
	var out Hash
	h.Sum(out[:0])
	return out
}

// ParseHash reads a hash from its 32 bytes (as audit.seals stores it).
func ParseHash(b []byte) (Hash, error) {
	var h Hash
	if len(b) != HashSize {
		return h, fmt.Errorf("hash has %d bytes, want %d", len(b), HashSize)
	}
	copy(h[:], b)
	return h, nil
}

// String is the hash in lowercase hex, as the API shows it.
func (h Hash) String() string { return fmt.Sprintf("%x", h[:]) }

// canonicalEvent fixes the key order of the canonical form.
type canonicalEvent struct {
	ID         string          `json:"id"`
	OrgID      string          `json:"org_id"`
	OccurredAt string          `json:"occurred_at"`
	Action     string          `json:"action"`
	TargetType string          `json:"target_type"`
	TargetID   *string         `json:"target_id"`
	ActorType  string          `json:"actor_type"`
	ActorID    *string         `json:"actor_id"`
	ActorEmail *string         `json:"actor_email"`
	IP         *string         `json:"ip"`
	UserAgent  *string         `json:"user_agent"`
	RequestID  *string         `json:"request_id"`
	Metadata   json.RawMessage `json:"metadata"`
}

// TimeLayout is how the canonical form writes occurred_at: UTC, to the
// microsecond PostgreSQL stores.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Canonical is the event's canonical bytes: a JSON object with the keys in
// the order of the table's columns, no spaces, no HTML escaping, occurred_at
// in TimeLayout, ip as its address (host(ip)), lowercase uuids, and metadata with its object keys sorted at every
// level and its numbers as stored.
func Canonical(e store.Event) ([]byte, error) {
	meta, err := canonicalJSON(e.Metadata)
	if err != nil {
		return nil, fmt.Errorf("event %s: metadata: %w", e.ID, err)
	}
	c := canonicalEvent{
		ID: strings.ToLower(e.ID), OrgID: strings.ToLower(e.OrgID),
		OccurredAt: e.OccurredAt.UTC().Truncate(time.Microsecond).Format(TimeLayout),
		Action:     e.Action, TargetType: e.TargetType, TargetID: e.TargetID, ActorType: e.ActorType,
		ActorID: lower(e.ActorID), ActorEmail: e.ActorEmail, IP: canonicalIP(e.IP),
		UserAgent: e.UserAgent, RequestID: e.RequestID, Metadata: meta,
	}
	return marshal(c)
}

func lower(s *string) *string {
	if s == nil {
		return nil
	}
	l := strings.ToLower(*s)
	return &l
}

// canonicalIP writes the address without a prefix length, as PostgreSQL's
// host(ip) and the API do: "10.0.0.1" for 10.0.0.1/32.
func canonicalIP(s *string) *string {
	if s == nil {
		return nil
	}
	out := *s
	if p, err := netip.ParsePrefix(out); err == nil {
		out = p.Addr().String()
	} else if a, err := netip.ParseAddr(out); err == nil {
		out = a.String()
	}
	return &out
}

// canonicalJSON re-encodes a JSON value with sorted object keys and numbers
// kept as written.
func canonicalJSON(raw []byte) (json.RawMessage, error) {
	if len(raw) == 0 {
		return json.RawMessage("{}"), nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	// Bytes after the value would be dropped, so two different metadata
	// would share their canonical form.
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	return marshal(sortKeys(v))
}

// sortedObject marshals its members in the order given.
type sortedObject []member

type member struct {
	key   string
	value any
}

func sortKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		obj := make(sortedObject, 0, len(x))
		for k, val := range x {
			obj = append(obj, member{k, sortKeys(val)})
		}
		slices.SortFunc(obj, func(a, b member) int { return strings.Compare(a.key, b.key) })
		return obj
	case []any:
		for i := range x {
			x[i] = sortKeys(x[i])
		}
		return x
	default:
		return v
	}
}

func (o sortedObject) MarshalJSON() ([]byte, error) {
	buf := []byte{'{'}
	for i, m := range o {
		if i > 0 {
			buf = append(buf, ',')
		}
		k, err := marshal(m.key)
		if err != nil {
			return nil, err
		}
		v, err := marshal(m.value)
		if err != nil {
			return nil, err
		}
		buf = append(append(append(buf, k...), ':'), v...)
	}
	return append(buf, '}'), nil
}

// marshal is json.Marshal without HTML escaping and without the newline an
// Encoder adds.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}
