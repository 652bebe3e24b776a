package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/delivery"
	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/demo"
	"github.com/auditlog/auditlog/internal/devenv"
	"github.com/auditlog/auditlog/internal/pglocal"
	"github.com/auditlog/auditlog/internal/schema"
)

// devDatabase is the database `auditlog dev` uses in the local cluster.
const devDatabase = "auditlog"

// devBannerFile, in the cluster's directory, holds the banner of the running
// `auditlog dev` for `auditlog dev --print`; dev holds a lock on it from its
// start, so a second dev for the checkout stops at once and a file left by a
// killed dev is not taken for a running one.
const devBannerFile = "dev-banner"

// devConfig is what `auditlog dev` runs with.
type devConfig struct {
	addr        string
	dir         string // the local cluster's directory
	logRequests bool   // log every API request
}

func runDev(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "dev", "[--addr HOST:PORT] [--log-requests] | --print")
	var cfg devConfig
	fs.StringVar(&cfg.addr, "addr", envOr("AUDITLOG_ADDR", "127.0.0.1:8080"), "address to serve on (env AUDITLOG_ADDR)")
	fs.BoolVar(&cfg.logRequests, "log-requests", envOr("AUDITLOG_LOG_REQUESTS", "") != "", "log a line per HTTP request, as serve does (env AUDITLOG_LOG_REQUESTS, any value)")
	printBanner := fs.Bool("print", false, "print the URLs and owner token of the auditlog dev running for this checkout, and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if cfg.dir, err = pglocal.DefaultDir(); err != nil {
		return err
	}
	if *printBanner {
		return printRunningBanner(e.stdout, cfg.dir)
	}
	defer takeTerminal()()
	err = dev(ctx, e, cfg)
	if ctx.Err() != nil {
		// Ctrl-C: what was running is stopped, as asked.
		return nil
	}
	return err
}

// dev starts the local cluster, migrates, prepares the login roles, the demo
// and the owner token, and serves until ctx ends, printing a line per phase
// with its time, then the banner, then what it stopped. Only warnings and
// errors are logged, and the API's requests when cfg.logRequests.
func dev(ctx context.Context, e env, cfg devConfig) error {
	claim, err := claimDev(cfg.dir)
	if err != nil {
		return err
	}
	defer claim.release()
	// Listening first: a taken port stops dev before a first run's set-up
	// (half a minute) rather than after it.
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("%w (AUDITLOG_ADDR, or --addr, serves elsewhere: AUDITLOG_ADDR=127.0.0.1:8081 make run)", err)
	}
	defer ln.Close()
	out := e.stdout
	scfg := serveConfig{addr: cfg.addr, ln: ln}
	if cfg.logRequests {
		scfg.apiLogger = e.logger
	}
	e.logger = e.quietLogger()

	st := beginStep(ctx, out, "starting PostgreSQL in %s", cfg.dir)
	cluster, err := pglocal.Start(ctx, pglocal.Options{Dir: cfg.dir, Logger: e.logger})
	if err := st.end(err, ""); err != nil {
		return err
	}
	defer stopCluster(out, e.logger, cluster)

	st = beginStep(ctx, out, "migrating")
	dbURL := cluster.URL(devDatabase)
	res, err := devMigrate(ctx, e, cluster.URL("postgres"), dbURL)
	detail := fmt.Sprintf("schema version %d, as before", res.To)
	if len(res.Applied) > 0 {
		detail = fmt.Sprintf("schema version %d: %d migrations applied", res.To, len(res.Applied))
	}
	if err := st.end(err, detail); err != nil {
		return err
	}

	st = beginStep(ctx, out, "loading the demo")
	info, err := prepareDev(ctx, e, dbURL, cluster.Dir())
	detail = fmt.Sprintf("%d orgs, made on an earlier run", len(info.demo.Orgs))
	if info.demo.Created {
		detail = fmt.Sprintf("made just now: %d orgs, %d events recorded live, %d imported", len(info.demo.Orgs), info.demo.Recorded, info.demo.Imported.Loaded)
	}
	if err := st.end(err, detail); err != nil {
		return err
	}

	st = beginStep(ctx, out, "starting the demo's webhook receiver")
	keyPath := filepath.Join(cluster.Dir(), devenv.DeliveryKeyFile)
	rcv, err := startReceiver(ctx, dbURL, keyPath, e.logger)
	if err := st.end(err, ""); err != nil {
		return err
	}
	defer rcv.Close()
	info.receiverURL = rcv.URL

	st = beginStep(ctx, out, "serving")
	var stopReprint func()
	scfg.dbURL, scfg.retention.dbURL = info.apiURL, info.workerURL
	scfg.seal = sealFlags{dbURL: info.sealerURL, keyPath: filepath.Join(cluster.Dir(), devenv.SealKeyFile), createKey: true}
	scfg.deliver = &deliverFlags{dbURL: info.delivererURL, keyPath: keyPath, allow: rcv.Allow.String(), roots: rcv.Roots, failAfter: 24 * time.Hour}
	scfg.ready = func(a net.Addr) {
		st.end(nil, "http://"+a.String())
		var b strings.Builder
		printDev(&b, a.String(), cluster.Dir(), os.Getpid(), info)
		banner := b.String()
		if err := claim.publish(banner); err != nil {
			e.logger.Warn("auditlog dev --print will not find this banner", "err", err)
		}
		// Listening for SIGUSR1 before the banner invites it.
		stopSignals := reprintOnSignal(out, banner)
		stopReprint = func() { stopSignals(); claim.release() }
		io.WriteString(out, banner)
	}
	err = serve(ctx, e, scfg)
	if stopReprint == nil {
		return st.end(err, "")
	}
	stopReprint()
	if isTerminal(out) {
		fmt.Fprintln(out) // after the terminal's ^C
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "stopped the API server, the retention worker, the sealer and the delivery worker")
	rcv.Close()
	n, last := rcv.Received()
	fmt.Fprintf(out, "stopped the demo's webhook receiver (it took %d events this run, up to seq %d)\n", n, last)
	return nil
}

// startReceiver starts the demo's webhook receiver with its subscription
// (internal/devenv), for the delivery worker with the key at keyPath,
// made if missing.
func startReceiver(ctx context.Context, dbURL, keyPath string, logger *slog.Logger) (*devenv.Receiver, error) {
	key, err := delivery.LoadOrCreateKey(keyPath, true)
	if err != nil {
		return nil, err
	}
	conn, err := database.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	return devenv.StartReceiver(ctx, conn, key, demo.EnterpriseOrgID, demo.OwnerEmail, logger)
}

// stopCluster ends dev's use of the local cluster and says whether that
// stopped it.
func stopCluster(out io.Writer, logger *slog.Logger, cluster *pglocal.Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cluster.Close(ctx); err != nil {
		logger.Error("stopping local PostgreSQL", "err", err)
		return
	}
	if cluster.Running(ctx) {
		fmt.Fprintf(out, "left PostgreSQL running: another process (tests?) still uses %s\n", cluster.Dir())
		return
	}
	fmt.Fprintf(out, "stopped PostgreSQL (its data stays in %s for the next run)\n", cluster.Dir())
}

// step is a phase of `auditlog dev`, printed as one line: what it does when
// it begins, its time (and what it found) when it ends.
type step struct {
	ctx   context.Context
	w     io.Writer
	start time.Time
}

func beginStep(ctx context.Context, w io.Writer, format string, args ...any) step {
	fmt.Fprintf(w, format+" ... ", args...)
	return step{ctx: ctx, w: w, start: time.Now()}
}

// end finishes the step's line and returns err.
func (s step) end(err error, detail string) error {
	switch {
	case err == nil && detail == "":
		fmt.Fprintf(s.w, "%.1fs\n", time.Since(s.start).Seconds())
	case err == nil:
		fmt.Fprintf(s.w, "%.1fs (%s)\n", time.Since(s.start).Seconds(), detail)
	case s.ctx.Err() != nil:
		fmt.Fprintln(s.w, "interrupted")
	default:
		fmt.Fprintln(s.w, "failed")
	}
	return err
}

// devMigrate creates the dev database unless it exists, migrates it and
// makes the login roles of the product's parts.
func devMigrate(ctx context.Context, e env, adminURL, dbURL string) (schema.Result, error) {
	if err := createDatabase(ctx, adminURL, devDatabase); err != nil {
		return schema.Result{}, err
	}
	conn, err := database.Connect(ctx, dbURL)
	if err != nil {
		return schema.Result{}, err
	}
	defer conn.Close(ctx)
	res, err := schema.Migrate(ctx, conn, e.logger)
	if err != nil {
		return res, err
	}
	return res, devenv.CreateLoginRoles(ctx, conn)
}

// devInfo is what `auditlog dev` prepared, to print once the server listens.
type devInfo struct {
	apiURL       string // the database as auditlog_api, for the API
	workerURL    string // the database as auditlog_worker, for the retention worker
	sealerURL    string // the database as auditlog_sealer, for the sealer
	delivererURL string // the database as auditlog_deliverer, for the delivery worker
	receiverURL  string // the demo's webhook receiver, once started
	demo         demo.Result
	token        string
	tokenMinted  bool
}

// prepareDev makes, in the migrated database at dbURL, the demo (the first
// time only) and an owner token of the demo's enterprise org, kept in dir
// between runs.
func prepareDev(ctx context.Context, e env, dbURL, dir string) (devInfo, error) {
	var info devInfo
	conn, err := database.Connect(ctx, dbURL)
	if err != nil {
		return info, err
	}
	defer conn.Close(ctx)
	if info.demo, err = demo.Run(ctx, conn, demo.Config{Logger: e.logger}); err != nil {
		return info, err
	}
	info.token, info.tokenMinted, err = devenv.OwnerToken(ctx, conn, devenv.TokenOpts{Dir: dir, OrgID: demo.EnterpriseOrgID, Email: demo.OwnerEmail})
	if err != nil {
		return info, err
	}
	if info.apiURL, err = database.WithUser(dbURL, devenv.LoginRoles[0].Name, ""); err != nil {
		return info, err
	}
	if info.workerURL, err = database.WithUser(dbURL, devenv.Worker, ""); err != nil {
		return info, err
	}
	if info.sealerURL, err = database.WithUser(dbURL, devenv.Sealer, ""); err != nil {
		return info, err
	}
	info.delivererURL, err = database.WithUser(dbURL, devenv.Deliverer, "")
	return info, err
}

// devClaim is a dev's lock on the banner file of the cluster in its
// directory: one dev per checkout.
type devClaim struct {
	f *os.File // nil once released
}

// claimDev takes the banner file in dir, emptied (it may hold a killed dev's
// banner), or says that another dev holds it.
func claimDev(dir string) (*devClaim, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, devBannerFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("an auditlog dev is already running for this checkout (its cluster is %s); bin/auditlog dev --print prints its URLs and token", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	return &devClaim{f: f}, nil
}

// publish writes the banner for --print, readable by its owner only (it
// holds the token).
func (c *devClaim) publish(banner string) error {
	_, err := c.f.WriteString(banner)
	return err
}

// release removes the banner file and lets another dev start; once.
func (c *devClaim) release() {
	if c.f == nil {
		return
	}
	os.Remove(c.f.Name())
	c.f.Close()
	c.f = nil
}

// printRunningBanner prints the banner of the dev running on the cluster in
// dir, or says none runs.
func printRunningBanner(w io.Writer, dir string) error {
	path := filepath.Join(dir, devBannerFile)
	notRunning := fmt.Errorf("no auditlog dev is running for this checkout (nothing in %s); start one with make run", path)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return notRunning
	}
	if err != nil {
		return err
	}
	defer f.Close()
	switch err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); {
	case err == nil:
		return notRunning // a killed dev's file
	case !errors.Is(err, syscall.EWOULDBLOCK):
		return fmt.Errorf("lock %s: %w", path, err)
	}
	n, err := io.Copy(w, io.LimitReader(f, 64<<10))
	if err == nil && n == 0 {
		return errors.New("the auditlog dev for this checkout is still starting: it prints its banner once it serves")
	}
	return err
}

// reprintOnSignal prints the banner to w on every SIGUSR1, until the func it
// returns is called.
func reprintOnSignal(w io.Writer, banner string) func() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-sig:
				io.WriteString(w, banner)
			case <-done:
				return
			}
		}
	})
	return func() {
		signal.Stop(sig)
		close(done)
		wg.Wait()
	}
}

// printDev tells the user where everything is and how to stop it.
func printDev(w io.Writer, addr, dir string, pid int, info devInfo) {
	var org demo.Org
	for _, o := range info.demo.Orgs {
		if o.ID == demo.EnterpriseOrgID {
			org = o
		}
	}
	tokenNote := "from an earlier run"
	if info.tokenMinted {
		tokenNote = "minted just now"
	}
	roles := make([]string, len(devenv.LoginRoles))
	for i, r := range devenv.LoginRoles {
		roles[i] = fmt.Sprintf("%s (%s)", r.Name, strings.Join(r.Groups, ", "))
	}
	base := "http://" + addr
	fmt.Fprintf(w, "\nauditlog is running, with the demo control plane (%d orgs).\n\n", len(info.demo.Orgs))
	fmt.Fprintf(w, "  Activity page: %s/orgs/%s/activity  (%s, %s plan)\n", base, org.ID, org.Name, org.Plan)
	fmt.Fprintf(w, "  API:           %s/api/orgs/%s/audit\n", base, org.ID)
	fmt.Fprintf(w, "  Owner token:   %s\n", info.token)
	fmt.Fprintf(w, "                 (%s, an owner; %s; stored in %s/%s)\n", demo.OwnerEmail, tokenNote, dir, devenv.TokenFile)
	fmt.Fprintf(w, "  Try:           curl -H 'Authorization: Bearer %s' '%s/api/orgs/%s/audit?limit=5'\n", info.token, base, org.ID)
	if info.receiverURL != "" {
		fmt.Fprintf(w, "  Streams:       every event of %s goes to a webhook receiver at %s\n", org.Name, info.receiverURL)
		fmt.Fprintf(w, "                 (subscription %q; the Activity page's Streams panel shows its deliveries)\n", devenv.ReceiverSubscription)
	}
	fmt.Fprintf(w, "  Database:      psql -h %s -U %s %s\n", dir, pglocal.Superuser, devDatabase)
	fmt.Fprintf(w, "                 login roles: %s\n", strings.Join(roles, ", "))
	fmt.Fprintf(w, "\nPress Ctrl-C to stop (the local PostgreSQL stops too; its data is kept in %s).\n", dir)
	fmt.Fprintf(w, "To print this again: bin/auditlog dev --print (or kill -USR1 %d).\n", pid)
	fmt.Fprintln(w)
}

// createDatabase creates database name unless it exists.
func createDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := database.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}
