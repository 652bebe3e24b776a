package delivery_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/delivery"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/sealer"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// env is a database with a sealer running, the worker's key registered,
// and a control-plane pool (a role holding audit_writer).
type env struct {
	url     string
	admin   *pgxpool.Pool
	control *pgxpool.Pool
	key     *ecdh.PrivateKey
}

func newEnv(t *testing.T) env {
	t.Helper()
	url := testdb.New(t)
	admin := testdb.Pool(t, url)
	if _, err := admin.Exec(context.Background(), "SELECT audit.premake_leaves(1)"); err != nil {
		t.Fatal(err)
	}
	sealtest.Start(t, url, sealer.Config{})
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.PublicKey()
	if _, err := admin.Exec(context.Background(), "SELECT audit.register_delivery_key($1, $2)", delivery.KeyID(pub), pub.Bytes()); err != nil {
		t.Fatal(err)
	}
	return env{url: url, admin: admin, control: testdb.Pool(t, testdb.Role(t, url, "audit_writer")), key: key}
}

// receiver is a local HTTPS receiver that records what it is sent.
type receiver struct {
	srv    *httptest.Server
	secret string
	// respond, if set, answers a request instead of 200.
	respond func(w http.ResponseWriter, r *http.Request) bool

	mu       sync.Mutex
	batches  []batch
	requests int
}

type batch struct {
	at       time.Time
	signedOK bool
	Events   []struct {
		Seq    int64  `json:"seq"`
		Hash   string `json:"hash"`
		ID     string `json:"id"`
		Action string `json:"action"`
	} `json:"events"`
}

func newReceiver(t *testing.T, respond func(w http.ResponseWriter, r *http.Request) bool) *receiver {
	rc := &receiver{respond: respond}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.requests++
	rc.mu.Unlock()
	if rc.respond != nil && rc.respond(w, r) {
		return
	}
	body, _ := io.ReadAll(r.Body)
	var b batch
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.at = time.Now()
	b.signedOK = delivery.Verify(rc.secret, r.Header.Get(delivery.HeaderTimestamp), r.Header.Get(delivery.HeaderSignature), body, time.Now(), 5*time.Minute)
	rc.mu.Lock()
	rc.batches = append(rc.batches, b)
	rc.mu.Unlock()
}

// seqs are the seqs received, in the order received, and whether every
// batch was signed right.
func (rc *receiver) seqs() ([]int64, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var s []int64
	ok := true
	for _, b := range rc.batches {
		ok = ok && b.signedOK
		for _, e := range b.Events {
			s = append(s, e.Seq)
		}
	}
	return s, ok
}

// guard allows the local receivers and trusts their certificates.
func guard(rcs ...*receiver) delivery.Guard {
	g := delivery.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		RootCAs: x509.NewCertPool()}
	for _, rc := range rcs {
		g.RootCAs.AddCert(rc.srv.Certificate())
	}
	return g
}

// subscribe makes a webhook subscription of org to rc.
func (e env) subscribe(t *testing.T, org, name string, rule delivery.Rule, rc *receiver) string {
	t.Helper()
	id, d, err := delivery.Subscribe(context.Background(), e.control, guard(rc), delivery.Subscription{
		OrgID: org, Name: name, Kind: delivery.KindWebhook, Rule: rule, Destination: delivery.Destination{URL: rc.srv.URL + "/hook"},
	})
	if err != nil {
		t.Fatal(err)
	}
	rc.secret = d.Secret
	return id
}

// start runs a worker as a role holding audit_deliverer until the test
// ends, or until stop is called; its warnings go to the test's output
// unless cfg has a logger.
func (e env) start(t *testing.T, cfg delivery.Config) (stop func()) {
	t.Helper()
	cfg.DatabaseURL = testdb.Role(t, e.url, "audit_deliverer")
	cfg.Key = e.key
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if cfg.Poll == 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- delivery.Run(ctx, cfg) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("delivery: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storeEvent is an event with what a rule looks at.
func storeEvent(action, targetType string, email *string) store.Event {
	return store.Event{Action: action, TargetType: targetType, ActorEmail: email}
}

// position is subscription id's position: where a new one starts, after
// the org's newest sealed event (its own audit_stream.created comes after).
func (e env) position(t *testing.T, id string) int64 {
	t.Helper()
	var p int64
	if err := e.admin.QueryRow(context.Background(), "SELECT position FROM audit.subscriptions WHERE id = $1", id).Scan(&p); err != nil {
		t.Fatal(err)
	}
	return p
}
