package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// ErrRefusedAddress is a destination address the SSRF rule refuses.
var ErrRefusedAddress = errors.New("refused address")

// specialRanges are ranges that are neither loopback, link-local nor
// private (netip says those) but still no place to send events: shared
// address space, IETF protocol assignments, documentation, benchmarking,
// reserved, discard-only, deprecated site-local, and those with an IPv4
// address inside that some networks reach (IPv4-compatible, SIIT's
// IPv4-translated, NAT64, Teredo, 6to4).
var specialRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("::ffff:0:0:0/96"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("fec0::/10"),
	netip.MustParsePrefix("2001::/23"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
}

// Guard is the server-side request forgery rule: destinations resolving to
// loopback, link-local (the cloud metadata address 169.254.169.254 among
// them), private or other special addresses are refused, unless listed in
// Allow by the operator.
type Guard struct {
	// Allow lists the addresses an operator allows even so (the tests'
	// local receivers).
	Allow []netip.Prefix
	// RootCAs, if not nil, are the certificate authorities trusted instead
	// of the system's (the tests' receivers).
	RootCAs *x509.CertPool
}

// CheckAddr refuses an address the rule refuses.
func (g Guard) CheckAddr(ip netip.Addr) error {
	ip = ip.Unmap()
	for _, p := range g.Allow {
		if p.Contains(ip) {
			return nil
		}
	}
	refused := !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast()
	for _, p := range specialRanges {
		refused = refused || p.Contains(ip)
	}
	if refused {
		return fmt.Errorf("%w %s: loopback, link-local, private and special addresses are not delivered to", ErrRefusedAddress, ip)
	}
	return nil
}

// Control is a net.Dialer Control hook: it checks the address a connection
// is about to be made to, after name resolution, so a name that resolves
// elsewhere later is checked again.
func (g Guard) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrRefusedAddress, address, err)
	}
	return g.CheckAddr(ap.Addr())
}

// CheckURL checks a destination URL when a subscription is made: https,
// no user info, and every address its host resolves to allowed.
func (g Guard) CheckURL(ctx context.Context, raw string) (*url.URL, error) {
	if len(raw) > 2048 {
		return nil, errors.New("a destination URL is at most 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("destination URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, errors.New("a destination URL is https://host/path, without user info or fragment")
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil {
		return nil, fmt.Errorf("destination URL: %w", err)
	}
	for _, ip := range ips {
		if err := g.CheckAddr(ip); err != nil {
			return nil, fmt.Errorf("destination %s: %w", u.Hostname(), err)
		}
	}
	return u, nil
}

// Client is the HTTP client deliveries use: every connection checked by
// Control, no proxy, no redirects followed, TLS certificates verified, and
// each request bounded by timeout.
func (g Guard) Client(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, Control: g.Control}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: g.RootCAs, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// do sends req with client. A failure names the destination's host, never
// its URL: a Slack URL is the secret itself, and a webhook's may hold a
// token, while errors reach the attempt log that audit_reader reads.
func do(client *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := client.Do(req)
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = fmt.Errorf("%s %s: %w", ue.Op, req.URL.Host, ue.Err)
	}
	return resp, err
}
