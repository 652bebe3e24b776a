package delivery_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditlog/auditlog/delivery"
	"github.com/auditlog/auditlog/internal/fixture"
)

// TestAddressCheckRefusesSpecialRanges: link-local (the cloud metadata
// address), private and other special addresses are refused by the dialer
// hook before any connection; the dialer fails the test instead of
// connecting if the hook lets one through.
func TestAddressCheckRefusesSpecialRanges(t *testing.T) {
	t.Parallel()
	g := delivery.Guard{}
	dialer := net.Dialer{Timeout: time.Second, Control: func(network, address string, c syscall.RawConn) error {
		if err := g.Control(network, address, c); err != nil {
			return err
		}
		t.Errorf("the guard let a connection to %s through", address)
		return errors.New("test dialer: not connecting")
	}}
	for _, addr := range []string{
		"127.0.0.1", "127.1.2.3", "::1", "169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254",
		"10.0.0.1", "172.16.0.1", "192.168.1.1", "fc00::1", "100.64.0.1", "0.0.0.0", "::", "224.0.0.1",
		"192.0.2.1", "198.18.0.1", "240.0.0.1", "255.255.255.255", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
		"64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "::127.0.0.1", "::a9fe:a9fe", "::ffff:0:7f00:1", "::ffff:0:a00:1",
		"100::1", "fec0::1", "2001::a9fe:a9fe", "2001:10::1",
	} {
		_, err := dialer.DialContext(context.Background(), "tcp", net.JoinHostPort(addr, "443"))
		if !errors.Is(err, delivery.ErrRefusedAddress) {
			t.Errorf("%s: %v, want refused", addr, err)
		}
	}
	for _, addr := range []string{"93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "1.1.1.1"} {
		if err := g.CheckAddr(netip.MustParseAddr(addr)); err != nil {
			t.Errorf("%s refused: %v", addr, err)
		}
	}
	allowed := delivery.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	if allowed.CheckAddr(netip.MustParseAddr("10.1.2.3")) != nil || allowed.CheckAddr(netip.MustParseAddr("10.2.0.1")) == nil {
		t.Error("the allow-list does not allow exactly its prefixes")
	}
}

// TestLoopbackRefusedEndToEnd: without the operator's allow-list,
// subscribing to 127.0.0.1, [::1] or a name resolving to loopback is
// refused, and a subscription made around the check (straight in SQL) is
// refused at connection: its receiver gets nothing, and the attempt says
// why.
func TestLoopbackRefusedEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	rc := newReceiver(t, nil)
	noAllow := delivery.Guard{RootCAs: guard(rc).RootCAs}
	for _, u := range []string{"https://127.0.0.1/hook", "https://[::1]/hook", "https://localhost/hook", rc.srv.URL, "http://example.com/hook"} {
		_, _, err := delivery.Subscribe(ctx, e.control, noAllow, delivery.Subscription{OrgID: org, Name: "x", Kind: delivery.KindWebhook, Destination: delivery.Destination{URL: u}})
		if err == nil {
			t.Errorf("subscribing to %s: allowed", u)
		}
	}
	id := e.subscribe(t, org, "sneaky", delivery.Rule{}, rc) // checked with the allow-list
	e.start(t, delivery.Config{Guard: noAllow, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	waitFor(t, "a refused attempt", func() bool {
		var errText string
		e.admin.QueryRow(ctx, "SELECT coalesce(max(error), '') FROM audit.delivery_attempts WHERE subscription_id = $1", id).Scan(&errText)
		return errText != ""
	})
	var errText string
	e.admin.QueryRow(ctx, "SELECT max(error) FROM audit.delivery_attempts WHERE subscription_id = $1", id).Scan(&errText)
	if got, _ := rc.seqs(); len(got) > 0 || !containsAll(errText, "refused address", "127.0.0.1") {
		t.Errorf("receiver got %v; attempt error %q", got, errText)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.requests > 0 {
		t.Errorf("%d requests reached the receiver", rc.requests)
	}
}

func containsAll(s string, parts ...string) bool {
	contains := strings.Contains
	for _, p := range parts {
		if !contains(s, p) {
			return false
		}
	}
	return true
}

// TestRedirectIsNotFollowed: a receiver answering 307 to elsewhere (which
// could be an internal address the name check never saw) gets a failed
// attempt with its status; the place it points to gets no request.
func TestRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	target := newReceiver(t, nil)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		http.Redirect(w, r, target.srv.URL+"/internal", http.StatusTemporaryRedirect)
		return true
	})
	id := e.subscribe(t, org, "hook", delivery.Rule{}, rc)
	e.start(t, delivery.Config{Guard: guard(rc, target), MinBackoff: time.Minute})
	write(t, e, org, 1, 1)
	var status int
	waitFor(t, "a failed attempt", func() bool {
		return e.admin.QueryRow(context.Background(), "SELECT status FROM audit.delivery_attempts WHERE subscription_id = $1 AND error IS NOT NULL LIMIT 1", id).Scan(&status) == nil
	})
	target.mu.Lock()
	defer target.mu.Unlock()
	if status != http.StatusTemporaryRedirect || target.requests > 0 {
		t.Errorf("attempt status %d; %d requests followed the redirect", status, target.requests)
	}
}
