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
	"maps"
	"net/netip"
	"slices"
	"strconv"
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

// TimeLayout is how the canonical form writes occurred_at: UTC, to the
// microsecond PostgreSQL stores.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Canonical is the event's canonical bytes: a JSON object with the keys in
// the order of the table's columns, no spaces, no HTML escaping, occurred_at
// in TimeLayout, ip as its address (host(ip)), lowercase uuids, and metadata with its object keys sorted at every
// level and its numbers as stored. The bytes are appended directly, not
// through encoding/json's reflection (most of the sealer's time per event);
// each string is escaped as encoding/json escapes it.
func Canonical(e store.Event) ([]byte, error) {
	buf := make([]byte, 0, 384+len(e.Metadata))
	buf = append(buf, `{"id":`...)
	buf = appendString(buf, strings.ToLower(e.ID))
	buf = append(buf, `,"org_id":`...)
	buf = appendString(buf, strings.ToLower(e.OrgID))
	buf = append(buf, `,"occurred_at":"`...)
	buf = e.OccurredAt.UTC().Truncate(time.Microsecond).AppendFormat(buf, TimeLayout)
	buf = append(buf, `","action":`...)
	buf = appendString(buf, e.Action)
	buf = append(buf, `,"target_type":`...)
	buf = appendString(buf, e.TargetType)
	buf = append(buf, `,"target_id":`...)
	buf = appendOptional(buf, e.TargetID)
	buf = append(buf, `,"actor_type":`...)
	buf = appendString(buf, e.ActorType)
	buf = append(buf, `,"actor_id":`...)
	buf = appendOptional(buf, lower(e.ActorID))
	buf = append(buf, `,"actor_email":`...)
	buf = appendOptional(buf, e.ActorEmail)
	buf = append(buf, `,"ip":`...)
	buf = appendOptional(buf, canonicalIP(e.IP))
	buf = append(buf, `,"user_agent":`...)
	buf = appendOptional(buf, e.UserAgent)
	buf = append(buf, `,"request_id":`...)
	buf = appendOptional(buf, e.RequestID)
	buf = append(buf, `,"metadata":`...)
	buf, err := appendCanonicalJSON(buf, e.Metadata)
	if err != nil {
		return nil, fmt.Errorf("event %s: metadata: %w", e.ID, err)
	}
	return append(buf, '}'), nil
}

func appendOptional(buf []byte, s *string) []byte {
	if s == nil {
		return append(buf, "null"...)
	}
	return appendString(buf, *s)
}

// appendString appends s as a JSON string, as encoding/json writes it
// without HTML escaping: printable ASCII other than '"' and '\\' as is,
// anything else through encoding/json itself.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b, _ := marshal(s) // a string always marshals
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
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

// appendCanonicalJSON appends a JSON value with sorted object keys and
// numbers kept as written.
func appendCanonicalJSON(buf, raw []byte) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "{}" {
		return append(buf, "{}"...), nil
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
	return appendValue(buf, v)
}

// appendValue appends a value decoded with UseNumber, as encoding/json would
// marshal it, but with object keys sorted.
func appendValue(buf []byte, v any) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case map[string]any:
		keys := slices.Sorted(maps.Keys(x))
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(appendString(buf, k), ':')
			if buf, err = appendValue(buf, x[k]); err != nil {
				return nil, err
			}
		}
		return append(buf, '}'), nil
	case []any:
		buf = append(buf, '[')
		for i, val := range x {
			if i > 0 {
				buf = append(buf, ',')
			}
			if buf, err = appendValue(buf, val); err != nil {
				return nil, err
			}
		}
		return append(buf, ']'), nil
	case string:
		return appendString(buf, x), nil
	case json.Number:
		return append(buf, x...), nil // as written: the decoder checked it
	case bool:
		return strconv.AppendBool(buf, x), nil
	case nil:
		return append(buf, "null"...), nil
	default:
		return nil, fmt.Errorf("unexpected JSON value %T", v)
	}
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
