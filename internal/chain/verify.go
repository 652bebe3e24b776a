package chain

import (
	"cmp"
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/auditlog/auditlog/internal/store"
)

// Link is one sealed event as a verifier reads it.
type Link struct {
	Seq  int64
	Hash Hash
	// Event is nil when retention removed the event: the link's hash is
	// then taken as given, and the chain goes on from it.
	Event *store.Event
	// PrevHash is the hash the seal says it follows (its prev_hash), when
	// the reader has it: it must be the previous link's, which exports
	// hand out as each row's proof.
	PrevHash *Hash
}

// Break is where a chain stops verifying.
type Break struct {
	Seq     int64
	EventID string
	Reason  string
}

func (b *Break) Error() string {
	if b.EventID == "" {
		return fmt.Sprintf("seq %d: %s", b.Seq, b.Reason)
	}
	return fmt.Sprintf("seq %d (event %s): %s", b.Seq, b.EventID, b.Reason)
}

// Verifier recomputes one org's chain from its links in seq order and
// checks it against the org's signed checkpoints.
type Verifier struct {
	// Partial allows links to be missing (a filtered export): the link after
	// a gap, and the first link, are taken as given.
	Partial bool

	orgID       string
	keys        map[string]Key
	removals    map[int64]Checkpoint // by seq
	checkpoints map[int64][]Checkpoint

	started bool
	prev    Hash
	prevSeq int64
	first   int64
	// Verified counts links whose hash was recomputed; Given, links taken as
	// given (removed events, gaps of a partial file).
	Verified, Given int64
	// Checked counts the checkpoints a link was compared with; CoveredTo
	// is the last such link's seq (0: none): links after it are tied to no
	// signature.
	Checked   int
	CoveredTo int64
}

// Key is a public key that signs checkpoints, and when it was the signing
// key: a checkpoint signed outside [ValidFrom, ValidUntil] (widened by
// ClockSkew) is refused, so a retired key that leaks cannot sign for today.
// A zero time leaves its side open.
type Key struct {
	Public                ed25519.PublicKey
	ValidFrom, ValidUntil time.Time
}

// ClockSkew is how far a checkpoint's signed_at (the sealer's clock) may lie
// outside its key's validity (the database's clock).
const ClockSkew = time.Minute

// NewVerifier verifies the chain of org orgID with checkpoints signed by keys
// (by key id).
func NewVerifier(orgID string, keys map[string]Key) *Verifier {
	return &Verifier{orgID: orgID, keys: keys, removals: map[int64]Checkpoint{}, checkpoints: map[int64][]Checkpoint{}}
}

// AddCheckpoint checks a checkpoint's signature and keeps it to compare with
// the links. Call it before Add.
func (v *Verifier) AddCheckpoint(c Checkpoint) error {
	if !strings.EqualFold(c.OrgID, v.orgID) {
		return fmt.Errorf("checkpoint of org %s, verifying org %s", c.OrgID, v.orgID)
	}
	key, ok := v.keys[c.KeyID]
	if !ok {
		return fmt.Errorf("checkpoint of org %s at seq %d: signed by unknown key %s", c.OrgID, c.Seq, c.KeyID)
	}
	if err := c.Verify(key.Public); err != nil {
		return err
	}
	if (!key.ValidFrom.IsZero() && c.SignedAt.Before(key.ValidFrom.Add(-ClockSkew))) ||
		(!key.ValidUntil.IsZero() && c.SignedAt.After(key.ValidUntil.Add(ClockSkew))) {
		return fmt.Errorf("checkpoint of org %s at seq %d: signed at %s, outside the validity of key %s", c.OrgID, c.Seq, c.SignedAt.UTC().Format(TimeLayout), c.KeyID)
	}
	if c.Kind == "removal" {
		v.removals[c.Seq] = c
	}
	v.checkpoints[c.Seq] = append(v.checkpoints[c.Seq], c)
	return nil
}

// Add verifies the next link. It returns a *Break at the first link that
// does not verify.
func (v *Verifier) Add(l Link) error {
	id := ""
	if l.Event != nil {
		id = l.Event.ID
	}
	given := false
	switch {
	case l.Seq < 1:
		return &Break{l.Seq, id, fmt.Sprintf("seq %d is not a seq (they start at 1)", l.Seq)}
	case l.Event != nil && !strings.EqualFold(l.Event.OrgID, v.orgID):
		// Its hash may be right: a whole chain can be recomputed.
		return &Break{l.Seq, id, fmt.Sprintf("an event of org %s in the chain of org %s", l.Event.OrgID, v.orgID)}
	case !v.started && l.Seq == 1:
		v.prev = Genesis
	case !v.started:
		if r, ok := v.removals[l.Seq-1]; ok {
			v.prev = r.Hash
		} else if v.Partial {
			given = true
		} else {
			return &Break{l.Seq, id, fmt.Sprintf("the chain starts at seq %d, and no signed removal checkpoint holds seq %d", l.Seq, l.Seq-1)}
		}
	case l.Seq <= v.prevSeq:
		return &Break{l.Seq, id, fmt.Sprintf("seq %d follows seq %d", l.Seq, v.prevSeq)}
	case l.Seq != v.prevSeq+1:
		if !v.Partial {
			return &Break{l.Seq, id, fmt.Sprintf("seals %d to %d are missing", v.prevSeq+1, l.Seq-1)}
		}
		given = true
	}
	if !v.started {
		v.started, v.first = true, l.Seq
	}
	if l.Event == nil || given {
		v.Given++
	} else {
		canonical, err := Canonical(*l.Event)
		if err != nil {
			return &Break{l.Seq, id, err.Error()}
		}
		if h := Next(v.prev, l.Seq, canonical); h != l.Hash {
			return &Break{l.Seq, id, "the event differs from what was sealed (its hash is " + h.String() + ", the seal says " + l.Hash.String() + ")"}
		}
		v.Verified++
	}
	if l.PrevHash != nil && !given && *l.PrevHash != v.prev {
		return &Break{l.Seq, id, fmt.Sprintf("its prev_hash is %s, not %s", *l.PrevHash, v.linkBefore(l.Seq))}
	}
	for _, c := range v.checkpoints[l.Seq] {
		if c.Hash != l.Hash {
			return &Break{l.Seq, id, fmt.Sprintf("the chain differs from the checkpoint signed at %s (hash %s)", c.SignedAt.UTC().Format(TimeLayout), c.Hash)}
		}
		v.Checked++
		v.CoveredTo = l.Seq
	}
	v.prev, v.prevSeq = l.Hash, l.Seq
	return nil
}

// linkBefore says what the hash before link seq is, as a break reads it:
// 64 zeros before seq 1, a removal checkpoint's before the first link.
func (v *Verifier) linkBefore(seq int64) string {
	switch r, ok := v.removals[seq-1]; {
	case seq == 1:
		return "64 zeros (seq 1 follows no link)"
	case ok && seq == v.first:
		return fmt.Sprintf("the hash of seq %d (%s, as the removal checkpoint signed at %s holds it)", seq-1, v.prev, r.SignedAt.UTC().Format(TimeLayout))
	}
	return fmt.Sprintf("the hash of seq %d (%s)", seq-1, v.prev)
}

// First and Last are the seqs of the first and last links added.
func (v *Verifier) First() int64 { return v.first }
func (v *Verifier) Last() int64  { return v.prevSeq }

// End is the seq the chain reaches: its last link, or, with no link left,
// the last removal checkpoint (0: none).
func (v *Verifier) End() int64 {
	end := v.prevSeq
	if !v.started {
		for seq := range v.removals {
			end = max(end, seq)
		}
	}
	return end
}

// FinishHead checks that the chain reaches every checkpoint signed for it:
// call it when the links read are the org's whole chain, so a chain cut
// short (its last links removed and the head rewound) is found, at the
// first seq missing.
func (v *Verifier) FinishHead() error {
	c, ok := v.PastEnd()
	if !ok {
		return nil
	}
	end := v.End()
	return &Break{end + 1, "", fmt.Sprintf("seals %d to %d are missing: %s, but a checkpoint signed at %s holds seq %d",
		end+1, c.Seq, v.EndSays(), c.SignedAt.UTC().Format(TimeLayout), c.Seq)}
}

// PastEnd is the checkpoint of the highest seq past End, if any: what was
// signed that the links read do not reach.
func (v *Verifier) PastEnd() (Checkpoint, bool) {
	end := v.End()
	var past []Checkpoint
	for seq, cs := range v.checkpoints {
		if seq > end {
			past = append(past, cs[0])
		}
	}
	if len(past) == 0 {
		return Checkpoint{}, false
	}
	return slices.MaxFunc(past, func(a, b Checkpoint) int { return cmp.Compare(a.Seq, b.Seq) }), true
}

// EndSays says where the chain ends, as a report reads it.
func (v *Verifier) EndSays() string {
	if end := v.End(); end > 0 {
		return fmt.Sprintf("the chain ends at seq %d", end)
	}
	return "no seal is stored"
}
