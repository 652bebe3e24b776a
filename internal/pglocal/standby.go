package pglocal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// standbyPort names the standby's socket file, beside the primary's 5432.
const standbyPort = 5433

// Standby is a hot standby of a local cluster, streaming its WAL: a copy by
// pg_basebackup -R from the same binaries, its server a child of this
// process (killed with it where the system allows, see parentDeath).
type Standby struct {
	dir  string
	lock *os.File // held while the standby lives; a dir whose lock is free is stale
	cmd  *exec.Cmd
	done chan error
}

// StartStandby copies the running cluster into a directory of its own under
// the cluster's, by pg_basebackup -R, and starts it as a hot standby on a
// second port. It returns once the standby accepts read-only connections.
// Directories of standbys whose process ended without Close are removed
// first.
func (c *Cluster) StartStandby(ctx context.Context) (*Standby, error) {
	c.removeStaleStandbys()
	b := make([]byte, 4)
	rand.Read(b)
	s := &Standby{dir: filepath.Join(c.dir, "standby-"+hex.EncodeToString(b)), done: make(chan error, 1)}
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
	}
	if err != nil {
		os.RemoveAll(s.dir)
		return nil, fmt.Errorf("lock standby %s: %w", s.dir, err)
	}
	s.lock = lock
	if err := s.start(ctx, c); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Standby) start(ctx context.Context, c *Cluster) error {
	if c.runAs != nil {
		if err := os.Chown(s.dir, int(c.runAs.Uid), int(c.runAs.Gid)); err != nil {
			return err
		}
	}
	data := filepath.Join(s.dir, "data")
	backup := c.command(ctx, "pg_basebackup", "-D", data, "-R", "-X", "stream", "--checkpoint=fast",
		"--no-sync", "--no-manifest", "-h", c.dir, "-p", strconv.Itoa(c.port), "-U", Superuser)
	if out, err := backup.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_basebackup of %s: %v: %s", c.dir, err, bytes.TrimSpace(out))
	}
	// The copy's postgresql.conf names the primary's socket directory and
	// port; the settings the primary was started with must be matched too
	// (a standby refuses fewer max_wal_senders than its primary).
	args := []string{"-D", data, "-c", "port=" + strconv.Itoa(standbyPort), "-c", "unix_socket_directories=" + s.dir,
		"-c", "unix_socket_permissions=0700", "-c", "listen_addresses=", "-c", "hot_standby=on"}
	for _, set := range append(slices.Clip(startSettings), c.settings...) {
		args = append(args, "-c", set)
	}
	log, err := os.Create(filepath.Join(s.dir, "server.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	s.cmd = exec.Command(filepath.Join(c.binDir, "postgres"), args...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.runAs}
	parentDeath(s.cmd.SysProcAttr)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start standby: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	return s.waitReady(ctx)
}

// waitReady waits until the postmaster says it accepts connections, as
// pg_ctl -w does: the status line of postmaster.pid.
func (s *Standby) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	pidFile := filepath.Join(s.dir, "data", "postmaster.pid")
	for {
		if b, err := os.ReadFile(pidFile); err == nil {
			lines := strings.Split(string(b), "\n")
			if len(lines) > 7 && slices.Contains([]string{"ready", "standby"}, strings.TrimSpace(lines[7])) {
				return nil
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("standby exited (%v): %s", err, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("standby not ready: %w: %s", ctx.Err(), s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Standby) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(bytes.TrimSpace(b[max(0, len(b)-2000):]))
}

// URL is a connection URL for database db on the standby as the superuser.
func (s *Standby) URL(db string) string {
	q := url.Values{"host": {s.dir}, "port": {strconv.Itoa(standbyPort)}, "sslmode": {"disable"}}
	return (&url.URL{Scheme: "postgres", User: url.User(Superuser), Path: "/" + db, RawQuery: q.Encode()}).String()
}

// Close stops the standby (a fast shutdown) and removes its directory.
func (s *Standby) Close() error {
	var err error
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case err = <-s.done:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				err = fmt.Errorf("standby: %w: %s", err, s.logTail())
			}
		case <-time.After(time.Minute):
			s.cmd.Process.Kill()
			err = errors.New("standby did not stop within a minute; killed")
		}
	}
	s.lock.Close()
	return errors.Join(err, os.RemoveAll(s.dir))
}

// removeStaleStandbys removes the directories of standbys that no process
// holds the lock of: their process ended without Close.
func (c *Cluster) removeStaleStandbys() {
	dirs, _ := filepath.Glob(filepath.Join(c.dir, "standby-*"))
	for _, d := range dirs {
		f, err := os.Open(filepath.Join(d, "lock"))
		if err != nil {
			continue // being made: its lock comes first, so this is a moment
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			c.logger.Info("removing a standby left behind", "dir", d)
			os.RemoveAll(d)
		}
		f.Close()
	}
}
