package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/api"
	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/pat"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/internal/verify"
	"github.com/auditlog/auditlog/sealer"
)

// sealedAPI is an org with n sealed events and a checkpoint signed at seq
// n, and a function that GETs a path of the API as its owner.
func sealedAPI(t *testing.T, n int) (org string, key ed25519.PrivateKey, get func(path string) ([]byte, http.Header)) {
	t.Helper()
	ctx := context.Background()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org = fixture.Org(t, pool, fixture.OrgOpts{Plan: "team"})
	user, _ := fixture.User(t, pool, fixture.UserOpts{OrgID: org, Role: "owner"})
	token := pat.Generate()
	if _, err := pool.Exec(ctx, "INSERT INTO cloud.pats (user_id, name, token_hash) VALUES ($1, 'test', $2)", user, pat.Hash(token)); err != nil {
		t.Fatal(err)
	}
	key = sealtest.Key(t)
	sealtest.Start(t, url, sealer.Config{Key: key, CheckpointEvery: 50 * time.Millisecond})
	for i := range n {
		fixture.Event(t, pool, fixture.EventOpts{OrgID: org, Action: "auth.signin", Metadata: fmt.Sprintf(`{"method": "sso", "n": %d}`, i)})
	}
	sealtest.WaitSealed(t, pool, org, int64(n))
	sealtest.WaitCheckpoint(t, pool, org, int64(n))
	reader, err := database.Pool(ctx, testdb.Role(t, url, "audit_reader"), api.ConfigurePool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)
	srv := httptest.NewServer(api.New(api.Config{Pool: reader, RateLimit: math.Inf(1)}))
	t.Cleanup(srv.Close)
	return org, key, func(path string) ([]byte, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v: %s", path, resp.StatusCode, err, body)
		}
		return body, resp.Trailer
	}
}

// publicKeyFile writes key's public key to a file, as --key reads it.
func publicKeyFile(t *testing.T, key ed25519.PrivateKey) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "seal-key.pub")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(key.Public().(ed25519.PublicKey))), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// verifyFile runs `auditlog verify FILE args...` on a file holding body.
func verifyFile(t *testing.T, body []byte, args ...string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	e, out := testEnv(t)
	err := run(context.Background(), append([]string{"verify", path}, args...), e.stdout, e.stderr)
	return out.String(), err
}

// `auditlog verify FILE --key KEY` checks an NDJSON export offline: it
// verifies as served, and a changed field, a deleted line, two swapped
// lines and an edited manifest each break it where they are, named. A feed
// saved as NDJSON still verifies with its checkpoints, as with --file.
func TestVerifyAnExportFile(t *testing.T) {
	t.Parallel()
	org, key, get := sealedAPI(t, 4)
	keyPath := publicKeyFile(t, key)
	export, _ := get("/api/orgs/" + org + "/audit?format=ndjson")
	out, err := verifyFile(t, export, "--key", keyPath)
	if err != nil || !strings.Contains(out, "export of org "+org+": verified, 4 rows (4 sealed, 0 not sealed yet), seq 1 to 4") ||
		!strings.Contains(out, "it proves the 4 rows of seq 1 to 4") {
		t.Fatalf("the export as served: %v\n%s", err, out)
	}
	if out, err := verifyFile(t, export); err == nil || !strings.Contains(err.Error(), "--key") {
		t.Errorf("without a key: %v\n%s", err, out)
	}

	// Newest first: line 1 holds seq 4, line 4 seq 1, line 5 the manifest.
	lines := bytes.SplitAfter(export, []byte("\n"))[:5]
	edit := func(i int, old, new string) [][]byte {
		l := slices.Clone(lines)
		if !bytes.Contains(l[i], []byte(old)) {
			t.Fatalf("line %d has no %s: %s", i+1, old, l[i])
		}
		l[i] = bytes.Replace(l[i], []byte(old), []byte(new), 1)
		return l
	}
	for _, c := range []struct {
		name  string
		lines [][]byte
		want  string
	}{
		{"a changed field", edit(1, `"method":"sso"`, `"method":"password"`),
			"BROKEN at line 2, seq 3 (event %s): the event differs from what was sealed"},
		{"a deleted line", slices.Delete(slices.Clone(lines), 1, 2),
			"BROKEN at line 4: the manifest says 4 rows (4 sealed), the file has 3 (3 sealed): lines were removed or added; seqs missing between the file's first and last: 3"},
		{"swapped lines", [][]byte{lines[0], lines[2], lines[1], lines[3], lines[4]},
			"BROKEN at line 3, seq 3 (event %s): out of order"},
		{"the manifest's rows edited", edit(4, `"rows":4`, `"rows":5`),
			"BROKEN at line 5: the manifest says 5 rows (4 sealed), the file has 4 (4 sealed)"},
		{"the manifest's body hash edited", edit(4, `"body_sha256":"`, `"body_sha256":"0`),
			"BROKEN at line 5: the body's SHA-256 is "},
		{"the manifest's checkpoint edited", edit(4, `"seq":4,`, `"seq":3,`),
			"BROKEN at line 5, seq 3: the manifest's checkpoint of org " + org + " at seq 3: bad signature"},
	} {
		want := c.want
		if strings.Contains(want, "%s") {
			want = fmt.Sprintf(want, idOf(t, lines[1]))
		}
		out, err := verifyFile(t, slices.Concat(c.lines...), "--key", keyPath)
		if !errors.Is(err, errBroken) || !strings.Contains(out, want) {
			t.Errorf("%s: %v\n%s\nwant it to say %q", c.name, err, out, want)
		}
	}

	// A saved feed is no export: it verifies against its checkpoints.
	cpPath := filepath.Join(t.TempDir(), "checkpoints.json")
	cps, _ := get("/api/orgs/" + org + "/audit/checkpoints")
	if err := os.WriteFile(cpPath, cps, 0o600); err != nil {
		t.Fatal(err)
	}
	feed, _ := get("/api/orgs/" + org + "/audit/feed?format=ndjson")
	if out, err := verifyFile(t, feed, "--checkpoints", cpPath, "--key", keyPath); err != nil || !strings.Contains(out, "chain verified, seq 1 to 4") {
		t.Errorf("the feed file: %v\n%s", err, out)
	}
	// Its last line cut off: consistent, but shorter than what was signed.
	cut := feed[:bytes.LastIndexByte(feed[:len(feed)-1], '\n')+1]
	if out, err := verifyFile(t, cut, "--checkpoints", cpPath, "--key", keyPath); err != nil ||
		!strings.Contains(out, "chain verified, seq 1 to 3") || !strings.Contains(out, "a checkpoint signed at") ||
		!strings.Contains(out, "holds seq 4, past the file's last (seq 3): the file ends before what was signed") {
		t.Errorf("the feed file cut short: %v\n%s", err, out)
	}

	// A CSV export verifies with its trailer, saved as curl -D saves it.
	csvExport, trailer := get("/api/orgs/" + org + "/audit?format=csv")
	headers := filepath.Join(t.TempDir(), "headers.txt")
	if err := os.WriteFile(headers, []byte("HTTP/1.1 200 OK\r\nTrailer: Audit-Manifest\r\n\r\nAudit-Manifest: "+trailer.Get("Audit-Manifest")+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := verifyFile(t, csvExport, "--manifest", headers, "--key", keyPath); err != nil || !strings.Contains(out, "it proves the 4 rows of seq 1 to 4") {
		t.Errorf("the CSV export: %v\n%s", err, out)
	}
	tampered := bytes.Replace(csvExport, []byte("sso"), []byte("ssO"), 1)
	if out, err := verifyFile(t, tampered, "--manifest", headers, "--key", keyPath); !errors.Is(err, errBroken) || !strings.Contains(out, "the event differs from what was sealed") {
		t.Errorf("the CSV export with a changed cell: %v\n%s", err, out)
	}
	if _, err := verifyFile(t, csvExport, "--key", keyPath); err == nil || !strings.Contains(err.Error(), "--manifest") {
		t.Errorf("a CSV export without its manifest: %v", err)
	}
}

// idOf is the event id of an NDJSON line.
func idOf(t *testing.T, line []byte) string {
	t.Helper()
	var e struct{ ID string }
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatal(err)
	}
	return e.ID
}

// A chain that verifies past its last checkpoint is consistent there, but
// nothing signed ties those seqs: someone who changed an event and
// recomputed every hash after it, and removed the checkpoints after it,
// leaves exactly that. The report names them.
func TestVerifyNamesTheSeqsNoCheckpointCovers(t *testing.T) {
	t.Parallel()
	e, out := testEnv(t)
	res := verify.Result{OrgID: "o1", First: 1, Last: 9, Verified: 9, Checkpoints: 1, CoveredTo: 4}
	if err := printVerify(e, res); err != nil {
		t.Fatal(err)
	}
	if want := "seq 5 to 9 follow the last checkpoint compared (seq 4): nothing signed ties them"; !strings.Contains(out.String(), want) {
		t.Fatalf("report:\n%s\nwant it to say %q", out, want)
	}
	// Links of removed events are the seals' own hashes, not a checkpoint's.
	out.Reset()
	res.Given = 2
	if err := printVerify(e, res); err != nil || !strings.Contains(out.String(), "2 links taken as given, not recomputed") || strings.Contains(out.String(), "taken from signed checkpoints") {
		t.Fatalf("links of removed events:\n%s", out)
	}
	out.Reset()
	res.CoveredTo = 9
	if err := printVerify(e, res); err != nil || strings.Contains(out.String(), "nothing signed") {
		t.Fatalf("a chain covered to its end: %v\n%s", err, out)
	}
}

// Both exports carry each event's sentence and verify offline with it: the
// seal's hash covers the event, not its sentence, which the catalog writes;
// the manifest's body SHA-256 covers every byte, so an edited sentence
// breaks the file at the manifest.
func TestVerifyAnExportWithItsSentences(t *testing.T) {
	t.Parallel()
	org, key, get := sealedAPI(t, 2)
	keyPath := publicKeyFile(t, key)
	const sentence = "System signed in with sso"
	ndjson, _ := get("/api/orgs/" + org + "/audit?format=ndjson")
	csvExport, trailer := get("/api/orgs/" + org + "/audit?format=csv")
	headers := filepath.Join(t.TempDir(), "headers.txt")
	if err := os.WriteFile(headers, []byte("Audit-Manifest: "+trailer.Get("Audit-Manifest")+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		body   []byte
		column string
		args   []string
	}{
		{"NDJSON", ndjson, `"sentence":"` + sentence + `"`, []string{"--key", keyPath}},
		{"CSV", csvExport, ",sentence,seq,hash,prev_hash\r\n", []string{"--manifest", headers, "--key", keyPath}},
	} {
		if bytes.Count(c.body, []byte(sentence)) != 2 || !bytes.Contains(c.body, []byte(c.column)) {
			t.Fatalf("%s: no sentence column, or not two sentences:\n%s", c.name, c.body)
		}
		if out, err := verifyFile(t, c.body, c.args...); err != nil || !strings.Contains(out, "verified, 2 rows (2 sealed") ||
			!strings.Contains(out, "it proves the 2 rows of seq 1 to 2") {
			t.Errorf("%s as served: %v\n%s", c.name, err, out)
		}
		edited := bytes.Replace(c.body, []byte(sentence), []byte("System signed in with a password"), 1)
		if out, err := verifyFile(t, edited, c.args...); !errors.Is(err, errBroken) || !strings.Contains(out, "the body's SHA-256 is ") {
			t.Errorf("%s with an edited sentence: %v\n%s", c.name, err, out)
		}
	}
}

// verify --org where an attacker removed evidence as a superuser: seals,
// heads or checkpoints. A chain with links missing is not "ok" while the
// org's events are stored: it exits 1 where what is left contradicts itself
// or the sealer has read past events that have no seal, and 3 where the
// evidence is missing and the sealer is not there to say it should exist
// (stopped, or behind), naming what it found either way.
func TestVerifyOrgFindsMissingEvidence(t *testing.T) {
	t.Parallel()
	deleteEvidence := func(t *testing.T, pool *pgxpool.Pool, org string) {
		for _, table := range []string{"seals", "seal_heads", "checkpoints"} {
			sealtest.Tamper(t, pool, "DELETE FROM audit."+table+" WHERE org_id = $1", org)
		}
	}
	// truncate cuts the chain after seq 3 and rewinds the head there.
	truncate := func(t *testing.T, pool *pgxpool.Pool, org string) {
		sealtest.Tamper(t, pool, "DELETE FROM audit.seals WHERE org_id = $1 AND seq > 3", org)
		sealtest.Tamper(t, pool, "UPDATE audit.seal_heads h SET seq = 3, hash = s.hash FROM audit.seals s WHERE h.org_id = $1 AND s.org_id = h.org_id AND s.seq = 3", org)
	}
	for _, c := range []struct {
		name string
		// tamper changes the stored log of org, whose 5 events are sealed
		// and signed at seq 5.
		tamper func(t *testing.T, pool *pgxpool.Pool, org string)
		// sealer: whether a sealer runs while verify does.
		sealer   bool
		wantExit int
		want     []string
	}{
		{
			name: "every seal, head and checkpoint deleted", sealer: true,
			tamper:   deleteEvidence,
			wantExit: 1, want: []string{"BROKEN: 5 stored events have no seal, though the sealer has read past their commits", "oldest occurred at"},
		},
		{
			name:     "every seal, head and checkpoint deleted, no sealer running",
			tamper:   deleteEvidence,
			wantExit: 3, want: []string{"NOT VERIFIED: 5 stored events have no seal", "the sealer has not read past their commits within 1s", "behind or not running", "or their seals were removed"},
		},
		{
			name: "every seal deleted, the head and checkpoints kept", sealer: true,
			tamper: func(t *testing.T, pool *pgxpool.Pool, org string) {
				sealtest.Tamper(t, pool, "DELETE FROM audit.seals WHERE org_id = $1", org)
			},
			wantExit: 1, want: []string{"chain BROKEN at seq 1: seals 1 to 5 are missing", "5 stored events have no seal"},
		},
		{
			name: "every checkpoint deleted, the seals kept, long sealed",
			tamper: func(t *testing.T, pool *pgxpool.Pool, org string) {
				sealtest.Tamper(t, pool, "DELETE FROM audit.checkpoints WHERE org_id = $1", org)
				sealtest.Tamper(t, pool, "UPDATE audit.seals SET sealed_at = sealed_at - interval '10 minutes' WHERE org_id = $1", org)
			},
			wantExit: 3, want: []string{"NOT VERIFIED: seq 1 to 5 were sealed more than 5 minutes ago", "no signed checkpoint holds them"},
		},
		{
			name:     "the newest seals deleted, the head rewound, the checkpoint kept",
			tamper:   truncate,
			wantExit: 1, want: []string{"chain BROKEN at seq 4: seals 4 to 5 are missing: the chain ends at seq 3, but a checkpoint signed at"},
		},
		{
			name: "the newest seals deleted, the head kept",
			tamper: func(t *testing.T, pool *pgxpool.Pool, org string) {
				sealtest.Tamper(t, pool, "DELETE FROM audit.seals WHERE org_id = $1 AND seq > 3", org)
				sealtest.Tamper(t, pool, "DELETE FROM audit.checkpoints WHERE org_id = $1", org)
			},
			wantExit: 1, want: []string{"chain BROKEN at seq 4: seals 4 to 5 are missing: the chain ends at seq 3, but the org's head (audit.seal_heads) is seq 5"},
		},
		{
			name: "the newest seals, the head and the checkpoints deleted", sealer: true,
			tamper: func(t *testing.T, pool *pgxpool.Pool, org string) {
				truncate(t, pool, org)
				sealtest.Tamper(t, pool, "DELETE FROM audit.checkpoints WHERE org_id = $1", org)
			},
			wantExit: 1, want: []string{"BROKEN: 2 stored events have no seal, though the sealer has read past their commits"},
		},
		{
			name: "the seals of the first events deleted", sealer: true,
			tamper: func(t *testing.T, pool *pgxpool.Pool, org string) {
				sealtest.Tamper(t, pool, "DELETE FROM audit.seals WHERE org_id = $1 AND seq <= 2", org)
			},
			wantExit: 1, want: []string{"chain BROKEN at seq 3", "the chain starts at seq 3, and no signed removal checkpoint holds seq 2", "2 stored events have no seal"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			url := testdb.New(t)
			pool := testdb.Pool(t, url)
			org := fixture.Org(t, pool, fixture.OrgOpts{})
			key := sealtest.Key(t)
			cfg := sealer.Config{Key: key, CheckpointEvery: 50 * time.Millisecond}
			stop := sealtest.Start(t, url, cfg)
			for range 5 {
				fixture.Event(t, pool, fixture.EventOpts{OrgID: org, Action: "auth.signin"})
			}
			sealtest.WaitSealed(t, pool, org, 5)
			sealtest.WaitCheckpoint(t, pool, org, 5)
			stop()
			c.tamper(t, pool, org)
			// A running sealer reads past them within seconds, but allow a
			// loaded machine a minute; a stopped one never does.
			wait := "1s"
			if c.sealer {
				sealtest.Start(t, url, cfg)
				wait = "1m"
			}
			e, out := testEnv(t)
			err := run(context.Background(), []string{"verify", "--org", org, "--wait", wait, "--database-url", testdb.Role(t, url, "audit_reader")}, e.stdout, e.stderr)
			if got := exitCode(err, io.Discard); got != c.wantExit {
				t.Errorf("exit status %d (%v), want %d", got, err, c.wantExit)
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("verify printed:\n%s\nwant it to say %q", out, w)
				}
			}
		})
	}
}

// Events committed while the sealer is stopped have no seal yet: verify
// waits for the sealer to read past them, finds their seals, and the chain
// verifies (exit status 0), as when a sealer catches up after a restart.
func TestVerifyOrgWaitsForTheSealer(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	cfg := sealer.Config{Key: sealtest.Key(t), CheckpointEvery: 50 * time.Millisecond}
	sealtest.Start(t, url, cfg)()
	for range 3 {
		fixture.Event(t, pool, fixture.EventOpts{OrgID: org, Action: "auth.signin"})
	}
	reader := testdb.Role(t, url, "audit_reader")
	e, out := testEnv(t)
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{"verify", "--org", org, "--wait", "1m", "--database-url", reader}, e.stdout, e.stderr)
	}()
	time.Sleep(time.Second) // verify has found the events without a seal, and waits
	sealtest.Start(t, url, cfg)
	if err := <-done; err != nil || !strings.Contains(out.String(), "chain verified, seq 1 to 3") {
		t.Fatalf("verify while the sealer catches up: %v\n%s", err, out)
	}
}
