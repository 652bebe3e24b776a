package devenv

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/delivery"
)

// DeliveryKeyFile is the name of the file, in the local cluster's
// directory, that keeps the delivery worker's key between runs.
const DeliveryKeyFile = "dev-delivery-key.pem"

// ReceiverSubscription is the name of the demo org's webhook subscription
// to the receiver `auditlog dev` starts.
const ReceiverSubscription = "local receiver"

// maxReceived bounds what the receiver reads of a request: a batch of at
// most 1000 events.
const maxReceived = 16 << 20

// Receiver is the local HTTPS webhook receiver `auditlog dev` starts, which
// an org's subscription delivers every event to, so that a newcomer sees
// deliveries on the Activity page. It checks each batch's signature.
type Receiver struct {
	// URL is where the subscription delivers: https://127.0.0.1:PORT/hook.
	URL string
	// Roots trust the receiver's certificate, made for this run.
	Roots *x509.CertPool
	// Allow is the receiver's address, for the delivery worker's
	// allow-list (it is loopback, which the SSRF rule refuses otherwise).
	Allow netip.Prefix

	secret string
	logger *slog.Logger
	srv    *http.Server
	done   chan struct{}

	mu      sync.Mutex
	events  int
	lastSeq int64
}

// StartReceiver starts the receiver for org's subscription named
// ReceiverSubscription, made in db (as the owner ownerEmail, sealed to key,
// which it registers) unless it exists; an existing one keeps its port
// when that is free, else it is replaced by one to the new port. Close
// stops the receiver.
func StartReceiver(ctx context.Context, db *pgx.Conn, key *ecdh.PrivateKey, orgID, ownerEmail string, logger *slog.Logger) (*Receiver, error) {
	pub := key.PublicKey()
	if _, err := db.Exec(ctx, "SELECT audit.register_delivery_key($1, $2)", delivery.KeyID(pub), pub.Bytes()); err != nil {
		return nil, fmt.Errorf("register the delivery key: %w", err)
	}
	var id string
	var sealed []byte
	err := db.QueryRow(ctx, "SELECT id::text, sealed FROM audit.subscriptions WHERE org_id = $1 AND name = $2", orgID, ReceiverSubscription).Scan(&id, &sealed)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("look for the demo subscription: %w", err)
	}
	r := &Receiver{logger: logger, done: make(chan struct{})}
	var ln net.Listener
	if id != "" {
		// The subscription of an earlier run: its port again, if free.
		if d, err := delivery.Open(key, sealed); err == nil {
			if u, err := url.Parse(d.URL); err == nil {
				if ln, err = net.Listen("tcp", u.Host); err == nil {
					r.URL, r.secret = d.URL, d.Secret
				}
			}
		}
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("demo receiver: %w", err)
		}
		r.URL = "https://" + ln.Addr().String() + "/hook"
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	r.Allow = netip.PrefixFrom(ap.Addr(), ap.Addr().BitLen())
	cert, err := selfSigned(ap.Addr())
	if err != nil {
		ln.Close()
		return nil, err
	}
	r.Roots = x509.NewCertPool()
	r.Roots.AddCert(cert.Leaf)
	if r.secret == "" {
		if err := r.subscribe(ctx, db, id, orgID, ownerEmail); err != nil {
			ln.Close()
			return nil, err
		}
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	go func() {
		defer close(r.done)
		if err := r.srv.Serve(tlsLn); !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("demo receiver stopped", "err", err)
		}
	}()
	return r, nil
}

// subscribe makes the subscription to r.URL as the owner, replacing the
// earlier run's (old, if not empty), whose port was taken.
func (r *Receiver) subscribe(ctx context.Context, db *pgx.Conn, old, orgID, ownerEmail string) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var owner string
		if err := tx.QueryRow(ctx, "SELECT id::text FROM cloud.users WHERE email = $1", ownerEmail).Scan(&owner); err != nil {
			return fmt.Errorf("demo subscription: owner %s: %w", ownerEmail, err)
		}
		if err := auditlog.SetContext(ctx, tx, auditlog.Context{Actor: auditlog.Actor{ID: owner}, UserAgent: "auditlog dev"}); err != nil {
			return err
		}
		if old != "" {
			if _, err := tx.Exec(ctx, "SELECT audit.unsubscribe($1, $2)", orgID, old); err != nil {
				return fmt.Errorf("demo subscription: replace the earlier one: %w", err)
			}
		}
		g := delivery.Guard{Allow: []netip.Prefix{r.Allow}, RootCAs: r.Roots}
		_, d, err := delivery.Subscribe(ctx, tx, g, delivery.Subscription{OrgID: orgID, Name: ReceiverSubscription,
			Kind: delivery.KindWebhook, Destination: delivery.Destination{URL: r.URL}})
		if err != nil {
			return fmt.Errorf("demo subscription: %w", err)
		}
		r.secret = d.Secret
		return nil
	})
}

// ServeHTTP takes a batch whose signature is right, and answers 401 to
// another.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxReceived))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	var batch struct {
		Events []struct {
			Seq int64 `json:"seq"`
		} `json:"events"`
	}
	ok := delivery.Verify(r.secret, req.Header.Get(delivery.HeaderTimestamp), req.Header.Get(delivery.HeaderSignature), body, time.Now(), 5*time.Minute)
	if ok {
		ok = json.Unmarshal(body, &batch) == nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok {
		r.logger.Warn("demo receiver: a request without a valid signature", "from", req.RemoteAddr)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	for _, e := range batch.Events {
		// At least once: skip what came before (docs/delivery.md).
		if e.Seq > r.lastSeq {
			r.events++
			r.lastSeq = e.Seq
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// Received says how many events the receiver took (each seq once) and the
// highest seq.
func (r *Receiver) Received() (events int, lastSeq int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events, r.lastSeq
}

// Close stops the receiver.
func (r *Receiver) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.srv.Shutdown(ctx)
	<-r.done
	return err
}

// selfSigned makes a certificate for addr, for this run only: the delivery
// worker trusts it through Receiver.Roots.
func selfSigned(addr netip.Addr) (tls.Certificate, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "auditlog dev receiver"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		IPAddresses:           []net.IP{addr.AsSlice()},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}
