package chain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/store"
)

const org = "5eed0000-0000-4000-8000-000000000001"

func ptr(s string) *string { return &s }

// golden is an event with every field set, in forms the canonical form must
// normalise: upper-case uuids, a time zone and nanoseconds, an IPv6 address
// with a prefix length, unsorted metadata keys, characters JSON may escape.
func golden() store.Event {
	return store.Event{
		ID: "0A1B2C3D-0000-4000-8000-000000000001", OrgID: org,
		OccurredAt: time.Date(2026, 12, 4, 12, 30, 5, 123456789, time.FixedZone("CET", 3600)),
		Action:     "cluster.deleted", TargetType: "cluster", TargetID: ptr(`c-1 "prod"`), ActorType: "user",
		ActorID: ptr("7E57AC70-0000-4000-8000-00000000000A"), ActorEmail: ptr("ada@northwind.example"),
		IP: ptr("2001:DB8::1/128"), UserAgent: ptr("curl/8.0 <&>"), RequestID: nil,
		Metadata: []byte(`{"z": [3, {"b": 1.50, "a": "é\u2028"}], "name": "prod", "n": 12345678901234567890}`),
	}
}

// goldenCanonical and goldenHash pin the canonical form and the link hash:
// every stored chain was computed with them, so any change here breaks the
// verification of every chain already sealed. The hash was computed
// independently: sha256(32 zero bytes || 00 00 00 00 00 00 00 01 || canonical).
const (
	goldenCanonical = `{"id":"0a1b2c3d-0000-4000-8000-000000000001","org_id":"5eed0000-0000-4000-8000-000000000001",` +
		`"occurred_at":"2026-12-04T11:30:05.123456Z","action":"cluster.deleted","target_type":"cluster",` +
		`"target_id":"c-1 \"prod\"","actor_type":"user","actor_id":"7e57ac70-0000-4000-8000-00000000000a",` +
		`"actor_email":"ada@northwind.example","ip":"2001:db8::1","user_agent":"curl/8.0 <&>","request_id":null,` +
		`"metadata":{"n":12345678901234567890,"name":"prod","z":[3,{"a":"é\u2028","b":1.50}]}}`
	goldenHash = "1351a107122b4d7f9c65558d8ac8afef8ebaf2667cb4a02a410c188d0d01e0cc"
)

func TestCanonicalGolden(t *testing.T) {
	got, err := chain.Canonical(golden())
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != goldenCanonical {
		t.Fatalf("canonical form changed (this breaks every stored chain):\n got %s\nwant %s", got, goldenCanonical)
	}
	if h := chain.Next(chain.Genesis, 1, got); h.String() != goldenHash {
		t.Fatalf("link hash changed (this breaks every stored chain): got %s, want %s", h, goldenHash)
	}
}

// TestCanonicalRoundTrip decodes the canonical bytes back: each field holds
// exactly the value given, so no value can spill into another field.
func TestCanonicalRoundTrip(t *testing.T) {
	e := golden()
	e.TargetID = ptr(`x","actor_type":"system","target_id":"y`)
	e.UserAgent = ptr("a\"b\\c\n\x00\u2029</script>")
	e.RequestID = ptr("")
	c, err := chain.Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(c, &back); err != nil {
		t.Fatalf("canonical bytes are not JSON: %v\n%s", err, c)
	}
	want := map[string]any{"target_id": *e.TargetID, "actor_type": "user", "user_agent": *e.UserAgent, "request_id": "", "ip": "2001:db8::1"}
	for k, v := range want {
		if back[k] != v {
			t.Errorf("%s decodes as %q, want %q", k, back[k], v)
		}
	}
	if len(back) != 13 {
		t.Errorf("canonical form has %d keys, want the 13 columns: %s", len(back), c)
	}
}

// canonicalChanged is the canonical form of the golden event after change.
func canonicalChanged(t *testing.T, change func(*store.Event)) string {
	t.Helper()
	e := golden()
	change(&e)
	got, err := chain.Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(got)
}

// TestCanonicalEquivalentForms lists changes that do not change the stored
// event (the same uuid, instant, address or jsonb value written another
// way), so the canonical bytes must not change either.
func TestCanonicalEquivalentForms(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*store.Event)
	}{
		{"lowercase uuids", func(e *store.Event) {
			e.ID, e.ActorID = strings.ToLower(e.ID), ptr(strings.ToLower(*e.ActorID))
		}},
		{"same instant in UTC", func(e *store.Event) { e.OccurredAt = e.OccurredAt.UTC() }},
		{"nanoseconds below the microsecond PostgreSQL keeps", func(e *store.Event) {
			e.OccurredAt = e.OccurredAt.Truncate(time.Microsecond).Add(999 * time.Nanosecond)
		}},
		{"address without its full-length prefix", func(e *store.Event) { e.IP = ptr("2001:db8::1") }},
		{"address written long", func(e *store.Event) { e.IP = ptr("2001:0db8:0000:0000:0000:0000:0000:0001") }},
		{"metadata keys in another order, other spacing", func(e *store.Event) {
			e.Metadata = []byte(`{"n":12345678901234567890,"name":"prod","z":[3,{"a":"é\u2028","b":1.50}]}`)
		}},
		{"metadata string escaped otherwise", func(e *store.Event) {
			e.Metadata = []byte(`{"name":"\u0070rod","n":12345678901234567890,"z":[3,{"b":1.50,"a":"\u00e9` + "\u2028" + `"}]}`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := canonicalChanged(t, tc.change); got != goldenCanonical {
				t.Fatalf("got  %s\nwant %s", got, goldenCanonical)
			}
		})
	}
}

// TestCanonicalDistinguishes lists changes to a stored event that its
// canonical bytes must show: a superuser making any of them is found.
func TestCanonicalDistinguishes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*store.Event)
	}{
		{"id", func(e *store.Event) { e.ID = "0a1b2c3d-0000-4000-8000-000000000002" }},
		{"org", func(e *store.Event) { e.OrgID = "5eed0000-0000-4000-8000-000000000002" }},
		{"a microsecond later", func(e *store.Event) { e.OccurredAt = e.OccurredAt.Add(time.Microsecond) }},
		{"action", func(e *store.Event) { e.Action = "cluster.created" }},
		{"target type", func(e *store.Event) { e.TargetType = "org" }},
		{"target id null", func(e *store.Event) { e.TargetID = nil }},
		{"target id empty", func(e *store.Event) { e.TargetID = ptr("") }},
		{"target id string null", func(e *store.Event) { e.TargetID = ptr("null") }},
		{"actor type", func(e *store.Event) { e.ActorType = "system" }},
		{"actor id null", func(e *store.Event) { e.ActorID = nil }},
		{"actor email null", func(e *store.Event) { e.ActorEmail = nil }},
		{"actor email case", func(e *store.Event) { e.ActorEmail = ptr("Ada@northwind.example") }},
		{"actor email trailing space", func(e *store.Event) { e.ActorEmail = ptr("ada@northwind.example ") }},
		{"ip null", func(e *store.Event) { e.IP = nil }},
		{"ip other address", func(e *store.Event) { e.IP = ptr("2001:db8::2") }},
		{"ip IPv4 and its IPv4-mapped IPv6 form", func(e *store.Event) { e.IP = ptr("::ffff:10.0.0.1") }},
		{"user agent null", func(e *store.Event) { e.UserAgent = nil }},
		{"user agent empty", func(e *store.Event) { e.UserAgent = ptr("") }},
		{"user agent unicode decomposed", func(e *store.Event) { e.UserAgent = ptr("curl/8.0 <&>e\u0301") }},
		{"request id empty", func(e *store.Event) { e.RequestID = ptr("") }},
		{"metadata value", func(e *store.Event) {
			e.Metadata = []byte(`{"n":12345678901234567890,"name":"prod2","z":[3,{"a":"é\u2028","b":1.50}]}`)
		}},
		{"metadata unicode decomposed", func(e *store.Event) {
			e.Metadata = []byte(`{"n":12345678901234567890,"name":"prod","z":[3,{"a":"e\u0301\u2028","b":1.50}]}`)
		}},
		{"metadata number written otherwise", func(e *store.Event) {
			e.Metadata = []byte(`{"n":12345678901234567890,"name":"prod","z":[3,{"a":"é\u2028","b":1.5}]}`)
		}},
		{"metadata number rounded as a float64", func(e *store.Event) {
			e.Metadata = []byte(`{"n":12345678901234567000,"name":"prod","z":[3,{"a":"é\u2028","b":1.50}]}`)
		}},
		{"metadata array order", func(e *store.Event) {
			e.Metadata = []byte(`{"n":12345678901234567890,"name":"prod","z":[{"a":"é\u2028","b":1.50},3]}`)
		}},
		{"metadata key moved into a nested object", func(e *store.Event) {
			e.Metadata = []byte(`{"n":12345678901234567890,"z":[3,{"a":"é\u2028","b":1.50,"name":"prod"}]}`)
		}},
		{"metadata string holding the number", func(e *store.Event) {
			e.Metadata = []byte(`{"n":"12345678901234567890","name":"prod","z":[3,{"a":"é\u2028","b":1.50}]}`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := canonicalChanged(t, tc.change); got == goldenCanonical {
				t.Fatalf("the change leaves the canonical bytes as they were: %s", got)
			}
		})
	}
}

// TestCanonicalRejectsBadMetadata: metadata with anything after its value
// would share its canonical bytes with the value alone.
func TestCanonicalRejectsBadMetadata(t *testing.T) {
	for _, raw := range []string{`{"a":`, `nope`, `{"a":1}}`, `{"a":1} {"b":2}`, `{"a":1}x`} {
		t.Run(raw, func(t *testing.T) {
			e := golden()
			e.Metadata = []byte(raw)
			if c, err := chain.Canonical(e); err == nil {
				t.Fatalf("metadata %s: canonical %s, want an error", raw, c)
			}
		})
	}
}

func TestNextCoversEveryInput(t *testing.T) {
	c, err := chain.Canonical(golden())
	if err != nil {
		t.Fatal(err)
	}
	base := chain.Next(chain.Genesis, 1, c)
	other := chain.Genesis
	other[31] = 1
	for name, h := range map[string]chain.Hash{
		"previous hash": chain.Next(other, 1, c),
		"seq":           chain.Next(chain.Genesis, 2, c),
		"canonical":     chain.Next(chain.Genesis, 1, append(bytes.Clone(c), ' ')),
	} {
		if h == base {
			t.Errorf("changing the %s leaves the hash as it was", name)
		}
	}
}

func TestParseHash(t *testing.T) {
	want := chain.Next(chain.Genesis, 1, []byte("x"))
	for _, tc := range []struct {
		in []byte
		ok bool
	}{
		{want[:], true},
		{want[:31], false},
		{append(want[:], 0), false},
		{nil, false},
		{[]byte(want.String()), false},
	} {
		got, err := chain.ParseHash(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != want) {
			t.Errorf("ParseHash(%d bytes) = %s, %v; want ok %v", len(tc.in), got, err, tc.ok)
		}
	}
	if s := want.String(); len(s) != 64 || s != fmt.Sprintf("%x", want[:]) {
		t.Errorf("String() = %q, want 64 lowercase hex digits", s)
	}
}

// BenchmarkCanonical is the sealer's per-event cost of the canonical form,
// for an event as the control plane records it.
func BenchmarkCanonical(b *testing.B) {
	e := store.Event{
		ID: "0a1b2c3d-0000-4000-8000-000000000001", OrgID: org, OccurredAt: time.Now(),
		Action: "cluster.created", TargetType: "cluster", TargetID: ptr("cl-42"), ActorType: "user",
		ActorEmail: ptr("ada@northwind.example"), IP: ptr("203.0.113.7"),
		UserAgent: ptr("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
		RequestID: ptr("req-0a1b2c3d"),
		Metadata:  []byte(`{"name": "prod-eu-1", "region": "eu-west-1", "changes": {"labels": ["a", "b"]}}`),
	}
	for b.Loop() {
		if _, err := chain.Canonical(e); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCanonicalEscapesAsEncodingJSON: the canonical form writes each string
// as encoding/json does without HTML escaping (what every stored chain was
// computed with), in a column and in metadata.
func TestCanonicalEscapesAsEncodingJSON(t *testing.T) {
	encode := func(v any) string {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(buf.String(), "\n")
	}
	strs := []string{"", "plain", `quote " and \ backslash`, "<&>", "\x7f", "é", "\u2028\u2029", "\xff\xfe invalid", "😀", "tab\tnewline\n"}
	for c := range 0x20 {
		strs = append(strs, string(rune(c)))
	}
	for _, s := range strs {
		e := golden()
		e.TargetID, e.Metadata = &s, []byte(`{"k": `+encode(s)+`, "a": [`+encode(s)+`]}`)
		got, err := chain.Canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		e.TargetID, e.Metadata = ptr("X"), []byte(`{"k": "Y", "a": ["Y"]}`)
		base, err := chain.Canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		var decoded string // as metadata holds it: invalid UTF-8 became U+FFFD
		if err := json.Unmarshal([]byte(encode(s)), &decoded); err != nil {
			t.Fatal(err)
		}
		want := strings.ReplaceAll(strings.Replace(string(base), `"X"`, encode(s), 1), `"Y"`, encode(decoded))
		if string(got) != want {
			t.Errorf("%q:\n got %s\nwant %s", s, got, want)
		}
	}
}

// FuzzCanonicalMetadata: the canonical form of metadata is what decoding it
// (numbers kept as written) and marshalling it again with sorted keys gives,
// as the first version computed it; the same inputs are refused.
func FuzzCanonicalMetadata(f *testing.F) {
	for _, seed := range []string{`{}`, `{"b": 1, "a": [true, false, null, -0.5e+3]}`, `{"a": 1, "a": {"c": 2}}`,
		`{"é": "\u00e9\ud800\u2028", "\u0061": "\"\\\/\b\f\n\r\t"}`, " [ 1 , { } , [ ] , \"x\" ] ", `"s"`, `12`, `{"a":1} x`, "{\"a\":\"\xff\"}", `{"a":`} {
		f.Add([]byte(seed))
	}
	e := golden()
	e.Metadata = []byte(`{}`)
	base, err := chain.Canonical(e)
	if err != nil {
		f.Fatal(err)
	}
	prefix := strings.TrimSuffix(string(base), `{}}`)
	f.Fuzz(func(t *testing.T, raw []byte) {
		want, werr := referenceCanonicalJSON(raw)
		e := golden()
		e.Metadata = raw
		got, err := chain.Canonical(e)
		if (err == nil) != (werr == nil) {
			t.Fatalf("metadata %q: error %v, the reference's %v", raw, err, werr)
		}
		if err == nil && string(got) != prefix+string(want)+"}" {
			t.Fatalf("metadata %q:\n got %s\nwant %s%s}", raw, got, prefix, want)
		}
	})
}

// referenceCanonicalJSON is the first version's canonical metadata, through
// encoding/json.
func referenceCanonicalJSON(raw []byte) ([]byte, error) {
	if len(raw) == 0 {
		return []byte("{}"), nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	var out bytes.Buffer
	var write func(v any)
	write = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			out.WriteByte('{')
			for i, k := range slices.Sorted(maps.Keys(x)) {
				if i > 0 {
					out.WriteByte(',')
				}
				write(k)
				out.WriteByte(':')
				write(x[k])
			}
			out.WriteByte('}')
		case []any:
			out.WriteByte('[')
			for i, y := range x {
				if i > 0 {
					out.WriteByte(',')
				}
				write(y)
			}
			out.WriteByte(']')
		default:
			enc := json.NewEncoder(&out)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(x); err != nil {
				panic(err)
			}
			out.Truncate(out.Len() - 1) // the Encoder's newline
		}
	}
	write(v)
	return out.Bytes(), nil
}
