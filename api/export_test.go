package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/verify"
	"github.com/auditlog/auditlog/sealer"
)

// sealedExport is an org with three sealed events, a signed checkpoint at
// seq 3, and a fourth event recorded once the sealer stopped, so never
// sealed. It returns the seals by event id.
func sealedExport(t *testing.T, b *testBundle, org string) map[string][2]string {
	t.Helper()
	ctx := context.Background()
	stop := sealtest.Start(t, b.url, sealer.Config{CheckpointEvery: 50 * time.Millisecond})
	for range 3 {
		fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Metadata: `{"b": [1.50, "x"], "a": {"z": null}}`})
	}
	sealtest.WaitSealed(t, b.admin, org, 3)
	sealtest.WaitCheckpoint(t, b.admin, org, 3)
	stop()
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org})
	seals := map[string][2]string{}
	rows, err := b.admin.Query(ctx, "SELECT event_id::text, seq::text, encode(hash, 'hex') FROM audit.seals WHERE org_id = $1", org)
	if err != nil {
		t.Fatal(err)
	}
	var id, seq, hash string
	for rows.Next() {
		if err := rows.Scan(&id, &seq, &hash); err != nil {
			t.Fatal(err)
		}
		seals[id] = [2]string{seq, hash}
	}
	if err := rows.Err(); err != nil || len(seals) != 3 {
		t.Fatalf("%d seals: %v", len(seals), err)
	}
	return seals
}

// checkManifest checks an export's manifest against the body it ends and
// the seals: three of four rows sealed, seq 1 to 3, the head's hash, and
// the checkpoint at seq 3, signed.
func checkManifest(t *testing.T, m store.Manifest, org string, body []byte, seals map[string][2]string) {
	t.Helper()
	head := ""
	for _, s := range seals {
		if s[0] == "3" {
			head = s[1]
		}
	}
	sum := sha256.Sum256(body)
	if m.OrgID != org || m.Rows != 4 || m.Sealed != 3 || m.FirstSeq != 1 || m.LastSeq != 3 || m.HeadHash != head ||
		m.BodySHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("manifest %+v, want org %s, 4 rows, 3 sealed, seq 1 to 3, head %s, body SHA-256 %x", m, org, head, sum)
	}
	if c := m.Checkpoint; c == nil || c.Seq != 3 || c.Hash != head || c.OrgID != org || len(c.Signature) != 128 {
		t.Errorf("checkpoint %+v, want the one signed at seq 3", c)
	}
}

// Both exports carry each event's seq, hash and previous hash (empty or
// null for the event not sealed yet), each row's hash recomputes from its
// previous hash, and the export ends with its manifest: a last NDJSON
// line, a CSV trailer.
func TestExportsCarryTheProof(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	seals := sealedExport(t, b, org)

	resp, body := b.get(t, "/api/orgs/"+org+"/audit?format=ndjson", token)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	lines := bytes.SplitAfter(body, []byte("\n"))
	if len(lines) != 6 || len(lines[5]) != 0 {
		t.Fatalf("%d lines, want 4 events and the manifest:\n%s", len(lines)-1, body)
	}
	unsealed := 0
	for i, line := range lines[:4] {
		var e store.ExportedEvent
		if err := decodeJSON(line, &e); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if e.Sentence != "System signed out" {
			t.Errorf("line %d reads %q", i+1, e.Sentence)
		}
		want, ok := seals[e.ID]
		if !ok {
			unsealed++
			if e.Seq != nil || e.Hash != nil || e.PrevHash != nil || !bytes.Contains(line, []byte(`"seq":null,"hash":null,"prev_hash":null`)) {
				t.Errorf("line %d, not sealed: %s", i+1, line)
			}
			continue
		}
		if e.Seq == nil || e.Hash == nil || e.PrevHash == nil || strconv.FormatInt(*e.Seq, 10) != want[0] || *e.Hash != want[1] {
			t.Fatalf("line %d: seal %v %v, want %v", i+1, e.Seq, e.Hash, want)
		}
		prev, _ := hex.DecodeString(*e.PrevHash)
		p, err := chain.ParseHash(prev)
		if err != nil {
			t.Fatal(err)
		}
		canonical, err := chain.Canonical(e.Event)
		if err != nil {
			t.Fatal(err)
		}
		if got := chain.Next(p, *e.Seq, canonical).String(); got != *e.Hash {
			t.Errorf("line %d: hash %s recomputes as %s from prev_hash", i+1, *e.Hash, got)
		}
	}
	if unsealed != 1 {
		t.Errorf("%d unsealed lines, want 1", unsealed)
	}
	var last struct{ Manifest store.Manifest }
	if err := decodeJSON(lines[4], &last); err != nil {
		t.Fatalf("last line %s: %v", lines[4], err)
	}
	checkManifest(t, last.Manifest, org, slices.Concat(lines[:4]...), seals)

	resp, body = b.get(t, "/api/orgs/"+org+"/audit?format=csv", token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(rows) != 5 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	n := len(rows[0])
	for _, row := range rows[1:] {
		want, ok := seals[row[0]]
		got := [3]string{row[n-3], row[n-2], row[n-1]}
		if !ok && got != [3]string{} || ok && (got[0] != want[0] || got[1] != want[1] || len(got[2]) != 64) {
			t.Errorf("event %s: seal cells %q, want %v", row[0], got, want)
		}
	}
	var m store.Manifest
	if err := decodeJSON([]byte(resp.Trailer.Get("Audit-Manifest")), &m); err != nil {
		t.Fatalf("trailer %q: %v", resp.Trailer.Get("Audit-Manifest"), err)
	}
	checkManifest(t, m, org, body, seals)
}

// The CSV export verifies offline with its trailer: cells a spreadsheet
// would run (neutralised), a value that began with ' before one (read
// back as it was), an empty target (a quoted empty cell) and none, cells
// with quotes and line breaks; a changed cell breaks its row.
func TestCSVExportVerifiesOffline(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	key := sealtest.Key(t)
	sealtest.Start(t, b.url, sealer.Config{Key: key, CheckpointEvery: 50 * time.Millisecond})
	for _, target := range []any{"'=already quoted", "=SUM(2)", "", nil} {
		if _, err := b.admin.Exec(context.Background(), "SELECT audit.log_event($1, 'cluster.token_rotated', $2)", org, target); err != nil {
			t.Fatal(err)
		}
	}
	// Cells RFC 4180 quotes: commas, quotes, line breaks (CRLF too), unicode.
	_, err := b.admin.Exec(context.Background(), "SELECT audit.log_event($1, 'cluster.token_rotated', $2, $3::jsonb)",
		org, "a, \"b\"\r\nc", `{"x": "y,\"z\"\nw", "n": [1.50, "Zürich 東京"]}`)
	if err != nil {
		t.Fatal(err)
	}
	sealtest.WaitSealed(t, b.admin, org, 5)
	sealtest.WaitCheckpoint(t, b.admin, org, 5)
	pub := key.Public().(ed25519.PublicKey)
	keys := map[string]ed25519.PublicKey{chain.KeyID(pub): pub}
	// The Activity page's Export asks for a byte-order mark, which the
	// manifest's body hash leaves out.
	resp, withBOM := b.get(t, "/api/orgs/"+org+"/audit?format=csv&bom=1", token)
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(withBOM, []byte("\ufeff")) {
		t.Fatalf("bom=1: %d %q", resp.StatusCode, withBOM[:min(len(withBOM), 16)])
	}
	m, err := verify.ParseManifest([]byte("HTTP/1.1 200 OK\r\nAudit-Manifest: " + resp.Trailer.Get("Audit-Manifest") + "\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := verify.ExportCSVFile(bytes.NewReader(withBOM), m, keys); err != nil || res.Break != nil || res.Recomputed != 5 {
		t.Fatalf("the export with a byte-order mark: %+v %v, %v", res, res.Break, err)
	}
	resp, body := b.get(t, "/api/orgs/"+org+"/audit?format=csv", token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if m, err = verify.ParseManifest([]byte("HTTP/1.1 200 OK\r\nAudit-Manifest: " + resp.Trailer.Get("Audit-Manifest") + "\r\n")); err != nil {
		t.Fatal(err)
	}
	res, err := verify.ExportCSVFile(bytes.NewReader(body), m, keys)
	if err != nil || res.Break != nil || res.Recomputed != 5 || !res.CheckpointInFile || res.Tied != 5 {
		t.Fatalf("the export as served: %+v %v, %v\n%s", res, res.Break, err, body)
	}
	for _, c := range []struct{ name, old, new string }{
		{"a neutralised cell changed", "'=SUM(2)", "'=SUM(3)"},
		{"a quoted empty cell made null", `,"",`, ",,"},
	} {
		tampered := bytes.Replace(body, []byte(c.old), []byte(c.new), 1)
		if bytes.Equal(tampered, body) {
			t.Fatalf("%s: no %s in the export", c.name, c.old)
		}
		res, err := verify.ExportCSVFile(bytes.NewReader(tampered), m, keys)
		if err != nil || res.Break == nil || res.Line < 2 || !strings.Contains(res.Break.Reason, "differs from what was sealed") {
			t.Errorf("%s: %+v %v, %v", c.name, res, res.Break, err)
		}
	}
}

// The NDJSON export shares the CSV export's limits, and streams as it does:
// an org running one of each has no slot left for a third of either, and
// clients that hang up stop their queries.
func TestNDJSONExportSharesTheLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{ExportFloorWindow: time.Minute})
	org, token := b.owner(t, "enterprise")
	b.manyEvents(t, org, 100_000)
	conns := []io.Closer{b.startExport(t, org, token, "csv"), b.startExport(t, org, token, "ndjson")} // and never read
	resp, body := b.get(t, "/api/orgs/"+org+"/audit?format=ndjson", token)
	wantProblem(t, resp, body, http.StatusTooManyRequests)
	for _, c := range conns {
		c.Close()
	}
	b.waitNoExport(t, "their clients hung up")
}
