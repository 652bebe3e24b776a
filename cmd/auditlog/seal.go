package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/sealer"
)

// sealFlags configure the sealer, in serve or on its own (auditlog seal).
type sealFlags struct {
	dbURL     string
	keyPath   string
	createKey bool
	disabled  bool
}

func (s *sealFlags) register(fs *flag.FlagSet, inServe bool) {
	if inServe {
		fs.StringVar(&s.dbURL, "sealer-database-url", envOr("AUDITLOG_SEALER_DATABASE_URL", ""),
			"database for the sealer, as a role holding audit_sealer with the REPLICATION attribute (env AUDITLOG_SEALER_DATABASE_URL; default: the --database-url)")
		fs.BoolVar(&s.disabled, "no-sealer", envOr("AUDITLOG_NO_SEALER", "") != "",
			"do not run the sealer in this process (env AUDITLOG_NO_SEALER, any value)")
	} else {
		fs.StringVar(&s.dbURL, "database-url", envOr("DATABASE_URL", ""),
			"database, as a role holding audit_sealer with the REPLICATION attribute (env DATABASE_URL)")
	}
	fs.StringVar(&s.keyPath, "seal-key", envOr("AUDITLOG_SEAL_KEY", ""),
		"file holding the Ed25519 private key (PKCS #8 PEM) that signs checkpoints (env AUDITLOG_SEAL_KEY)")
	fs.BoolVar(&s.createKey, "create-key", false, "make the --seal-key file with a new key if it does not exist")
}

// config checks the flags. The key is read (made, with --create-key) by
// loadKey once sealer.Check accepts the server: a refused one (a standby)
// leaves no key file behind.
func (s *sealFlags) config(e env, fallbackURL string) (sealer.Config, error) {
	cfg := sealer.Config{DatabaseURL: cmp.Or(s.dbURL, fallbackURL), Logger: e.logger}
	if s.keyPath == "" {
		return cfg, errors.New("sealer: no --seal-key file (env AUDITLOG_SEAL_KEY); make one with --seal-key FILE --create-key (docs/feed.md)")
	}
	return cfg, nil
}

// loadKey reads the key into cfg, or makes it with --create-key.
func (s *sealFlags) loadKey(e env, cfg *sealer.Config) error {
	key, err := chain.LoadOrCreateKey(s.keyPath, s.createKey)
	if err != nil {
		return fmt.Errorf("sealer: %w", err)
	}
	cfg.Key = key
	e.logger.Info("seal key", "file", s.keyPath, "key_id", chain.KeyID(key.Public().(ed25519.PublicKey)))
	return nil
}

// startSealer checks that a sealer can run, then runs it in the background
// unless disabled. stop ends it.
func startSealer(ctx context.Context, e env, serveURL string, s sealFlags) (stop func(), err error) {
	if s.disabled {
		e.logger.Info("sealer disabled")
		return func() {}, nil
	}
	cfg, err := s.config(e, serveURL)
	if err != nil {
		return nil, err
	}
	if err := sealer.Check(ctx, cfg.DatabaseURL); err != nil {
		return nil, fmt.Errorf("%w; give serve --sealer-database-url for such a role, or --no-sealer and run `auditlog seal` elsewhere", err)
	}
	if err := s.loadKey(e, &cfg); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		if err := sealer.Run(ctx, cfg); err != nil {
			e.logger.Error("sealer stopped", "err", err)
		}
		close(done)
	}()
	return func() {
		cancel()
		<-done
	}, nil
}

func runSeal(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "seal", "[--database-url URL] --seal-key FILE [--create-key]")
	var s sealFlags
	s.register(fs, false)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := s.config(e, "")
	if err != nil {
		return err
	}
	if err := sealer.Check(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	if err := s.loadKey(e, &cfg); err != nil {
		return err
	}
	return sealer.Run(ctx, cfg)
}
