package main

import (
	"os"
	"testing"
	"time"
)

// The lag counts events committed and sealed while the sealer ran, not its
// backlog: an event written while it was stopped waited for the restart,
// which says nothing of the lag.
func TestSealLagCountsOnlyWhileRunning(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ran := []span{{at(10), at(20)}, {at(30), at(40)}}
	for _, c := range []struct {
		committed, sealed float64
		want              bool
	}{
		{12, 12.05, true},
		{31, 39, true},
		{21, 30.5, false},   // written while stopped: the backlog
		{19.9, 30.2, false}, // not sealed before the stop
		{5, 10.5, false},    // before the first start
	} {
		if got := whileRunning(at(c.committed), at(c.sealed), ran); got != c.want {
			t.Errorf("committed at %vs, sealed at %vs: counted %v, want %v", c.committed, c.sealed, got, c.want)
		}
	}
}

// The CPU time read from /proc for the server's processes is the time the
// process spent: this process's, compared with getrusage.
func TestProcCPUReadsAProcess(t *testing.T) {
	t.Parallel()
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
	}
	got, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if want := processCPU(); got < 100*time.Millisecond || got > want+50*time.Millisecond || got < want-100*time.Millisecond {
		t.Errorf("procCPU: %s, getrusage: %s", got, want)
	}
}
