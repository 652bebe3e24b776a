package verify

import (
	"bufio"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/store"
)

// maxLine bounds one line of a feed file: an event with its largest
// metadata (16 KiB, escaped) fits many times over.
const maxLine = 1 << 20

// File verifies a feed saved as NDJSON (the feed's format=ndjson, pages
// appended in order) against checkpoints signed by keys, offline. The file
// holds one org's events; partial allows gaps (a filtered feed) and a
// start after seq 1 without its removal checkpoint, taking the link after
// each gap as given.
func File(r io.Reader, checkpoints []chain.Checkpoint, keys map[string]ed25519.PublicKey, partial bool) (Result, error) {
	var res Result
	var v *chain.Verifier
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for line := 1; sc.Scan(); line++ {
		var fe struct {
			Seq  int64  `json:"seq"`
			Hash string `json:"hash"`
			store.Event
		}
		if err := json.Unmarshal(sc.Bytes(), &fe); err != nil {
			return res, fmt.Errorf("line %d: %w", line, err)
		}
		if err := checkKeys(sc.Bytes(), lineFields); err != nil {
			res.Break = &chain.Break{Seq: fe.Seq, EventID: fe.ID, Reason: fmt.Sprintf("line %d: %v", line, err)}
			break
		}
		h, err := parseHexHash(fe.Hash)
		if err != nil {
			return res, fmt.Errorf("line %d: %w", line, err)
		}
		if v == nil {
			res.OrgID = fe.OrgID
			v = chain.NewVerifier(fe.OrgID, trustedKeys(keys))
			v.Partial = partial
			for _, c := range checkpoints {
				if err := v.AddCheckpoint(c); err != nil {
					res.Break = &chain.Break{Seq: c.Seq, Reason: err.Error()}
					return res, nil
				}
			}
		}
		if fe.OrgID != res.OrgID {
			return res, fmt.Errorf("line %d: an event of org %s in a file of org %s", line, fe.OrgID, res.OrgID)
		}
		if err := v.Add(chain.Link{Seq: fe.Seq, Hash: h, Event: &fe.Event}); err != nil {
			var b *chain.Break
			if !errors.As(err, &b) {
				return res, err
			}
			res.Break = b
			break
		}
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("read the feed file: %w", err)
	}
	if v != nil {
		res.First, res.Last, res.Verified, res.Given, res.Checkpoints, res.CoveredTo = v.First(), v.Last(), v.Verified, v.Given, v.Checked, v.CoveredTo
		if c, ok := v.PastEnd(); ok {
			res.PastEnd = &c
		}
	}
	return res, nil
}

// ReadCheckpoints reads the body of GET /api/orgs/{id}/audit/checkpoints.
func ReadCheckpoints(r io.Reader) ([]chain.Checkpoint, error) {
	var body struct {
		Checkpoints []store.Checkpoint `json:"checkpoints"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 64<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	return checkpointsOf(body.Checkpoints)
}

// checkpointsOf reads checkpoints as the API shows them.
func checkpointsOf(cps []store.Checkpoint) ([]chain.Checkpoint, error) {
	out := make([]chain.Checkpoint, len(cps))
	for i, c := range cps {
		h, err := parseHexHash(c.Hash)
		if err != nil {
			return nil, fmt.Errorf("checkpoint %d: %w", i+1, err)
		}
		sig, err := hex.DecodeString(c.Signature)
		if err != nil || len(sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("checkpoint %d: the signature is not %d bytes of hex", i+1, ed25519.SignatureSize)
		}
		out[i] = chain.Checkpoint{Kind: c.Kind, OrgID: c.OrgID, Seq: c.Seq, Hash: h,
			SignedAt: c.SignedAt.Truncate(time.Microsecond), KeyID: c.KeyID, Signature: sig}
	}
	return out, nil
}

func parseHexHash(s string) (chain.Hash, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return chain.Hash{}, fmt.Errorf("hash %q: not hex", s)
	}
	return chain.ParseHash(b)
}
