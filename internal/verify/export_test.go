package verify_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/verify"
)

const exportOrg = "0b0e8a52-4c1e-4f7a-9d53-1f2b3c4d5e6f"

// exportRows are n sealed events of exportOrg, seq 1 to n, as an NDJSON
// export lists them (newest first), with a checkpoint signed by key at seq n.
func exportRows(t *testing.T, key ed25519.PrivateKey, n int) ([]store.ListedEvent, store.Checkpoint) {
	t.Helper()
	var rows []store.ListedEvent
	prev := chain.Genesis
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i := 1; i <= n; i++ {
		e := store.Event{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), OrgID: exportOrg, OccurredAt: at.Add(time.Duration(i) * time.Second),
			Action: "auth.signin", TargetType: "user", ActorType: "user", Metadata: json.RawMessage(`{"method": "sso"}`)}
		canonical, err := chain.Canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		seq, h, p := int64(i), chain.Next(prev, int64(i), canonical), prev.String()
		hs := h.String()
		rows = append([]store.ListedEvent{{Event: e, Seq: &seq, Hash: &hs, PrevHash: &p}}, rows...)
		prev = h
	}
	c := chain.Checkpoint{Kind: "day", OrgID: exportOrg, Seq: int64(n), Hash: prev, SignedAt: at.Add(time.Hour)}
	c.Sign(key)
	return rows, store.Checkpoint{Kind: c.Kind, OrgID: c.OrgID, Seq: c.Seq, Hash: c.Hash.String(), SignedAt: c.SignedAt,
		KeyID: c.KeyID, Signature: hex.EncodeToString(c.Signature)}
}

// ndjsonExport writes body lines and a manifest that matches them, as
// someone rewriting the file would (the manifest is not signed).
func ndjsonExport(t *testing.T, lines [][]byte, cp store.Checkpoint) []byte {
	t.Helper()
	body := bytes.Join(lines, []byte("\n"))
	body = append(body, '\n')
	m := store.Manifest{OrgID: exportOrg, Rows: int64(len(lines)), Sealed: int64(len(lines)), FirstSeq: 1, LastSeq: int64(len(lines)), Checkpoint: &cp}
	var head struct{ Hash string }
	if err := json.Unmarshal(lines[0], &head); err != nil {
		t.Fatal(err)
	}
	m.HeadHash = head.Hash
	sum := sha256.Sum256(body)
	m.BodySHA256 = hex.EncodeToString(sum[:])
	b, err := json.Marshal(map[string]store.Manifest{"manifest": m})
	if err != nil {
		t.Fatal(err)
	}
	return append(body, append(b, '\n')...)
}

func marshalRows(t *testing.T, rows []store.ListedEvent) [][]byte {
	t.Helper()
	var lines [][]byte
	for _, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, b)
	}
	return lines
}

func verifyExport(t *testing.T, file []byte, key ed25519.PrivateKey) verify.ExportResult {
	t.Helper()
	pub := key.Public().(ed25519.PublicKey)
	res, err := verify.ExportFile(bytes.NewReader(file), map[string]ed25519.PublicKey{chain.KeyID(pub): pub})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A row whose prev_hash was taken out is not recomputed: with its event
// changed and the manifest rewritten, it must not pass as proved by the
// checkpoint (its hash, kept, still links to the row after it).
func TestExportRowWithoutPrevHashIsNotProved(t *testing.T) {
	t.Parallel()
	key := sealtest.Key(t)
	rows, cp := exportRows(t, key, 4)
	if res := verifyExport(t, ndjsonExport(t, marshalRows(t, rows), cp), key); res.Break != nil || res.Tied != 4 {
		t.Fatalf("the export as made: %+v, break %v", res, res.Break)
	}
	rows[1].PrevHash = nil // seq 3
	rows[1].Metadata = json.RawMessage(`{"method": "password"}`)
	res := verifyExport(t, ndjsonExport(t, marshalRows(t, rows), cp), key)
	if res.Break == nil && res.Tied > 1 {
		t.Fatalf("a changed row without its prev_hash passes as proved: %+v", res)
	}
	if res.Break == nil || res.Break.Seq != 3 {
		t.Errorf("want a break at seq 3, got %+v (break %v)", res, res.Break)
	}
}

// A line that holds a field twice, or in another case ("Action" beside
// "action"), reads one way to verify (encoding/json takes the last,
// matching keys in any case) and another way to other tools: a tampered
// value beside the sealed one would pass. Such lines are refused.
func TestExportRefusesAmbiguousKeys(t *testing.T) {
	t.Parallel()
	key := sealtest.Key(t)
	rows, cp := exportRows(t, key, 3)
	for _, c := range []struct{ name, old, new string }{
		{"a key in another case", `"action":"auth.signin"`, `"action":"auth.signout","Action":"auth.signin"`},
		{"a key twice", `"action":"auth.signin"`, `"action":"auth.signout","action":"auth.signin"`},
		{"a metadata key twice", `"metadata":{"method":"sso"}`, `"metadata":{"method":"password","method":"sso"}`},
	} {
		lines := marshalRows(t, rows)
		if !bytes.Contains(lines[1], []byte(c.old)) {
			t.Fatalf("%s: no %s in %s", c.name, c.old, lines[1])
		}
		lines[1] = bytes.Replace(lines[1], []byte(c.old), []byte(c.new), 1)
		res := verifyExport(t, ndjsonExport(t, lines, cp), key)
		if res.Break == nil || res.Line != 2 || !strings.Contains(res.Break.Reason, "tools differ") {
			t.Errorf("%s: %+v (break %v)", c.name, res, res.Break)
		}
		// The same line in a saved feed (oldest first).
		feed := bytes.Join([][]byte{lines[2], lines[1], lines[0]}, []byte("\n"))
		fres, err := verify.File(bytes.NewReader(feed), nil, nil, false)
		if err != nil || fres.Break == nil || !strings.Contains(fres.Break.Reason, "line 2: ") {
			t.Errorf("%s in a feed file: %v, %+v (break %v)", c.name, err, fres, fres.Break)
		}
	}
}

// A CSV header naming a column twice: this verifier read the last, a
// spreadsheet shows the first; refused.
func TestCSVExportRefusesAColumnTwice(t *testing.T) {
	t.Parallel()
	key := sealtest.Key(t)
	rows, cp := exportRows(t, key, 1)
	e := rows[0]
	header := "id,org_id,occurred_at,action,target_type,target_id,actor_type,actor_id,actor_email,ip,user_agent,request_id,metadata,seq,hash,prev_hash,action\r\n"
	row := fmt.Sprintf("%s,%s,%s,auth.signout,user,,user,,,,,,\"{\"\"method\"\": \"\"sso\"\"}\",1,%s,%s,auth.signin\r\n",
		e.ID, e.OrgID, e.OccurredAt.Format(time.RFC3339Nano), *e.Hash, *e.PrevHash)
	body := []byte(header + row)
	sum := sha256.Sum256(body)
	m := store.Manifest{OrgID: exportOrg, Rows: 1, Sealed: 1, FirstSeq: 1, LastSeq: 1, HeadHash: *e.Hash, BodySHA256: hex.EncodeToString(sum[:]), Checkpoint: &cp}
	pub := key.Public().(ed25519.PublicKey)
	res, err := verify.ExportCSVFile(bytes.NewReader(body), &m, map[string]ed25519.PublicKey{chain.KeyID(pub): pub})
	if err == nil && res.Break == nil {
		t.Fatalf("a header with action twice verifies: %+v", res)
	}
	// A metadata cell with a key twice.
	body = []byte(strings.Replace(header, ",action\r\n", ",other\r\n", 1) +
		strings.Replace(strings.Replace(row, "auth.signout", "auth.signin", 1), `""method"": ""sso""`, `""method"": ""password"", ""method"": ""sso""`, 1))
	sum = sha256.Sum256(body)
	m.BodySHA256 = hex.EncodeToString(sum[:])
	res, err = verify.ExportCSVFile(bytes.NewReader(body), &m, map[string]ed25519.PublicKey{chain.KeyID(pub): pub})
	if err != nil || res.Break == nil || !strings.Contains(res.Break.Reason, "tools differ") {
		t.Errorf("metadata with a key twice: %v, %+v (break %v)", err, res, res.Break)
	}
}
