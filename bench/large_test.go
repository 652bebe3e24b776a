package main

import (
	"math"
	"testing"
)

// TestDiskNeed checks roomFor's arithmetic: what a load needs, and that the
// scale it names as fitting does fit.
func TestDiskNeed(t *testing.T) {
	var events float64
	for _, l := range largeLoads {
		events += float64(l.events)
	}
	const gib = 1 << 30
	// The 50M run measured 47 GB (pg_size_pretty's: GiB) when loaded and
	// sealed; the sort that seals the load spills about 50 bytes an event
	// more while the seals are written.
	if perEvent := 47.0 * gib / 50e6; bytesPerEvent < perEvent+50 {
		t.Errorf("bytesPerEvent is %d, below the %.0f bytes an event measured at 50M and the sealing sort's files", bytesPerEvent, perEvent)
	}
	for _, c := range []struct {
		name             string
		scale, wal, free float64
		refused          bool
	}{
		// TestEveryBenchmarkRuns' scale: 50,000 events, a few tens of MB,
		// whatever max_wal_size is; the load cannot leave more WAL than it
		// writes.
		{"tiny scale, small disk, large max_wal_size", 0.0005, 8 * gib, 1e9, false},
		{"tiny scale, CI's disk", 0.0005, 8 * gib, 76e9, false},
		{"tiny scale, default max_wal_size", 0.0005, 1 * gib, 76e9, false},
		{"100M on this machine", 1, 8 * gib, 80.4e9, true},
		{"50M on this machine", 0.5, 8 * gib, 80.4e9, false},
		{"no room for the WAL", 0.5, 8 * gib, 4e9, true},
		{"full disk", 0.5, 8 * gib, 0, true},
	} {
		need, fits := diskNeed(events, c.scale, c.wal, c.free)
		if refused := need > c.free; refused != c.refused {
			t.Errorf("%s: %.0f events need %.1f GB with %.1f GB free: refused %v, want %v",
				c.name, events*c.scale, need/1e9, c.free/1e9, refused, c.refused)
		}
		if fits < 0 || math.IsNaN(fits) || math.IsInf(fits, 0) {
			t.Errorf("%s: fits is %v", c.name, fits)
			continue
		}
		if c.free > 0 && fits == 0 {
			t.Errorf("%s: no scale fits %.1f GB free", c.name, c.free/1e9)
		}
		if n, _ := diskNeed(events, fits, c.wal, c.free); n > c.free*(1+1e-9) {
			t.Errorf("%s: the scale named as fitting, %.4f, needs %.1f GB with %.1f GB free", c.name, fits, n/1e9, c.free/1e9)
		}
	}
}
