package pglocal

import (
	"errors"
	"strings"
	"testing"
)

func TestFindBinDirExplainsHowToInstall(t *testing.T) {
	_, err := findBinDir([]string{t.TempDir(), "/nonexistent"})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("got %v, want ErrNoBinaries", err)
	}
	for _, want := range []string{"apt-get install postgresql", "brew install postgresql", "PG_BINDIR", "(TEST_DATABASE_URL)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Neither dev nor the tests read DATABASE_URL.
	if strings.Contains(err.Error(), "set DATABASE_URL") {
		t.Errorf("error %q points at DATABASE_URL", err)
	}
}

func TestFindBinDirFindsThisMachines(t *testing.T) {
	dir, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	if major, err := majorVersion(dir); err != nil || major < MinMajorVersion {
		t.Fatalf("%s: version %d, %v", dir, major, err)
	}
}

func TestNewestFirst(t *testing.T) {
	got := sortedByVersion([]string{"/usr/lib/postgresql/9/bin", "/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/15/bin"})
	want := []string{"/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/9/bin"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v, want %v", got, want)
	}
}
