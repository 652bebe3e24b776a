package scripts_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// machine is what install-deps.sh sees: which commands exist (fakes that
// record their calls), who runs it, and which files are there.
type machine struct {
	os        string   // what uname -s prints
	uid       string   // what id -u prints
	debian    bool     // /etc/debian_version exists
	apt, brew bool     // apt-get and apt-cache, brew are on PATH
	pgCand    string   // the postgresql version apt-cache offers
	pgHave    string   // major version of the PostgreSQL installed, "" for none
	chromium  bool     // chromium is on PATH
	env       []string // more environment
}

type outcome struct {
	code   int
	stdout string
	stderr string
	calls  string // the fake apt-get and brew calls, one a line
}

// fake writes an executable shell script.
func fake(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// run runs install-deps.sh with args on machine m, with nothing of this
// machine's own on PATH, so no real package manager runs.
func (m machine) run(t *testing.T, args ...string) outcome {
	t.Helper()
	dir := t.TempDir()
	bin, root, calls := filepath.Join(dir, "bin"), filepath.Join(dir, "root"), filepath.Join(dir, "calls")
	fake(t, filepath.Join(bin, "uname"), "echo "+m.os)
	fake(t, filepath.Join(bin, "id"), "echo "+m.uid)
	if m.apt {
		fake(t, filepath.Join(bin, "apt-get"), `echo "apt-get $*" >>`+calls)
		fake(t, filepath.Join(bin, "apt-cache"), `case $2 in postgresql) v='`+m.pgCand+`' ;; *) v=1.0 ;; esac
echo "$2:"; echo "  Installed: (none)"; echo "  Candidate: $v"`)
	}
	if m.brew {
		fake(t, filepath.Join(bin, "brew"), `echo "brew $*" >>`+calls)
	}
	if m.chromium {
		fake(t, filepath.Join(bin, "chromium"), "")
	}
	if m.debian {
		fake(t, filepath.Join(root, "etc", "debian_version"), "")
	}
	if m.pgHave != "" {
		pg := filepath.Join(root, "usr", "lib", "postgresql", m.pgHave, "bin")
		fake(t, filepath.Join(pg, "postgres"), "echo 'postgres (PostgreSQL) "+m.pgHave+".4 (Debian)'")
		fake(t, filepath.Join(pg, "initdb"), "")
		fake(t, filepath.Join(pg, "pg_ctl"), "")
	}
	cmd := exec.Command("./install-deps.sh", args...)
	cmd.Env = append([]string{"PATH=" + bin, "AUDITLOG_DEPS_ROOT=" + root, "TMPDIR=" + dir}, m.env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(calls)
	return outcome{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(), calls: string(b)}
}

// TestInstallDepsDecides covers each way install-deps.sh can decide: nothing
// to do, apt-get as root on Debian, Homebrew on macOS, and the error naming
// the command elsewhere; it installs only what is missing, and says so first.
func TestInstallDepsDecides(t *testing.T) {
	t.Parallel()
	debianRoot := machine{os: "Linux", uid: "0", debian: true, apt: true, pgCand: "15+248"}
	debianUser := debianRoot
	debianUser.uid = "1000"
	mac := machine{os: "Darwin", uid: "501", brew: true}
	for _, c := range []struct {
		name   string
		m      machine
		env    []string // added to the environment
		args   []string
		code   int
		stdout string // all of stdout
		stderr string // a part of stderr
		calls  string // every package manager call
	}{
		{name: "all there: silent", m: machine{os: "Linux", uid: "0", debian: true, apt: true, pgHave: "15", chromium: true},
			args: []string{"postgresql", "chromium"}},
		{name: "Debian as root installs what is missing", m: debianRoot, args: []string{"postgresql", "chromium"},
			stdout: "installing postgresql chromium with apt-get (missing; the first time takes a minute or two) ...\n",
			calls:  "apt-get update\napt-get install -y postgresql chromium\n"},
		{name: "only the browser missing", m: machine{os: "Linux", uid: "0", debian: true, apt: true, pgHave: "17"},
			args:   []string{"postgresql", "chromium"},
			stdout: "installing chromium with apt-get (missing; the first time takes a minute or two) ...\n",
			calls:  "apt-get update\napt-get install -y chromium\n"},
		{name: "PostgreSQL 14 is too old", m: machine{os: "Linux", uid: "0", debian: true, apt: true, pgHave: "14", pgCand: "14+238", chromium: true},
			args: []string{"postgresql"}, code: 1,
			stdout: "installing postgresql with apt-get (missing; the first time takes a minute or two) ...\n",
			stderr: "apt offers PostgreSQL 14+238 here, 15 or newer is needed", calls: "apt-get update\n"},
		{name: "Debian not root names the command", m: debianUser, args: []string{"postgresql"}, code: 1,
			stderr: "missing postgresql; run: sudo apt-get install -y postgresql"},
		{name: "no browser, not root: tests skip", m: debianUser, args: []string{"chromium"},
			stderr: "the browser tests will be skipped; to run them, run: sudo apt-get install -y chromium"},
		{name: "no browser where CI requires one", m: debianUser, args: []string{"chromium"}, code: 1,
			env:    []string{"AUDITLOG_REQUIRE_BROWSER=1"},
			stderr: "missing chromium; run: sudo apt-get install -y chromium"},
		{name: "macOS with Homebrew", m: mac, args: []string{"postgresql", "chromium"},
			stdout: "installing postgresql chromium with Homebrew ...\n",
			calls:  "brew install postgresql@15\nbrew install --cask google-chrome\n"},
		{name: "macOS without Homebrew", m: machine{os: "Darwin", uid: "501"}, args: []string{"postgresql"}, code: 1,
			stderr: "install Homebrew (https://brew.sh), then run: brew install postgresql@15"},
		{name: "another system", m: machine{os: "Linux", uid: "0", apt: true}, args: []string{"postgresql"}, code: 1,
			stderr: "missing postgresql; install them with your package manager"},
		{name: "TEST_DATABASE_URL needs no PostgreSQL", m: debianRoot, args: []string{"postgresql"},
			env: []string{"TEST_DATABASE_URL=postgres://db.example/x"}},
	} {
		m := c.m
		m.env = c.env
		got := m.run(t, c.args...)
		if got.code != c.code || got.stdout != c.stdout || !strings.Contains(got.stderr, c.stderr) || got.calls != c.calls {
			t.Errorf("%s: exit %d (want %d)\nstdout: %q\nwant:   %q\nstderr: %q\nwant a part: %q\ncalls: %q\nwant:  %q",
				c.name, got.code, c.code, got.stdout, c.stdout, got.stderr, c.stderr, got.calls, c.calls)
		}
	}
}
