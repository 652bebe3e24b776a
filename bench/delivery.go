package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/delivery"
)

// deliveryRate is the events per second the delivery benchmark records.
const deliveryRate = 500

// benchDelivery measures the latency from a writer's COMMIT returning to a
// webhook receiver on this machine getting the event, at 500 events/s with
// one subscription, the sealer and the delivery worker running in this
// process with their defaults; the baseline is the same events' commit to
// sealed lag, which delivery waits for.
func benchDelivery(ctx context.Context, b *bench) ([]row, error) {
	url, conn, err := b.freshConn(ctx, "auditlog_bench_delivery")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	org, s, err := sealedOrg(ctx, b, url, conn)
	if err != nil {
		return nil, err
	}
	if err := s.start(ctx, conn); err != nil {
		return nil, err
	}
	defer s.stop()

	rc := &timingReceiver{at: map[string]time.Time{}}
	srv := httptest.NewTLSServer(rc)
	defer srv.Close()
	guard := delivery.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, RootCAs: x509.NewCertPool()}
	guard.RootCAs.AddCert(srv.Certificate())
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "SELECT audit.register_delivery_key($1, $2)", delivery.KeyID(key.PublicKey()), key.PublicKey().Bytes()); err != nil {
		return nil, err
	}
	if _, _, err := delivery.Subscribe(ctx, conn, guard, delivery.Subscription{OrgID: org, Name: "bench", Kind: delivery.KindWebhook,
		Destination: delivery.Destination{URL: srv.URL + "/hook"}}); err != nil {
		return nil, err
	}
	workerCtx, stopWorker := context.WithCancel(ctx)
	worker := make(chan error, 1)
	go func() {
		worker <- delivery.Run(workerCtx, delivery.Config{DatabaseURL: url, Key: key, Guard: guard, Logger: b.logger})
	}()
	defer func() { stopWorker(); <-worker }()

	// 10 writers, each at a tenth of the rate, on a fixed schedule (enough
	// of them that a slow durable commit does not lower the rate); each
	// notes when its COMMIT returned, by event id.
	const clients = 10
	interval := time.Second * clients / deliveryRate
	var mu sync.Mutex
	committedAt := map[string]time.Time{}
	// The schedule starts with the first write, once every client is
	// connected.
	var start time.Time
	var started sync.Once
	write := func(ctx context.Context, c *pgx.Conn, i int) error {
		started.Do(func() { start = time.Now() })
		due := start.Add(time.Duration(i%1_000_000)*interval + time.Duration(i/1_000_000)*interval/clients)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(due)):
		}
		var id string
		if err := c.QueryRow(ctx, `SELECT audit.log_event(org_id => $1, action => 'cluster.created', target_id => $2,
			metadata => '{"name": "prod-eu-1"}')`, org, fmt.Sprint("cl-", i)).Scan(&id); err != nil {
			return err
		}
		t := time.Now()
		mu.Lock()
		committedAt[id] = t
		mu.Unlock()
		return nil
	}
	load, err := runClients(ctx, url, clients, b.duration, nil, write)
	if err != nil {
		return nil, err
	}
	// Every event recorded reaches the receiver, or the row says how many
	// did not.
	deadline := time.Now().Add(30 * time.Second)
	for rc.count() < len(committedAt) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var delivered []time.Duration
	rc.mu.Lock()
	for id, at := range committedAt {
		if got, ok := rc.at[id]; ok {
			delivered = append(delivered, max(got.Sub(at), 0))
		}
	}
	rc.mu.Unlock()
	slices.Sort(delivered)
	sealed, err := sealLags(ctx, conn, committedAt, []span{{from: start, to: time.Now()}})
	if err != nil {
		return nil, err
	}
	r := row{benchmark: fmt.Sprintf("commit to webhook receiver latency p99 (p50), %.0f events/s, one subscription, vs commit to sealed",
		load.perSecond()), goal: "p99 < 1000 ms", measured: "nothing delivered", met: ptr(false)}
	if len(delivered) > 0 && len(sealed) > 0 {
		p99, s99 := delivered[len(delivered)*99/100], sealed[len(sealed)*99/100]
		r.measured = fmt.Sprintf("%s (%s), %d of %d events", ms(p99), ms(delivered[len(delivered)/2]), len(delivered), len(committedAt))
		r.baseline = fmt.Sprintf("%s (%s)", ms(s99), ms(sealed[len(sealed)/2]))
		r.ratio = float64(p99) / float64(s99)
		r.met = ptr(p99 < time.Second && len(delivered) == len(committedAt))
	}
	return []row{r}, nil
}

// timingReceiver notes when each event id first reached it.
type timingReceiver struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (rc *timingReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	var body struct{ Events []struct{ ID string } }
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<20)).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, e := range body.Events {
		if _, ok := rc.at[e.ID]; !ok {
			rc.at[e.ID] = now
		}
	}
}

func (rc *timingReceiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.at)
}
