package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/testdb"
)

func TestMain(m *testing.M) {
	if os.Getenv(asAuditlog) != "" {
		main() // exits
	}
	testdb.Main(m)
}

// testEnv is an env whose output the test can read.
func testEnv(t *testing.T) (env, *bytes.Buffer) {
	var out bytes.Buffer
	return env{stdout: &out, stderr: io.Discard, logger: slog.New(slog.DiscardHandler)}, &out
}

func TestMigrateCommandSaysWhatItApplied(t *testing.T) {
	t.Parallel()
	url := testdb.NewEmpty(t)
	ctx := context.Background()

	e, out := testEnv(t)
	if err := run(ctx, []string{"migrate", "--database-url", url}, e.stdout, e.stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "applied migration 001_roles.sql") {
		t.Fatalf("first run did not list its migrations:\n%s", out)
	}
	out.Reset()
	if err := run(ctx, []string{"migrate", "--database-url", url}, e.stdout, e.stderr); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "applied migration") || !strings.Contains(out.String(), "already at version") {
		t.Fatalf("second run should apply nothing:\n%s", out)
	}
}

func TestMigrateUnreachableDatabase(t *testing.T) {
	t.Parallel()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	e, _ := testEnv(t)
	err := run(context.Background(), []string{"migrate", "--database-url", "postgres://u@" + addr + "/db"}, e.stdout, e.stderr)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("want an error naming %s, got %v", addr, err)
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"frobnicate"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Fatalf("got %v", err)
	}
}

// Every command's -h prints its usage and ends the process with status 0;
// no command at all is a misuse (2).
func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	var help [][]string
	for _, c := range commands() {
		help = append(help, []string{c.name, "-h"})
	}
	help = append(help, []string{"-h"}, []string{"help"}, []string{"retention", "run", "-h"}, []string{"token", "create", "--help"})
	for _, args := range help {
		var stderr, status strings.Builder
		err := run(context.Background(), args, io.Discard, &stderr)
		if code := exitCode(err, &status); code != 0 || !strings.Contains(stderr.String(), "Usage: auditlog") || status.Len() != 0 {
			t.Errorf("%v: exit %d (%v, printed %q), usage %q", args, code, err, status.String(), stderr.String())
		}
	}
	if code := exitCode(run(context.Background(), nil, io.Discard, io.Discard), io.Discard); code != 2 {
		t.Errorf("no command: exit %d, want 2", code)
	}
}

// auditlog version names the module version, the revision and the Go release.
func TestVersion(t *testing.T) {
	t.Parallel()
	e, out := testEnv(t)
	if err := run(context.Background(), []string{"version"}, e.stdout, e.stderr); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "auditlog ") || !strings.Contains(got, "revision ") ||
		!strings.Contains(got, runtime.Version()) {
		t.Fatalf("printed %q", got)
	}
}

// TestServeHealthzAndShutdown serves on a free port: /healthz is 200 while
// the database answers and 503 once it is gone, and cancelling the context
// shuts the server down cleanly.
func TestServeHealthzAndShutdown(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	e, _ := testEnv(t)
	go func() {
		done <- serve(ctx, e, serveConfig{addr: "127.0.0.1:0", dbURL: url, seal: sealFlags{disabled: true},
			ready: func(a net.Addr) { addrc <- a }})
	}()
	var base string
	select {
	case a := <-addrc:
		base = fmt.Sprintf("http://%s", a)
	case err := <-done:
		t.Fatalf("serve ended early: %v", err)
	}

	if code := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz with the database up: %d", code)
	}

	// Take the database away: terminate the pool's connections and forbid new ones.
	admin, err := pgx.Connect(context.Background(), testdb.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	dbName := url[strings.LastIndex(url, "/")+1:]
	dbName, _, _ = strings.Cut(dbName, "?")
	for _, sql := range []string{
		"ALTER DATABASE " + dbName + " WITH ALLOW_CONNECTIONS false",
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + dbName + "'",
	} {
		if _, err := admin.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		admin, err := pgx.Connect(context.Background(), testdb.AdminURL(t))
		if err == nil {
			admin.Exec(context.Background(), "ALTER DATABASE "+dbName+" WITH ALLOW_CONNECTIONS true")
			admin.Close(context.Background())
		}
	})
	if code := get(t, base+"/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("healthz with the database gone: %d, want 503", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not shut down")
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
