package scripts_test

import (
	"cmp"
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
	pgAt      string   // its directory under the root, if not usr/lib/postgresql/<pgHave>/bin
	pgLink    bool     // PATH has a symlink to its pg_ctl, as Homebrew and Nix make
	chromium  bool     // chromium is on PATH
	env       []string // more environment; {root} stands for the machine's root
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
		// apt-cache speaks the locale's language, as apt does.
		fake(t, filepath.Join(bin, "apt-cache"), `case $2 in postgresql) v='`+m.pgCand+`' ;; *) v=1.0 ;; esac
case ${LC_ALL:-${LC_MESSAGES:-${LANG:-C}}} in
C|C.*|POSIX) echo "$2:"; echo "  Installed: (none)"; echo "  Candidate: $v" ;;
*) echo "$2:"; echo "  Installiert:           (keine)"; echo "  Installationskandidat: $v" ;;
esac`)
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
		pg := filepath.Join(root, cmp.Or(m.pgAt, filepath.Join("usr", "lib", "postgresql", m.pgHave, "bin")))
		fake(t, filepath.Join(pg, "postgres"), "echo 'postgres (PostgreSQL) "+m.pgHave+".4 (Debian)'")
		fake(t, filepath.Join(pg, "initdb"), "")
		fake(t, filepath.Join(pg, "pg_ctl"), "")
		if m.pgLink {
			if err := os.Symlink(filepath.Join(pg, "pg_ctl"), filepath.Join(bin, "pg_ctl")); err != nil {
				t.Fatal(err)
			}
			// The script follows the link with readlink, where there is one.
			if rl, err := exec.LookPath("readlink"); err == nil {
				if err := os.Symlink(rl, filepath.Join(bin, "readlink")); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cmd := exec.Command("./install-deps.sh", args...)
	cmd.Env = []string{"PATH=" + bin, "AUDITLOG_DEPS_ROOT=" + root, "TMPDIR=" + dir}
	for _, e := range m.env {
		cmd.Env = append(cmd.Env, strings.ReplaceAll(e, "{root}", root))
	}
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
// the command elsewhere; it installs only what is missing, says so first,
// and names only what is missing.
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
		stderr string // all of stderr
		calls  string // every package manager call
	}{
		{name: "all there: silent", m: machine{os: "Linux", uid: "0", debian: true, apt: true, pgHave: "15", chromium: true},
			args: []string{"postgresql", "chromium"}},
		{name: "Debian as root installs what is missing", m: debianRoot, args: []string{"postgresql", "chromium"},
			stdout: "installing postgresql chromium with apt-get (missing; the first time takes a minute or two) ...\n",
			calls:  "apt-get update\napt-get install -y postgresql chromium\n"},
		{name: "apt speaking German", m: debianRoot, args: []string{"postgresql"}, env: []string{"LANG=de_DE.UTF-8"},
			stdout: "installing postgresql with apt-get (missing; the first time takes a minute or two) ...\n",
			calls:  "apt-get update\napt-get install -y postgresql\n"},
		{name: "only the browser missing", m: machine{os: "Linux", uid: "0", debian: true, apt: true, pgHave: "17"},
			args:   []string{"postgresql", "chromium"},
			stdout: "installing chromium with apt-get (missing; the first time takes a minute or two) ...\n",
			calls:  "apt-get update\napt-get install -y chromium\n"},
		{name: "PostgreSQL 14 is too old", m: machine{os: "Linux", uid: "0", debian: true, apt: true, pgHave: "14", pgCand: "14+238", chromium: true},
			args: []string{"postgresql"}, code: 1,
			stdout: "installing postgresql with apt-get (missing; the first time takes a minute or two) ...\n",
			stderr: "install-deps: apt offers PostgreSQL 14+238 here, 15 or newer is needed: add the PostgreSQL apt repository (https://wiki.postgresql.org/wiki/Apt), then run: apt-get install -y postgresql-15\n",
			calls:  "apt-get update\n"},
		{name: "Debian not root names the command", m: debianUser, args: []string{"postgresql"}, code: 1,
			stderr: "install-deps: missing postgresql; run: sudo apt-get install -y postgresql\n"},
		{name: "Debian not root, apt's PostgreSQL too old", m: machine{os: "Linux", uid: "1000", debian: true, apt: true, pgCand: "14+238"},
			args: []string{"postgresql", "chromium"}, code: 1,
			stderr: "install-deps: apt offers PostgreSQL 14+238 here, 15 or newer is needed: add the PostgreSQL apt repository (https://wiki.postgresql.org/wiki/Apt), then run: sudo apt-get install -y postgresql-15\n"},
		{name: "no browser, not root: tests skip", m: debianUser, args: []string{"chromium"},
			stderr: "install-deps: no Chromium found, so the browser tests will be skipped; to run them, run: sudo apt-get install -y chromium\n"},
		{name: "no browser where CI requires one", m: debianUser, args: []string{"chromium"}, code: 1,
			env:    []string{"AUDITLOG_REQUIRE_BROWSER=1"},
			stderr: "install-deps: missing chromium; run: sudo apt-get install -y chromium\n"},
		{name: "macOS with Homebrew", m: mac, args: []string{"postgresql", "chromium"},
			stdout: "installing postgresql chromium with Homebrew ...\n",
			calls:  "brew install postgresql@15\nbrew install --cask google-chrome\n"},
		{name: "macOS without Homebrew", m: machine{os: "Darwin", uid: "501"}, args: []string{"postgresql", "chromium"}, code: 1,
			stderr: "install-deps: missing postgresql chromium; install Homebrew (https://brew.sh), then run: brew install postgresql@15 && brew install --cask google-chrome\n"},
		{name: "macOS without Homebrew, make run", m: machine{os: "Darwin", uid: "501"}, args: []string{"postgresql"}, code: 1,
			stderr: "install-deps: missing postgresql; install Homebrew (https://brew.sh), then run: brew install postgresql@15\n"},
		{name: "another system", m: machine{os: "Linux", uid: "0", apt: true}, args: []string{"postgresql"}, code: 1,
			stderr: "install-deps: missing postgresql; install with your package manager: PostgreSQL 15 or newer's server binaries (or set PG_BINDIR to them)\n"},
		{name: "another system, no browser", m: machine{os: "Linux", uid: "1000", pgHave: "16"}, args: []string{"postgresql", "chromium"},
			stderr: "install-deps: no Chromium found, so the browser tests will be skipped; to run them, install with your package manager: Chromium or Chrome\n"},
		{name: "PG_BINDIR with a space in it", m: machine{os: "Linux", uid: "1000", debian: true, apt: true, pgHave: "16", pgAt: "opt/My Tools/bin"},
			args: []string{"postgresql"}, env: []string{"PG_BINDIR={root}/opt/My Tools/bin"}},
		{name: "pg_ctl linked onto PATH", m: machine{os: "Linux", uid: "1000", debian: true, apt: true, pgHave: "16", pgAt: "opt/pg16/bin", pgLink: true},
			args: []string{"postgresql"}},
		{name: "TEST_DATABASE_URL still needs the binaries", m: debianRoot, args: []string{"postgresql"},
			env:    []string{"TEST_DATABASE_URL=postgres://db.example/x"},
			stdout: "installing postgresql with apt-get (missing; the first time takes a minute or two) ...\n",
			calls:  "apt-get update\napt-get install -y postgresql\n"},
	} {
		m := c.m
		m.env = c.env
		got := m.run(t, c.args...)
		if got.code != c.code || got.stdout != c.stdout || got.stderr != c.stderr || got.calls != c.calls {
			t.Errorf("%s: exit %d (want %d)\nstdout: %q\nwant:   %q\nstderr: %q\nwant:   %q\ncalls: %q\nwant:  %q",
				c.name, got.code, c.code, got.stdout, c.stdout, got.stderr, c.stderr, got.calls, c.calls)
		}
	}
}
