package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditlog/auditlog/api"
	"github.com/auditlog/auditlog/delivery"
	"github.com/auditlog/auditlog/internal/database"
)

// serveConfig is what serve needs, whether from flags or from dev.
type serveConfig struct {
	addr string
	// ln, if set, is the listener to serve on, instead of one on addr.
	ln    net.Listener
	dbURL string
	// retention configures the in-process retention worker.
	retention retentionFlags
	// seal configures the in-process sealer.
	seal sealFlags
	// deliver, if not nil, configures the in-process delivery worker.
	deliver *deliverFlags
	// rateLimit and rateBurst bound each token's requests (api.Config); zero: the API's defaults.
	rateLimit float64
	rateBurst int
	// trustedProxies are believed in X-Forwarded-For (api.Config).
	trustedProxies []netip.Prefix
	// ready, if set, is called with the listening address once the server accepts connections.
	ready func(addr net.Addr)
	// apiLogger, if set, receives the API's logs (a line per request at
	// level info) instead of the command's logger.
	apiLogger *slog.Logger
}

func runServe(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "serve", "[--addr HOST:PORT] [--database-url URL] [--rate-limit N] [--rate-burst N] [--trusted-proxies CIDR,...] [--retention-schedule CRON | --no-retention] [--seal-key FILE | --no-sealer] [--delivery-key FILE | --no-delivery]")
	var cfg serveConfig
	fs.StringVar(&cfg.addr, "addr", envOr("AUDITLOG_ADDR", "127.0.0.1:8080"), "address to listen on (env AUDITLOG_ADDR)")
	fs.StringVar(&cfg.dbURL, "database-url", envOr("DATABASE_URL", ""), "database, as a role holding audit_reader (env DATABASE_URL)")
	fs.Float64Var(&cfg.rateLimit, "rate-limit", envFloat("AUDITLOG_RATE_LIMIT", 10), "requests a second each token may make on average (env AUDITLOG_RATE_LIMIT)")
	fs.IntVar(&cfg.rateBurst, "rate-burst", int(envFloat("AUDITLOG_RATE_BURST", 20)), "requests a token may make at once (env AUDITLOG_RATE_BURST)")
	proxies := fs.String("trusted-proxies", envOr("AUDITLOG_TRUSTED_PROXIES", ""),
		"addresses or CIDR prefixes of the reverse proxies whose X-Forwarded-For gives the client's address, comma-separated; default none (env AUDITLOG_TRUSTED_PROXIES)")
	cfg.retention.register(fs)
	cfg.seal.register(fs, true)
	var deliver deliverFlags
	deliver.register(fs, true)
	noDelivery := fs.Bool("no-delivery", envOr("AUDITLOG_NO_DELIVERY", "") != "",
		"do not run the delivery worker in this process (env AUDITLOG_NO_DELIVERY, any value)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*noDelivery {
		cfg.deliver = &deliver
	}
	var err error
	if cfg.trustedProxies, err = api.ParseTrustedProxies(*proxies); err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	return serve(ctx, e, cfg)
}

// serve runs the API until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, e env, cfg serveConfig) error {
	pool, err := database.Pool(ctx, cfg.dbURL, func(c *pgxpool.Config) {
		c.MaxConns = 16
		api.ConfigurePool(c)
	})
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := refuseWorkersOnStandby(ctx, cfg); err != nil {
		return err
	}
	stopRetention, err := startRetention(ctx, e, cfg.dbURL, cfg.retention)
	if err != nil {
		return err
	}
	defer stopRetention()
	stopSealer, err := startSealer(ctx, e, cfg.dbURL, cfg.seal)
	if err != nil {
		return err
	}
	defer stopSealer()
	deliveryMetrics := delivery.NewMetrics()
	stopDelivery, err := startDelivery(ctx, e, cfg.dbURL, cfg.deliver, deliveryMetrics)
	if err != nil {
		return err
	}
	defer stopDelivery()

	ln := cfg.ln
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.addr); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.addr, err)
		}
	}
	srv := &http.Server{
		Handler: api.New(api.Config{Pool: pool, Logger: cmp.Or(cfg.apiLogger, e.logger),
			RateLimit: cfg.rateLimit, RateBurst: cfg.rateBurst, TrustedProxies: cfg.trustedProxies,
			Collectors: []prometheus.Collector{deliveryMetrics}}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	e.logger.Info("serving", "addr", ln.Addr().String())
	if cfg.ready != nil {
		cfg.ready(ln.Addr())
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	e.logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// refuseWorkersOnStandby refuses to start the workers of serve whose
// database is a hot standby, in one error naming every flag that fixes it:
// the API serves from a standby, but the workers write. Told one worker at a
// time, a user would restart serve once per worker; dropping them unasked
// would leave the primary with no retention, seals or deliveries, and no one
// told.
func refuseWorkersOnStandby(ctx context.Context, cfg serveConfig) error {
	type worker struct{ name, url, off, urlFlag string }
	var workers []worker
	if !cfg.retention.disabled {
		workers = append(workers, worker{"retention worker", cfg.retention.dbURL, "--no-retention", "--retention-database-url"})
	}
	if !cfg.seal.disabled {
		workers = append(workers, worker{"sealer", cfg.seal.dbURL, "--no-sealer", "--sealer-database-url"})
	}
	if cfg.deliver != nil {
		workers = append(workers, worker{"delivery worker", cfg.deliver.dbURL, "--no-delivery", "--delivery-database-url"})
	}
	standby := map[string]bool{} // by URL: the workers usually share serve's
	var server string
	var names, offs, urlFlags []string
	for _, w := range workers {
		url := cmp.Or(w.url, cfg.dbURL)
		on, checked := standby[url]
		if !checked {
			conn, err := database.Connect(ctx, url)
			if err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
			on, err = database.IsStandby(ctx, conn)
			if on && server == "" {
				server = database.Server(conn)
			}
			conn.Close(context.WithoutCancel(ctx))
			if err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
			standby[url] = on
		}
		if on {
			names, offs, urlFlags = append(names, "the "+w.name), append(offs, w.off), append(urlFlags, w.urlFlag)
		}
	}
	if len(names) == 0 {
		return nil
	}
	them := "them"
	if len(names) == 1 {
		them = "it"
	}
	return fmt.Errorf("the database at %s %w: the API can serve from it, but %s cannot; "+
		"pass %s and run %s against the primary (an auditlog serve there), or give %s of the primary (docs/scaling.md)",
		server, database.ErrStandby, and(names), strings.Join(offs, " "), them, strings.Join(urlFlags, ", "))
}

// and joins words as a sentence lists them: "a, b and c".
func and(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}
