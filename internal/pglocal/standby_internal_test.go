package pglocal

import (
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A standby directory whose lock no process holds (its test process died
// without Close) is removed before the next standby is made; one whose lock
// is held, or that has no lock yet (being made), is left alone.
func TestStaleStandbysAreRemoved(t *testing.T) {
	c := &Cluster{dir: t.TempDir(), logger: slog.New(slog.DiscardHandler)}
	dir := func(name string, lock bool) string {
		d := filepath.Join(c.dir, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if lock {
			if err := os.WriteFile(filepath.Join(d, "lock"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	stale, live, making := dir("standby-dead", true), dir("standby-live", true), dir("standby-new", false)
	held, err := os.Open(filepath.Join(live, "lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	c.removeStaleStandbys()
	for d, want := range map[string]bool{stale: false, live: true, making: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(d), err == nil, want)
		}
	}
}
