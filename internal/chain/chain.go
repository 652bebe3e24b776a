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

// appendCanonicalJSON appends a JSON value with sorted object keys (the
// last of a repeated key), no spaces, strings as encoding/json writes them
// and numbers as written: what decoding it with UseNumber and marshalling
// it again with sorted keys gives, without building the maps.
func appendCanonicalJSON(buf, raw []byte) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "{}" {
		return append(buf, "{}"...), nil
	}
	// Bytes after the value would be dropped, so two different metadata
	// would share their canonical form.
	if !json.Valid(raw) {
		return nil, errors.New("not one JSON value")
	}
	p := jsonReader{b: raw}
	return p.value(buf)
}

// jsonReader reads a valid JSON text.
type jsonReader struct {
	b []byte
	i int
}

func (p *jsonReader) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

// value appends the canonical form of the value at p.i.
func (p *jsonReader) value(buf []byte) ([]byte, error) {
	p.space()
	switch c := p.b[p.i]; c {
	case '{':
		type member struct {
			key   string
			value []byte
		}
		var members []member
		for p.i++; ; {
			p.space()
			if p.b[p.i] == '}' {
				p.i++
				break
			}
			key, err := p.string()
			if err != nil {
				return nil, err
			}
			p.space()
			p.i++ // ':'
			v, err := p.value(nil)
			if err != nil {
				return nil, err
			}
			members = append(members, member{key, v})
			if p.space(); p.b[p.i] == ',' {
				p.i++
			}
		}
		slices.SortStableFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
		buf = append(buf, '{')
		n := 0
		for k, m := range members {
			if k+1 < len(members) && members[k+1].key == m.key {
				continue // a later value of the key replaces it
			}
			if n++; n > 1 {
				buf = append(buf, ',')
			}
			buf = append(append(appendString(buf, m.key), ':'), m.value...)
		}
		return append(buf, '}'), nil
	case '[':
		buf = append(buf, '[')
		var err error
		for p.i++; ; {
			p.space()
			if p.b[p.i] == ']' {
				p.i++
				return append(buf, ']'), nil
			}
			if buf[len(buf)-1] != '[' {
				buf = append(buf, ',')
			}
			if buf, err = p.value(buf); err != nil {
				return nil, err
			}
			if p.space(); p.b[p.i] == ',' {
				p.i++
			}
		}
	case '"':
		s, err := p.string()
		return appendString(buf, s), err
	case 't', 'n':
		p.i += 4
		return append(buf, p.b[p.i-4:p.i]...), nil
	case 'f':
		p.i += 5
		return append(buf, "false"...), nil
	default: // a number, kept as written
		start := p.i
		for p.i < len(p.b) && strings.IndexByte("+-0123456789.eE", p.b[p.i]) >= 0 {
			p.i++
		}
		return append(buf, p.b[start:p.i]...), nil
	}
}

// string reads the string at p.i: as is when it holds only printable ASCII
// and no escape, else as encoding/json decodes it.
func (p *jsonReader) string() (string, error) {
	start, plain := p.i, true
	for p.i++; p.b[p.i] != '"'; p.i++ {
		if c := p.b[p.i]; c == '\\' {
			p.i++
			plain = false
		} else if c < 0x20 || c > 0x7e {
			plain = false
		}
	}
	p.i++
	if plain {
		return string(p.b[start+1 : p.i-1]), nil
	}
	var s string
	err := json.Unmarshal(p.b[start:p.i], &s)
	return s, err
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
