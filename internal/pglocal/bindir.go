package pglocal

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// MinMajorVersion is the oldest PostgreSQL the schema supports.
const MinMajorVersion = 15

// ErrNoBinaries is returned when no PostgreSQL server binaries can be found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found (looked in $PG_BINDIR, PATH, " +
	"`pg_config --bindir`, /usr/lib/postgresql/*/bin and Homebrew); install them with " +
	"`apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql` (macOS), " +
	"or set PG_BINDIR to them; most tests may use a server you already run instead (TEST_DATABASE_URL)")

// FindBinDir returns the directory holding initdb, pg_ctl and postgres of
// version MinMajorVersion or newer, searching in the order a developer would
// expect: an explicit $PG_BINDIR, then PATH, pg_config, Debian's versioned
// directories (newest first) and Homebrew's.
func FindBinDir() (string, error) {
	return findBinDir(candidateBinDirs())
}

func findBinDir(candidates []string) (string, error) {
	var tooOld []string
	for _, dir := range candidates {
		if !hasServerBinaries(dir) {
			continue
		}
		major, err := majorVersion(dir)
		if err != nil {
			continue
		}
		if major < MinMajorVersion {
			tooOld = append(tooOld, fmt.Sprintf("%s (PostgreSQL %d)", dir, major))
			continue
		}
		return dir, nil
	}
	if len(tooOld) > 0 {
		return "", fmt.Errorf("PostgreSQL %d or newer is required, found only %s; %w",
			MinMajorVersion, strings.Join(tooOld, ", "), ErrNoBinaries)
	}
	return "", ErrNoBinaries
}

func candidateBinDirs() []string {
	var dirs []string
	if d := os.Getenv("PG_BINDIR"); d != "" {
		dirs = append(dirs, d)
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			p = resolved
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	dirs = append(dirs, newestFirst("/usr/lib/postgresql/*/bin")...)
	dirs = append(dirs, newestFirst("/opt/homebrew/opt/postgresql@*/bin")...)
	dirs = append(dirs, newestFirst("/usr/local/opt/postgresql@*/bin")...)
	dirs = append(dirs, "/opt/homebrew/opt/postgresql/bin", "/usr/local/opt/postgresql/bin",
		"/Applications/Postgres.app/Contents/Versions/latest/bin")
	return dirs
}

var versionInPath = regexp.MustCompile(`(\d+)(?:\.\d+)?`)

// newestFirst globs pattern and orders the matches by the version number in
// their path, highest first, so PostgreSQL 17 is preferred over 15.
func newestFirst(pattern string) []string {
	matches, _ := filepath.Glob(pattern)
	return sortedByVersion(matches)
}

func sortedByVersion(paths []string) []string {
	version := func(p string) int {
		all := versionInPath.FindAllStringSubmatch(p, -1)
		if len(all) == 0 {
			return 0
		}
		n, _ := strconv.Atoi(all[len(all)-1][1])
		return n
	}
	slices.SortFunc(paths, func(a, b string) int { return version(b) - version(a) })
	return paths
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

var serverVersion = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

func majorVersion(dir string) (int, error) {
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return 0, err
	}
	m := serverVersion.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("unrecognised version %q", out)
	}
	return strconv.Atoi(string(m[1]))
}
