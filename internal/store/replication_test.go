package store

import (
	"testing"
	"time"
)

// TestReplayLagIsUnknownBeforeAnyReplayedTransaction: a standby that is not
// caught up and has replayed no transaction since it started (restarted
// while its primary is down) has no known lag, not a lag of zero; one that
// streams and has replayed all it received has none; otherwise the lag is
// the time since the last replayed commit, never below zero.
func TestReplayLagIsUnknownBeforeAnyReplayedTransaction(t *testing.T) {
	t.Parallel()
	secs := func(f float64) *float64 { return &f }
	for _, c := range []struct {
		name                string
		receiving, caughtUp bool
		sinceCommit         *float64
		want                *time.Duration
	}{
		{"no primary, nothing replayed", false, true, nil, nil},
		{"receiving, behind, nothing replayed", true, false, nil, nil},
		{"streaming, caught up, nothing replayed", true, true, nil, new(time.Duration)},
		{"streaming, caught up, idle primary", true, true, secs(3600), new(time.Duration)},
		{"no primary, last commit an hour ago", false, true, secs(3600), ptr(time.Hour)},
		{"receiving, replay behind", true, false, secs(2.5), ptr(2500 * time.Millisecond)},
		{"primary's clock ahead", true, false, secs(-1), new(time.Duration)},
	} {
		got := replayLag(c.receiving, c.caughtUp, c.sinceCommit)
		if (got == nil) != (c.want == nil) || got != nil && *got != *c.want {
			t.Errorf("%s: lag %v, want %v", c.name, fmtLag(got), fmtLag(c.want))
		}
	}
}

func ptr(d time.Duration) *time.Duration { return &d }

func fmtLag(d *time.Duration) string {
	if d == nil {
		return "unknown"
	}
	return d.String()
}
