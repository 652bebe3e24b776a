package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/delivery"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/sealer"
)

// asAuditlog, set in its environment, makes the test binary run as
// auditlog itself (TestMain), so that a test can run a command as a process
// of its own and kill it.
const asAuditlog = "AUDITLOG_TEST_AS_AUDITLOG"

// holdingReceiver is a webhook receiver that stores each batch whose
// signature is right, answering 200, except the request numbered holdAt:
// that one it stores and never answers (the answer is lost), handing its
// seqs to held.
type holdingReceiver struct {
	secret string
	held   chan []int64

	mu       sync.Mutex
	received []int64
	requests int
	holdAt   int
}

func (rc *holdingReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var b struct{ Events []struct{ Seq int64 } }
	if !delivery.Verify(rc.secret, r.Header.Get(delivery.HeaderTimestamp), r.Header.Get(delivery.HeaderSignature), body, time.Now(), 5*time.Minute) ||
		json.Unmarshal(body, &b) != nil {
		http.Error(w, "bad batch", http.StatusBadRequest)
		return
	}
	var seqs []int64
	for _, e := range b.Events {
		seqs = append(seqs, e.Seq)
	}
	rc.mu.Lock()
	rc.received = append(rc.received, seqs...)
	rc.requests++
	hold := rc.requests == rc.holdAt
	rc.mu.Unlock()
	if hold {
		rc.held <- seqs
		<-r.Context().Done() // the worker's process is gone
	}
}

// TestDeliverKilledMidBatchLeavesNoGap: `auditlog deliver`, a process of
// its own, is killed with SIGKILL while a batch's request is in flight,
// three times, and started again: the receiver gets every matching seq, in
// order, and twice only the seqs of the batches in flight when it was
// killed (their answer never came).
func TestDeliverKilledMidBatchLeavesNoGap(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "SELECT audit.premake_leaves(1)"); err != nil {
		t.Fatal(err)
	}
	sealtest.Start(t, url, sealer.Config{})
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	dir := t.TempDir()
	keyPath := registeredKey(t, pool, dir)
	rc := &holdingReceiver{held: make(chan []int64)}
	srv := httptest.NewTLSServer(rc)
	defer srv.Close()
	// The worker's process trusts the receiver's certificate as a system
	// one: it has no option to trust another.
	certFile := filepath.Join(dir, "receiver.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"subscriptions", "add", "--org", org, "--database-url", url, "--name", "siem", "--url", srv.URL + "/hook",
		"--action", "cluster.*", "--delivery-allow", "127.0.0.1"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	rc.secret = regexp.MustCompile(`whsec_[A-Za-z0-9_-]+`).FindString(errOut.String())
	id := strings.TrimSpace(out.String())
	var from int64
	if err := pool.QueryRow(ctx, "SELECT position FROM audit.subscriptions WHERE id = $1", id).Scan(&from); err != nil {
		t.Fatal(err)
	}
	actions := []auditlog.Action{auditlog.ClusterCreated, auditlog.AuthSignout, auditlog.ClusterDeleted}
	const events = 1200
	for i := range events {
		if _, err := auditlog.Log(ctx, pool, auditlog.Event{OrgID: org, Action: actions[i%len(actions)], TargetID: fmt.Sprint(i),
			Metadata: map[string]string{"name": "c"}}); err != nil {
			t.Fatal(err)
		}
	}
	sealtest.WaitSealed(t, pool, org, events+1)
	rows, _ := pool.Query(ctx, "SELECT seq FROM audit.sealed_events WHERE org_id = $1 AND seq > $2 AND action LIKE 'cluster.%' ORDER BY seq", org, from)
	want, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}

	deliverURL := testdb.Role(t, url, "audit_deliverer")
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "deliver", "--database-url", deliverURL, "--delivery-key", keyPath, "--delivery-allow", "127.0.0.1")
		cmd.Env = append(os.Environ(), asAuditlog+"=1", "SSL_CERT_FILE="+certFile)
		cmd.Stderr = t.Output()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	var inFlight [][]int64
	for range 3 {
		// Hold the second request of the process: the first is the batch
		// the killed one left in flight.
		rc.mu.Lock()
		rc.holdAt = rc.requests + 2
		rc.mu.Unlock()
		cmd := start()
		select {
		case seqs := <-rc.held:
			inFlight = append(inFlight, seqs)
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("no request held in a minute")
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		var p int64
		pool.QueryRow(ctx, "SELECT position FROM audit.subscriptions WHERE id = $1", id).Scan(&p)
		if held := inFlight[len(inFlight)-1]; p >= held[0] {
			t.Fatalf("position %d past the batch in flight (from seq %d)", p, held[0])
		}
	}
	cmd := start()
	sealtest.WaitFor(t, pool, "every event delivered", func(ctx context.Context) (bool, error) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return len(rc.received) > 0 && rc.received[len(rc.received)-1] == want[len(want)-1], nil
	})
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("auditlog deliver, interrupted: %v", err)
	}

	// What came is the matching seqs in order, each batch in flight once
	// more right after itself.
	var expected []int64
	for _, seq := range want {
		expected = append(expected, seq)
		for _, held := range inFlight {
			if seq == held[len(held)-1] {
				expected = append(expected, held...)
			}
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !slices.Equal(rc.received, expected) {
		t.Errorf("received %d seqs, want %d (%d matching, batches in flight %v):\n%v", len(rc.received), len(expected), len(want), inFlight, rc.received)
	}
}

// registeredKey makes a delivery key in dir, registered in the database as
// the worker registers its own, and returns its file.
func registeredKey(t *testing.T, pool *pgxpool.Pool, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "delivery-key.pem")
	key, err := delivery.LoadOrCreateKey(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(context.Background(), "SELECT audit.register_delivery_key($1, $2)", delivery.KeyID(key.PublicKey()), key.PublicKey().Bytes()); err != nil {
		t.Fatal(err)
	}
	return path
}
