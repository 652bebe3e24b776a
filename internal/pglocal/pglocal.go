// Package pglocal runs a project-local PostgreSQL server from the machine's
// own binaries, for `auditlog dev` and for the tests when no database URL is
// given.
//
// The cluster lives in one directory (data, unix socket, log and lock files).
// It is initialised on first use, started when needed, shared by every process
// that opens it at the same time, and stopped by the last one to close it.
// PostgreSQL refuses to run as root, so when we are root the server runs as
// an unprivileged system user (postgres if it exists) from a directory that
// user can reach.
package pglocal

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Superuser is the name of the cluster's bootstrap superuser.
const Superuser = "postgres"

// defaultPort only names the socket file; the server listens on no TCP port
// unless Options.Settings give it listen_addresses, so two clusters never
// collide.
const defaultPort = 5432

// maxSocketPath is the longest unix socket path the kernel accepts.
const maxSocketPath = 107

// settings are appended to postgresql.conf by initdb time: a socket-only
// server tuned for tests and development, where durability is not wanted.
var settings = []string{
	"listen_addresses = ''",
	"port = " + strconv.Itoa(defaultPort),
	"fsync = off",
	"synchronous_commit = off",
	"full_page_writes = off",
	"max_connections = 200",
	"shared_buffers = 256MB",
	"log_min_messages = warning",
}

// startSettings are given on every start, so a cluster made by an older
// version picks them up at its next start: the sealer reads the events'
// inserts by logical decoding (docs/feed.md), one slot per database, and a
// stopped sealer's slot may not hold more than a bounded amount of WAL.
var startSettings = []string{
	"wal_level=logical",
	"max_replication_slots=100",
	"max_wal_senders=100",
	"max_slot_wal_keep_size=4GB",
}

// Options configure Start.
type Options struct {
	// Dir holds the cluster. Default: DefaultDir().
	Dir string
	// Logger receives progress (initialising, starting, stopping).
	// Default: discard.
	Logger *slog.Logger
	// Settings are extra server settings ("name=value") given when this call
	// starts the server; they override the defaults, which suit tests (no
	// fsync). A server already running keeps its settings.
	Settings []string
	// Port names the unix socket, and is the TCP port if Settings give the
	// server listen_addresses. Default 5432.
	Port int
}

// Cluster is a running local server that this process is using.
type Cluster struct {
	dir      string
	binDir   string
	runAs    *syscall.Credential // nil when we are not root
	logger   *slog.Logger
	settings []string
	port     int
	inUse    *os.File // shared flock held while this process uses the cluster
}

// DefaultDir is where the cluster of the project around the working
// directory lives: $AUDITLOG_PGDIR if set; under /var/tmp when running as root
// (a checkout under /root is out of reach of an unprivileged user); otherwise
// in the user's cache directory. The path is keyed by the project root, so two
// checkouts get two clusters.
func DefaultDir() (string, error) {
	if d := os.Getenv("AUDITLOG_PGDIR"); d != "" {
		return filepath.Abs(d)
	}
	root, err := projectRoot()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(root))
	key := hex.EncodeToString(sum[:6])
	if os.Geteuid() == 0 {
		return filepath.Join("/var/tmp/auditlog-pg", key), nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache directory: %w", err)
	}
	return filepath.Join(cache, "auditlog", "pg-"+key), nil
}

// projectRoot is the nearest directory at or above the working directory
// holding a go.mod, or the working directory itself.
func projectRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return wd, nil
		}
	}
}

// Start initialises the cluster on first use, starts the server unless it is
// already running, and registers this process as one of its users.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c := &Cluster{dir: opts.Dir, logger: opts.Logger, settings: opts.Settings, port: cmp.Or(opts.Port, defaultPort)}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.dir == "" {
		d, err := DefaultDir()
		if err != nil {
			return nil, err
		}
		c.dir = d
	}
	if len(c.dir)+len("/.s.PGSQL."+strconv.Itoa(c.port)) > maxSocketPath {
		return nil, fmt.Errorf("local PostgreSQL directory %s is too long for a unix socket path; set AUDITLOG_PGDIR to a shorter one", c.dir)
	}
	binDir, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	c.binDir = binDir
	if err := c.prepareDir(); err != nil {
		return nil, err
	}

	unlock, err := c.lock("start.lock", syscall.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if _, err := os.Stat(filepath.Join(c.dataDir(), "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := c.initdb(ctx); err != nil {
			return nil, err
		}
	}
	if !c.Running(ctx) {
		c.logger.Info("starting local PostgreSQL", "dir", c.dir)
		// Trust authentication on the socket: only its owner (and root) may
		// reach it, not every local user.
		args := []string{"start", "-w", "-t", "60", "-l", filepath.Join(c.dir, "server.log"), "-o", "-c unix_socket_permissions=0700"}
		for _, s := range slices.Concat(startSettings, c.settings, []string{"port=" + strconv.Itoa(c.port)}) {
			args = append(args, "-o", "-c "+s)
		}
		if err := c.pgctl(ctx, args...); err != nil {
			return nil, fmt.Errorf("start local PostgreSQL (log: %s): %w", filepath.Join(c.dir, "server.log"), err)
		}
	}
	f, err := os.OpenFile(filepath.Join(c.dir, "inuse.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	c.inUse = f
	return c, nil
}

// Dir is the directory holding the cluster; its unix socket is in it too.
func (c *Cluster) Dir() string { return c.dir }

// URL is a connection URL for database db as the superuser, over the unix
// socket.
func (c *Cluster) URL(db string) string {
	q := url.Values{"host": {c.dir}, "port": {strconv.Itoa(c.port)}, "sslmode": {"disable"}}
	return (&url.URL{Scheme: "postgres", User: url.User(Superuser), Path: "/" + db, RawQuery: q.Encode()}).String()
}

// Close ends this process's use of the cluster and stops the server if no
// other process is using it.
func (c *Cluster) Close(ctx context.Context) error {
	if c.inUse == nil {
		return nil
	}
	unlock, err := c.lock("start.lock", syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	c.inUse.Close() // releases our shared lock
	c.inUse = nil

	last, err := c.lock("inuse.lock", syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		c.logger.Info("local PostgreSQL left running for its other users", "dir", c.dir)
		return nil
	}
	if err != nil {
		return err
	}
	defer last()
	return c.Stop(ctx)
}

// Stop stops the server now, whoever else is using it.
func (c *Cluster) Stop(ctx context.Context) error {
	if !c.Running(ctx) {
		return nil
	}
	c.logger.Info("stopping local PostgreSQL", "dir", c.dir)
	if err := c.pgctl(ctx, "stop", "-w", "-m", "fast"); err != nil {
		return fmt.Errorf("stop local PostgreSQL: %w", err)
	}
	return nil
}

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }

// prepareDir creates the cluster directory and, as root, picks the user the
// server runs as and hands the directory to it.
func (c *Cluster) prepareDir() error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", c.dir, err)
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := serverUser()
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	c.runAs = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	// Every directory above must be passable by that user.
	for d := filepath.Dir(c.dir); d != "/"; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("local PostgreSQL runs as user %s, who cannot enter %s; set AUDITLOG_PGDIR to a directory under /var/tmp", u.Username, d)
		}
	}
	if err := os.Chown(c.dir, uid, gid); err != nil {
		return fmt.Errorf("hand %s to user %s: %w", c.dir, u.Username, err)
	}
	return nil
}

// serverUser is the unprivileged account the server runs as when we are
// root: postgres (made by every distribution's package), else a system user
// of our own, made on first use.
func serverUser() (*user.User, error) {
	for _, name := range []string{"postgres", "auditlog-pg"} {
		if u, err := user.Lookup(name); err == nil {
			return u, nil
		}
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "auditlog-pg").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and no postgres user exists; creating user auditlog-pg failed: %v: %s", err, bytes.TrimSpace(out))
	}
	return user.Lookup("auditlog-pg")
}

// initdb makes the cluster, which has no PG_VERSION yet, in a directory
// aside and moves it into place once configured: an initdb cut short (a
// Ctrl-C on the first run) leaves nothing a later Start takes for a cluster.
func (c *Cluster) initdb(ctx context.Context) error {
	c.logger.Info("initialising local PostgreSQL cluster", "dir", c.dir, "bin", c.binDir)
	tmp := c.dataDir() + ".init"
	for _, d := range []string{tmp, c.dataDir()} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove an unfinished cluster: %w", err)
		}
	}
	cmd := c.command(ctx, "initdb", "-D", tmp, "-U", Superuser, "-A", "trust",
		"-E", "UTF8", "--no-locale", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %v: %s", tmp, err, bytes.TrimSpace(out))
	}
	conf := append([]string{"", "# auditlog local cluster"}, settings...)
	conf = append(conf, "unix_socket_directories = '"+c.dir+"'", "")
	f, err := os.OpenFile(filepath.Join(tmp, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, strings.Join(conf, "\n")); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, c.dataDir())
}

// Running reports whether the server is up, whoever started it; after Close,
// it tells whether another user kept it running.
func (c *Cluster) Running(ctx context.Context) bool {
	return c.command(ctx, "pg_ctl", "status", "-D", c.dataDir()).Run() == nil
}

func (c *Cluster) pgctl(ctx context.Context, args ...string) error {
	cmd := c.command(ctx, "pg_ctl", append([]string{"-D", c.dataDir()}, args...)...)
	// pg_ctl keeps the server's output pipe open when given one; a file does not block.
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", args[0], err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// command runs a PostgreSQL binary as the server's user, in a process group
// of its own so a Ctrl-C in the terminal does not reach the server.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.runAs}
	return cmd
}

// lock takes a flock on a file in the cluster directory and returns its release.
func (c *Cluster) lock(name string, how int) (func(), error) {
	f, err := os.OpenFile(filepath.Join(c.dir, name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}
