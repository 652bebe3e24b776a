package chain_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/store"
)

// event is the i-th event of a test chain of org.
func event(i int) store.Event {
	return store.Event{
		ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), OrgID: org,
		OccurredAt: time.Date(2026, 12, 1, 0, 0, i, 0, time.UTC),
		Action:     "cluster.token_rotated", TargetType: "cluster", TargetID: ptr("c1"), ActorType: "system",
		Metadata: fmt.Appendf(nil, `{"i":%d}`, i),
	}
}

// links seals events from seq 1, the way the sealer does.
func links(t *testing.T, events ...store.Event) []chain.Link {
	t.Helper()
	return relink(t, chain.Genesis, 1, events)
}

// relink seals events from seq first after the link whose hash is prev: what
// a superuser who rewrites the chain from there computes.
func relink(t *testing.T, prev chain.Hash, first int64, events []store.Event) []chain.Link {
	t.Helper()
	var out []chain.Link
	for i, e := range events {
		c, err := chain.Canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		seq := first + int64(i)
		prev = chain.Next(prev, seq, c)
		out = append(out, chain.Link{Seq: seq, Hash: prev, Event: &e})
	}
	return out
}

func events(n int) []store.Event {
	var out []store.Event
	for i := 1; i <= n; i++ {
		out = append(out, event(i))
	}
	return out
}

var signedAt = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)

// checkpoint signs a checkpoint of kind at link l.
func checkpoint(key ed25519.PrivateKey, kind string, l chain.Link) chain.Checkpoint {
	c := chain.Checkpoint{Kind: kind, OrgID: org, Seq: l.Seq, Hash: l.Hash, SignedAt: signedAt}
	c.Sign(key)
	return c
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func keysOf(keys ...ed25519.PrivateKey) map[string]chain.Key {
	out := map[string]chain.Key{}
	for _, k := range keys {
		pub := k.Public().(ed25519.PublicKey)
		out[chain.KeyID(pub)] = chain.Key{Public: pub}
	}
	return out
}

// verifyLinks runs a verifier over links as `auditlog verify` does, and
// returns it with the first break (nil if none).
func verifyLinks(t *testing.T, partial bool, cps []chain.Checkpoint, ls []chain.Link, keys map[string]chain.Key) (*chain.Verifier, *chain.Break) {
	t.Helper()
	v := chain.NewVerifier(org, keys)
	v.Partial = partial
	for _, c := range cps {
		if err := v.AddCheckpoint(c); err != nil {
			t.Fatalf("add checkpoint: %v", err)
		}
	}
	for _, l := range ls {
		if err := v.Add(l); err != nil {
			return v, asBreak(t, err)
		}
	}
	if !partial {
		if err := v.FinishHead(); err != nil {
			return v, asBreak(t, err)
		}
	}
	return v, nil
}

func asBreak(t *testing.T, err error) *chain.Break {
	t.Helper()
	var b *chain.Break
	if !errors.As(err, &b) {
		t.Fatalf("got error %v, want a *chain.Break", err)
	}
	return b
}

func TestVerifier(t *testing.T) {
	key := newKey(t)
	six := links(t, events(6)...)
	for _, tc := range []struct {
		name    string
		partial bool
		// links and checkpoints from the intact chain of six events, six.
		links       func() []chain.Link
		checkpoints func() []chain.Checkpoint
		// A break at wantSeq (0: none), naming event(wantEvent) (0: no
		// event), with wantReason in its reason.
		wantSeq    int64
		wantEvent  int
		wantReason string
		// Without a break: links recomputed and taken as given.
		wantVerified, wantGiven int64
	}{
		{
			name:         "intact",
			links:        func() []chain.Link { return six },
			wantVerified: 6,
		},
		{
			name:  "intact, its head and a past day signed",
			links: func() []chain.Link { return six },
			checkpoints: func() []chain.Checkpoint {
				return []chain.Checkpoint{checkpoint(key, "day", six[2]), checkpoint(key, "day", six[5])}
			},
			wantVerified: 6,
		},
		{
			name: "metadata changed",
			links: func() []chain.Link {
				e := *six[2].Event
				e.Metadata = []byte(`{"i":33}`)
				return replace(six, 2, chain.Link{Seq: 3, Hash: six[2].Hash, Event: &e})
			},
			wantSeq: 3, wantEvent: 3, wantReason: "differs from what was sealed",
		},
		{
			name: "occurred_at moved by a microsecond",
			links: func() []chain.Link {
				e := *six[2].Event
				e.OccurredAt = e.OccurredAt.Add(time.Microsecond)
				return replace(six, 2, chain.Link{Seq: 3, Hash: six[2].Hash, Event: &e})
			},
			wantSeq: 3, wantEvent: 3, wantReason: "differs from what was sealed",
		},
		{
			name: "seal hash changed",
			links: func() []chain.Link {
				l := six[2]
				l.Hash[0] ^= 1
				return replace(six, 2, l)
			},
			wantSeq: 3, wantEvent: 3, wantReason: "differs from what was sealed",
		},
		{
			name:    "seal deleted",
			links:   func() []chain.Link { return cut(six, 2, 3) },
			wantSeq: 4, wantEvent: 4, wantReason: "seals 3 to 3 are missing",
		},
		{
			name: "two events swapped under their seals",
			links: func() []chain.Link {
				out := append([]chain.Link(nil), six...)
				out[1].Event, out[2].Event = six[2].Event, six[1].Event
				return out
			},
			wantSeq: 2, wantEvent: 3, wantReason: "differs from what was sealed",
		},
		{
			name: "two seals read out of order",
			links: func() []chain.Link {
				return []chain.Link{six[0], six[2], six[1], six[3], six[4], six[5]}
			},
			wantSeq: 3, wantEvent: 3, wantReason: "seals 2 to 2 are missing",
		},
		{
			name:    "a seal doubled",
			links:   func() []chain.Link { return append(append([]chain.Link(nil), six[:2]...), six[1:]...) },
			wantSeq: 2, wantEvent: 2, wantReason: "seq 2 follows seq 2",
		},
		{
			name: "an event inserted, the seals after it renumbered",
			links: func() []chain.Link {
				in := relink(t, six[2].Hash, 4, []store.Event{event(99)})
				out := append(append([]chain.Link(nil), six[:3]...), in...)
				for _, l := range six[3:] {
					out = append(out, chain.Link{Seq: l.Seq + 1, Hash: l.Hash, Event: l.Event})
				}
				return out
			},
			wantSeq: 5, wantEvent: 4, wantReason: "differs from what was sealed",
		},
		{
			name: "an event inserted and the chain after it recomputed, past a signed head",
			links: func() []chain.Link {
				evs := append([]store.Event{event(99)}, events(6)[3:]...)
				return append(append([]chain.Link(nil), six[:3]...), relink(t, six[2].Hash, 4, evs)...)
			},
			checkpoints: func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "day", six[5])} },
			wantSeq:     6, wantEvent: 5, wantReason: "differs from the checkpoint signed at 2026-12-02T00:00:00.000000Z",
		},
		{
			name: "an event changed and the chain after it recomputed, past a signed head",
			links: func() []chain.Link {
				evs := events(6)
				evs[2].Action = "cluster.created"
				return relink(t, chain.Genesis, 1, evs)
			},
			checkpoints: func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "day", six[4])} },
			wantSeq:     5, wantEvent: 5, wantReason: "differs from the checkpoint",
		},
		{
			name:    "the first seals deleted, with no removal checkpoint",
			links:   func() []chain.Link { return six[3:] },
			wantSeq: 4, wantEvent: 4, wantReason: "the chain starts at seq 4, and no signed removal checkpoint holds seq 3",
		},
		{
			name:         "the first seals removed by retention",
			links:        func() []chain.Link { return six[3:] },
			checkpoints:  func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "removal", six[2])} },
			wantVerified: 3,
		},
		{
			name:        "one more seal deleted after those retention removed",
			links:       func() []chain.Link { return six[4:] },
			checkpoints: func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "removal", six[2])} },
			wantSeq:     5, wantEvent: 5, wantReason: "no signed removal checkpoint holds seq 4",
		},
		{
			name: "the chain after a removal recomputed from another hash",
			links: func() []chain.Link {
				return relink(t, six[1].Hash, 4, events(6)[3:])
			},
			checkpoints: func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "removal", six[2])} },
			wantSeq:     4, wantEvent: 4, wantReason: "differs from what was sealed",
		},
		{
			name: "an event removed by retention, its seal kept",
			links: func() []chain.Link {
				return replace(six, 2, chain.Link{Seq: 3, Hash: six[2].Hash})
			},
			wantVerified: 5, wantGiven: 1,
		},
		{
			name: "a removed event's seal changed and the chain recomputed, past a signed head",
			links: func() []chain.Link {
				gone := six[2]
				gone.Hash[0] ^= 1
				gone.Event = nil
				return append(append(append([]chain.Link(nil), six[:2]...), gone), relink(t, gone.Hash, 4, events(6)[3:])...)
			},
			checkpoints: func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "day", six[5])} },
			wantSeq:     6, wantEvent: 6, wantReason: "differs from the checkpoint",
		},
		{
			name:        "the last seals deleted, the head signed",
			links:       func() []chain.Link { return six[:4] },
			checkpoints: func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "day", six[5])} },
			wantSeq:     5, wantReason: "seals 5 to 6 are missing: the chain ends at seq 4, but a checkpoint signed at 2026-12-02T00:00:00.000000Z holds seq 6",
		},
		{
			name:  "the last seals deleted, the head not signed yet",
			links: func() []chain.Link { return six[:4] },
			// Nothing tells: what a checkpoint every minute bounds.
			wantVerified: 4,
		},
		{
			name:        "every seal deleted, the head signed",
			links:       func() []chain.Link { return nil },
			checkpoints: func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "day", six[5])} },
			wantSeq:     1, wantReason: "seals 1 to 6 are missing: no seal is stored, but a checkpoint signed at 2026-12-02T00:00:00.000000Z holds seq 6",
		},
		{
			name:  "every seal removed by retention",
			links: func() []chain.Link { return nil },
			checkpoints: func() []chain.Checkpoint {
				return []chain.Checkpoint{checkpoint(key, "day", six[5]), checkpoint(key, "removal", six[5])}
			},
		},
		{
			name:  "every seal removed by retention, then the seals after it deleted",
			links: func() []chain.Link { return nil },
			checkpoints: func() []chain.Checkpoint {
				return []chain.Checkpoint{checkpoint(key, "removal", six[3]), checkpoint(key, "day", six[5])}
			},
			wantSeq: 5, wantReason: "the chain ends at seq 4, but a checkpoint signed at 2026-12-02T00:00:00.000000Z holds seq 6",
		},
		{
			name:        "the last seals deleted, a removal signed past them",
			links:       func() []chain.Link { return six[:2] },
			checkpoints: func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "removal", six[3])} },
			wantSeq:     3, wantReason: "the chain ends at seq 2, but a checkpoint signed at 2026-12-02T00:00:00.000000Z holds seq 4",
		},
		{
			name: "another org's event, the chain recomputed",
			links: func() []chain.Link {
				evs := events(6)
				evs[2].OrgID = "5eed0000-0000-4000-8000-000000000002"
				return relink(t, chain.Genesis, 1, evs)
			},
			wantSeq: 3, wantEvent: 3, wantReason: "an event of org 5eed0000-0000-4000-8000-000000000002",
		},
		{
			name:         "intact, each seal with its prev_hash",
			links:        func() []chain.Link { return withPrev(six, chain.Genesis) },
			wantVerified: 6,
		},
		{
			name:    "seq 1's prev_hash not 64 zeros",
			links:   func() []chain.Link { return withPrev(six, forged) },
			wantSeq: 1, wantEvent: 1, wantReason: "its prev_hash is " + forged.String() + ", not 64 zeros (seq 1 follows no link)",
		},
		{
			name: "a prev_hash changed",
			links: func() []chain.Link {
				out := withPrev(six, chain.Genesis)
				out[2].PrevHash = &forged
				return out
			},
			wantSeq: 3, wantEvent: 3, wantReason: "its prev_hash is " + forged.String() + ", not the hash of seq 2 (" + six[1].Hash.String() + ")",
		},
		{
			name: "a removed event's seal with its prev_hash changed",
			links: func() []chain.Link {
				out := withPrev(six, chain.Genesis)
				out[2].Event, out[2].PrevHash = nil, &forged
				return out
			},
			wantSeq: 3, wantReason: "its prev_hash is " + forged.String(),
		},
		{
			name:         "the first seals removed by retention, the first kept one's prev_hash the removal checkpoint's",
			links:        func() []chain.Link { return withPrev(six[3:], six[2].Hash) },
			checkpoints:  func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "removal", six[2])} },
			wantVerified: 3,
		},
		{
			name:        "the prev_hash of the first seal after a removal changed",
			links:       func() []chain.Link { return withPrev(six[3:], forged) },
			checkpoints: func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "removal", six[2])} },
			wantSeq:     4, wantEvent: 4,
			wantReason: "not the hash of seq 3 (" + six[2].Hash.String() + ", as the removal checkpoint signed at 2026-12-02T00:00:00.000000Z holds it)",
		},
		{
			name:    "partial: a seq below 1",
			partial: true,
			links:   func() []chain.Link { return relink(t, chain.Genesis, -1, events(2)) },
			wantSeq: -1, wantEvent: 1, wantReason: "seq -1 is not a seq",
		},
		{
			name:    "partial: an export filtered to some events",
			partial: true,
			links: func() []chain.Link {
				return []chain.Link{six[1], six[2], six[4]}
			},
			checkpoints:  func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "day", six[4])} },
			wantVerified: 1, wantGiven: 2,
		},
		{
			name:    "partial: an event changed after a gap, its seal signed",
			partial: true,
			links: func() []chain.Link {
				l := six[4]
				l.Hash[0] ^= 1
				return []chain.Link{six[1], six[2], l}
			},
			checkpoints: func() []chain.Checkpoint { return []chain.Checkpoint{checkpoint(key, "day", six[4])} },
			wantSeq:     5, wantEvent: 5, wantReason: "differs from the checkpoint",
		},
		{
			name:    "partial: the seal after a gap, its prev_hash a seal's not in the file",
			partial: true,
			links: func() []chain.Link {
				ls := withPrev(six, chain.Genesis)
				return []chain.Link{ls[1], ls[2], ls[4]}
			},
			wantVerified: 1, wantGiven: 2,
		},
		{
			name:    "partial: seals out of order",
			partial: true,
			links:   func() []chain.Link { return []chain.Link{six[3], six[1]} },
			wantSeq: 2, wantEvent: 2, wantReason: "seq 2 follows seq 4",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cps []chain.Checkpoint
			if tc.checkpoints != nil {
				cps = tc.checkpoints()
			}
			ls := tc.links()
			v, b := verifyLinks(t, tc.partial, cps, ls, keysOf(key))
			checkBreak(t, b, tc.wantSeq, tc.wantEvent, tc.wantReason)
			if b == nil && (v.Verified != tc.wantVerified || v.Given != tc.wantGiven) {
				t.Errorf("%d links verified, %d given; want %d, %d", v.Verified, v.Given, tc.wantVerified, tc.wantGiven)
			}
			atLinks := 0
			for _, c := range cps {
				for _, l := range ls {
					if c.Seq == l.Seq {
						atLinks++
					}
				}
			}
			if b == nil && v.Checked != atLinks {
				t.Errorf("%d checkpoints compared, want the %d at links read", v.Checked, atLinks)
			}
		})
	}
}

// checkBreak fails the test unless b is a break at wantSeq (nil when 0)
// naming event(wantEvent) (0: no event), with reason in its reason.
func checkBreak(t *testing.T, b *chain.Break, wantSeq int64, wantEvent int, reason string) {
	t.Helper()
	if wantSeq == 0 {
		if b != nil {
			t.Fatalf("break %v, want none", b)
		}
		return
	}
	if b == nil {
		t.Fatalf("no break, want one at seq %d", wantSeq)
	}
	wantID := ""
	if wantEvent != 0 {
		wantID = event(wantEvent).ID
	}
	if b.Seq != wantSeq || b.EventID != wantID || !strings.Contains(b.Reason, reason) {
		t.Fatalf("break %v, want seq %d, event %q, reason with %q", b, wantSeq, wantID, reason)
	}
}

// replace is ls with link i replaced by l.
func replace(ls []chain.Link, i int, l chain.Link) []chain.Link {
	out := append([]chain.Link(nil), ls...)
	out[i] = l
	return out
}

// forged is a hash no link has.
var forged = chain.Hash{0xf0}

// withPrev is ls with each link's PrevHash set as the sealer records it: the
// hash of the link before, prev for the first.
func withPrev(ls []chain.Link, prev chain.Hash) []chain.Link {
	out := append([]chain.Link(nil), ls...)
	for i := range out {
		p := prev
		out[i].PrevHash, prev = &p, out[i].Hash
	}
	return out
}

// cut is ls without links i to j-1.
func cut(ls []chain.Link, i, j int) []chain.Link {
	return append(append([]chain.Link(nil), ls[:i]...), ls[j:]...)
}
