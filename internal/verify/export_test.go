package verify_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
