package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/auditlog/auditlog/delivery"
)

// deliverFlags configure the delivery worker, in serve or on its own
// (auditlog deliver).
type deliverFlags struct {
	dbURL     string
	keyPath   string
	createKey bool
	allow     string
	link      string
	failAfter time.Duration
	// roots, if not nil, are trusted instead of the system's certificate
	// authorities: auditlog dev's receiver.
	roots *x509.CertPool
}

func (d *deliverFlags) register(fs *flag.FlagSet, inServe bool) {
	if inServe {
		fs.StringVar(&d.dbURL, "delivery-database-url", envOr("AUDITLOG_DELIVERY_DATABASE_URL", ""),
			"database for the delivery worker, as a role holding audit_deliverer (env AUDITLOG_DELIVERY_DATABASE_URL; default: the --database-url)")
	} else {
		fs.StringVar(&d.dbURL, "database-url", envOr("DATABASE_URL", ""), "database, as a role holding audit_deliverer (env DATABASE_URL)")
	}
	fs.StringVar(&d.keyPath, "delivery-key", envOr("AUDITLOG_DELIVERY_KEY", ""),
		"file holding the X25519 private key (PKCS #8 PEM) that opens the subscriptions' sealed destinations (env AUDITLOG_DELIVERY_KEY)")
	fs.BoolVar(&d.createKey, "create-delivery-key", false, "make the --delivery-key file with a new key if it does not exist")
	fs.StringVar(&d.allow, "delivery-allow", envOr("AUDITLOG_DELIVERY_ALLOW", ""),
		"addresses or CIDR prefixes destinations may resolve to although private, loopback or link-local, comma-separated; default none (env AUDITLOG_DELIVERY_ALLOW)")
	fs.StringVar(&d.link, "delivery-link", envOr("AUDITLOG_DELIVERY_LINK", ""),
		"the API's public base URL (https://audit.example.com), which Slack messages link events to (env AUDITLOG_DELIVERY_LINK)")
	fs.DurationVar(&d.failAfter, "delivery-fail-after", 24*time.Hour, "how long a subscription may fail before it is marked failing and stopped")
}

// parseAllow reads a comma-separated list of addresses and prefixes.
func parseAllow(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(part); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		} else {
			return nil, fmt.Errorf("--delivery-allow: %q is not an address or a CIDR prefix", part)
		}
	}
	return out, nil
}

// config checks the flags. The key is read (made, with
// --create-delivery-key) by loadKey once delivery.Check accepts the server:
// a refused one (a standby) leaves no key file behind.
func (d *deliverFlags) config(e env, fallbackURL string) (delivery.Config, error) {
	cfg := delivery.Config{DatabaseURL: cmp.Or(d.dbURL, fallbackURL), Logger: e.logger, FailAfter: d.failAfter, Link: d.link,
		Guard: delivery.Guard{RootCAs: d.roots}}
	var err error
	if cfg.Guard.Allow, err = parseAllow(d.allow); err != nil {
		return cfg, err
	}
	if d.keyPath == "" {
		return cfg, errors.New("delivery: no --delivery-key file (env AUDITLOG_DELIVERY_KEY); make one with --delivery-key FILE --create-delivery-key (docs/delivery.md)")
	}
	return cfg, nil
}

// loadKey reads the key into cfg, or makes it with --create-delivery-key.
func (d *deliverFlags) loadKey(e env, cfg *delivery.Config) error {
	var err error
	if cfg.Key, err = delivery.LoadOrCreateKey(d.keyPath, d.createKey); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	e.logger.Info("delivery key", "file", d.keyPath, "key_id", delivery.KeyID(cfg.Key.PublicKey()))
	return nil
}

// startDelivery runs the delivery worker in the background unless d is nil
// (serve's --no-delivery), counting its attempts in m. stop ends it.
func startDelivery(ctx context.Context, e env, serveURL string, d *deliverFlags, m *delivery.Metrics) (stop func(), err error) {
	if d == nil {
		e.logger.Info("delivery disabled")
		return func() {}, nil
	}
	cfg, err := d.config(e, serveURL)
	cfg.Metrics = m
	if err == nil {
		err = delivery.Check(ctx, cfg.DatabaseURL)
	}
	if err != nil {
		return nil, fmt.Errorf("%w; give serve --delivery-database-url for a role holding audit_deliverer, or --no-delivery and run `auditlog deliver` elsewhere", err)
	}
	if err := d.loadKey(e, &cfg); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		if err := delivery.Run(ctx, cfg); err != nil {
			e.logger.Error("delivery stopped", "err", err)
		}
		close(done)
	}()
	return func() {
		cancel()
		<-done
	}, nil
}

func runDeliver(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "deliver", "[--database-url URL] --delivery-key FILE [--create-delivery-key] [--delivery-allow CIDR,...]")
	var d deliverFlags
	d.register(fs, false)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := d.config(e, "")
	if err != nil {
		return err
	}
	if err := delivery.Check(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	if err := d.loadKey(e, &cfg); err != nil {
		return err
	}
	return delivery.Run(ctx, cfg)
}
