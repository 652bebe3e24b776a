#!/bin/sh
# install-deps.sh NAME...: make sure what `make run` and `make test` need is
# installed, installing what is missing when this machine allows it.
#
#   postgresql  PostgreSQL 15 or newer's server binaries (initdb, pg_ctl,
#               postgres), looked for where internal/pglocal/bindir.go looks
#               (with TEST_DATABASE_URL too: the dev and pglocal tests start
#               clusters of their own).
#   chromium    a Chromium or Chrome for the Activity page's browser tests;
#               without one they are skipped, unless AUDITLOG_REQUIRE_BROWSER
#               is set (CI), when a missing browser is an error.
#
# Silent when everything is there. Otherwise, as root on Debian/Ubuntu it
# installs with apt-get, and on macOS with Homebrew, saying so in one line
# first; anywhere else it names the command to run and fails.
#
# Commands are found on PATH and files under $AUDITLOG_DEPS_ROOT (default /),
# so a test can stand in for apt-get, brew, id and uname and for the files.
set -u
root=${AUDITLOG_DEPS_ROOT:-}
log=${TMPDIR:-/tmp}/auditlog-install-deps.log

# pg_ok DIR: DIR holds the server binaries of PostgreSQL 15 or newer.
pg_ok() {
	[ -f "$1/initdb" ] && [ -f "$1/pg_ctl" ] && [ -f "$1/postgres" ] || return 1
	v=$("$1/postgres" --version 2>/dev/null) || return 1
	v=${v#*) }
	v=${v%%[!0-9]*}
	[ -n "$v" ] && [ "$v" -ge 15 ]
}

# Each directory is checked as it is found, never split on spaces.
have_postgresql() {
	[ -n "${PG_BINDIR:-}" ] && pg_ok "$PG_BINDIR" && return 0
	if p=$(command -v pg_ctl); then
		# A pg_ctl linked onto PATH (Homebrew, Nix) stands for its target's
		# directory, as in bindir.go.
		p=$(readlink -f "$p" 2>/dev/null) || p=$(command -v pg_ctl)
		pg_ok "${p%/*}" && return 0
	fi
	p=$(pg_config --bindir 2>/dev/null) && pg_ok "$p" && return 0
	for d in "$root"/usr/lib/postgresql/*/bin "$root"/opt/homebrew/opt/postgresql*/bin \
		"$root"/usr/local/opt/postgresql*/bin "$root/Applications/Postgres.app/Contents/Versions/latest/bin"; do
		pg_ok "$d" && return 0
	done
	return 1
}

# The names api/activity_test.go looks for, and the macOS apps chromedp finds.
have_chromium() {
	for c in chromium chromium-browser google-chrome chrome; do
		command -v "$c" >/dev/null && return 0
	done
	for app in "Chromium.app/Contents/MacOS/Chromium" "Google Chrome.app/Contents/MacOS/Google Chrome"; do
		[ -x "$root/Applications/$app" ] && return 0
	done
	return 1
}

browser_required() { [ -n "${AUDITLOG_REQUIRE_BROWSER:-}" ]; }

# candidate PKG: the version apt would install, or nothing. apt translates
# the "Candidate:" it prints: ask in English.
candidate() {
	LC_ALL=C apt-cache policy "$1" 2>/dev/null | while read -r k v; do
		[ "$k" = Candidate: ] && [ "$v" != "(none)" ] && echo "$v"
	done
}

# quietly CMD...: runs CMD with its output in $log, shown only if it fails.
quietly() {
	if ! "$@" >"$log" 2>&1; then
		cat "$log" >&2
		echo "install-deps: '$*' failed (its output is above and in $log)" >&2
		exit 1
	fi
}

missing=
for dep in "$@"; do
	case $dep in
	postgresql) have_postgresql || missing="$missing postgresql" ;;
	chromium) have_chromium || missing="$missing chromium" ;;
	*) echo "install-deps: unknown dependency $dep" >&2; exit 2 ;;
	esac
done
[ -z "$missing" ] && exit 0
missing=${missing# }

# pg_offered SUDO: fails, saying what to do, when postgresql is missing and
# apt offers one older than 15 (the advice would install it again and again);
# SUDO goes before the command.
pg_offered() {
	case " $missing " in *" postgresql "*) ;; *) return 0 ;; esac
	v=$(candidate postgresql)
	if [ "${v%%[!0-9]*}" -lt 15 ] 2>/dev/null; then
		echo "install-deps: apt offers PostgreSQL $v here, 15 or newer is needed: add the PostgreSQL apt repository (https://wiki.postgresql.org/wiki/Apt), then run: ${1}apt-get install -y postgresql-15" >&2
		exit 1
	fi
}

# brew_install DEP: the Homebrew command that installs DEP.
brew_install() {
	case $1 in
	postgresql) echo "brew install postgresql@15" ;;
	chromium) echo "brew install --cask google-chrome" ;;
	esac
}

# The advice names what is missing only.
os=$(uname -s)
if [ "$os" = Linux ] && [ -f "$root/etc/debian_version" ] && command -v apt-get >/dev/null; then
	if [ "$(id -u)" = 0 ]; then
		how=apt
	else
		pg_offered "sudo "
		how="run: sudo apt-get install -y $missing"
	fi
elif [ "$os" = Darwin ] && command -v brew >/dev/null; then
	how=brew
elif [ "$os" = Darwin ]; then
	how="install Homebrew (https://brew.sh), then run:"
	sep=
	for dep in $missing; do
		how="$how$sep $(brew_install "$dep")"
		sep=" &&"
	done
else
	how="install with your package manager:"
	sep=
	for dep in $missing; do
		case $dep in
		postgresql) what="PostgreSQL 15 or newer's server binaries (or set PG_BINDIR to them)" ;;
		chromium) what="Chromium or Chrome" ;;
		esac
		how="$how$sep $what"
		sep=" and"
	done
fi

case $how in
apt)
	echo "installing $missing with apt-get (missing; the first time takes a minute or two) ..."
	export DEBIAN_FRONTEND=noninteractive
	quietly apt-get update
	pg_offered ""
	pkgs=
	for dep in $missing; do
		v=$(candidate "$dep")
		if [ -n "$v" ]; then
			pkgs="$pkgs $dep"
		elif [ "$dep" = chromium ] && ! browser_required; then
			echo "install-deps: apt has no chromium package here; the browser tests will be skipped" >&2
		else
			echo "install-deps: apt has no $dep package here; install it another way" >&2
			exit 1
		fi
	done
	if [ -n "$pkgs" ]; then quietly apt-get install -y $pkgs; fi
	;;
brew)
	echo "installing $missing with Homebrew ..."
	for dep in $missing; do
		# Word splitting makes the command of brew_install's line.
		quietly $(brew_install "$dep")
	done
	;;
*)
	if [ "$missing" = chromium ] && ! browser_required; then
		echo "install-deps: no Chromium found, so the browser tests will be skipped; to run them, $how" >&2
		exit 0
	fi
	echo "install-deps: missing $missing; $how" >&2
	exit 1
	;;
esac
