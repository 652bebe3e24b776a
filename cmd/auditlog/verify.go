package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/verify"
)

// keyFiles is a repeatable --key flag: public key files.
type keyFiles []string

func (k *keyFiles) String() string     { return strings.Join(*k, ",") }
func (k *keyFiles) Set(v string) error { *k = append(*k, v); return nil }

// load reads the files, by key id; nil when none were given.
func (k keyFiles) load() (map[string]ed25519.PublicKey, error) {
	if len(k) == 0 {
		return nil, nil
	}
	keys := map[string]ed25519.PublicKey{}
	for _, path := range k {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--key: %w", err)
		}
		pub, err := chain.ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("--key %s: %w", path, err)
		}
		keys[chain.KeyID(pub)] = pub
	}
	return keys, nil
}

// errBroken is a chain that does not verify: exit status 1, after the
// report says where.
var errBroken = errors.New("the chain does not verify")

// errUnproved is evidence missing that a sealer behind or stopped would
// also leave missing: exit status 3, after the report says what.
var errUnproved = errors.New("the chain is not verified: evidence is missing (see above)")

func runVerify(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "verify", "--org ID [--database-url URL] [--key FILE]... [--wait 10s] | EXPORT.ndjson --key FILE... | EXPORT.csv --manifest HEADERS --key FILE... | FEED.ndjson [--checkpoints FILE --key FILE...] [--partial]")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "database, as a role holding audit_reader (env DATABASE_URL)")
	org := fs.String("org", "", "the org whose chain to verify in the database")
	file := fs.String("file", "", "the same as FILE: verify a file offline instead of the database")
	cpFile := fs.String("checkpoints", "", "for a feed file: the org's checkpoints, as GET /api/orgs/{id}/audit/checkpoints returns them")
	wait := fs.Duration("wait", verify.DefaultSealerWait, "with --org: how long to wait for the sealer to read past events found without a seal, before saying it is behind")
	partial := fs.Bool("partial", false, "for a feed file: the feed was filtered or starts after seq 1; links after a gap are taken as given")
	manifest := fs.String("manifest", "", "for a CSV export: its manifest, the Audit-Manifest trailer (the headers curl -D saved, or the JSON)")
	var keys keyFiles
	fs.Var(&keys, "key", "a public key checkpoints may be signed with (PEM or 64 hex digits; repeat for several); default with --org: the keys the database lists")
	// FILE may come before the flags, as in `verify FILE --key KEY`.
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *file != "" {
		files = append(files, *file)
	}
	if (*org == "") == (len(files) == 0) || len(files) > 1 || (len(files) == 0 && (*cpFile != "" || *partial || *manifest != "")) {
		fs.Usage()
		return errors.New("verify: give either --org ID or one FILE (a feed file with its --checkpoints and --partial)")
	}
	trusted, err := keys.load()
	if err != nil {
		return err
	}
	if *org != "" {
		res, err := verifyOrg(ctx, *dbURL, *org, trusted, *wait)
		if err != nil {
			return err
		}
		return printVerify(e, res)
	}
	f, err := os.Open(files[0])
	if err != nil {
		return err
	}
	defer f.Close()
	export, err := verify.IsExport(f)
	if err != nil {
		return fmt.Errorf("verify %s: %w", files[0], err)
	}
	if *manifest != "" {
		if export || *cpFile != "" || *partial {
			return errors.New("verify: --manifest is for a CSV export, and goes without --checkpoints and --partial")
		}
		return verifyCSV(e, f, *manifest, trusted)
	}
	if !export && !startsJSON(f) {
		return fmt.Errorf("verify: %s is not NDJSON: a CSV export verifies with its manifest, the Audit-Manifest trailer (--manifest; curl -D saves it)", files[0])
	}
	if !export {
		res, err := verifyFeed(f, *cpFile, trusted, *partial)
		if err != nil {
			return err
		}
		return printVerify(e, res)
	}
	if *cpFile != "" || *partial {
		return errors.New("verify: an export carries its checkpoint in its manifest; --checkpoints and --partial are for a feed file")
	}
	res, err := verify.ExportFile(f, trusted)
	if err != nil {
		return fmt.Errorf("verify %s: %w", files[0], err)
	}
	return printExport(e, res)
}

// parseInterleaved parses flags given before, between and after the
// positional arguments, which it returns.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func verifyOrg(ctx context.Context, dbURL, org string, keys map[string]ed25519.PublicKey, wait time.Duration) (verify.Result, error) {
	pool, err := database.Pool(ctx, dbURL, func(c *pgxpool.Config) { c.MaxConns = 1 })
	if err != nil {
		return verify.Result{}, err
	}
	defer pool.Close()
	return verify.Org(ctx, pool, org, keys, wait)
}

// startsJSON says whether the file starts with a JSON object, and rewinds
// it.
func startsJSON(f io.ReadSeeker) bool {
	b := make([]byte, 1)
	_, err := io.ReadFull(f, b)
	_, serr := f.Seek(0, io.SeekStart)
	return serr == nil && (errors.Is(err, io.EOF) || err == nil && b[0] == '{') // an empty feed is one
}

// verifyCSV verifies a CSV export with its manifest from manifestPath.
func verifyCSV(e env, f io.Reader, manifestPath string, keys map[string]ed25519.PublicKey) error {
	b, err := os.ReadFile(manifestPath)
	if err != nil {
		return fmt.Errorf("--manifest: %w", err)
	}
	m, err := verify.ParseManifest(b)
	if err != nil {
		return fmt.Errorf("--manifest %s: %w", manifestPath, err)
	}
	res, err := verify.ExportCSVFile(f, m, keys)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return printExport(e, res)
}

func verifyFeed(f io.Reader, cpPath string, keys map[string]ed25519.PublicKey, partial bool) (verify.Result, error) {
	var cps []chain.Checkpoint
	if cpPath != "" {
		if keys == nil {
			return verify.Result{}, errors.New("verify: --checkpoints needs the --key they were signed with")
		}
		f, err := os.Open(cpPath)
		if err != nil {
			return verify.Result{}, err
		}
		defer f.Close()
		if cps, err = verify.ReadCheckpoints(f); err != nil {
			return verify.Result{}, err
		}
	}
	return verify.File(f, cps, keys, partial)
}

// printVerify reports a chain's verification: errBroken if what is stored
// contradicts itself, errUnproved if evidence is missing that a sealer
// behind or stopped would also leave missing.
func printVerify(e env, r verify.Result) error {
	w := e.stdout
	if r.Break != nil {
		fmt.Fprintf(w, "org %s: chain BROKEN at %v\n", r.OrgID, r.Break)
	}
	atLeast := "" // verify looked again only for the oldest events without a seal
	if r.Unchecked > 0 {
		atLeast = "at least "
	}
	if r.SealsRemoved() {
		fmt.Fprintf(w, "org %s: BROKEN: %s%d stored events have no seal, though the sealer has read past their commits: their seals were removed (the oldest occurred at %s, event %s)\n",
			r.OrgID, atLeast, r.Unresolved, r.FirstUnresolved.OccurredAt.UTC().Format(chain.TimeLayout), r.FirstUnresolved.ID)
	}
	if r.SealerBehind() {
		at := "no sealer has recorded a position for a replication slot of this database"
		switch {
		case r.SealerAt == "0/0":
			at = "it is still making its first pass over the stored events, after making its slot"
		case r.SealerAt != "" && r.SealedAt != nil:
			at = fmt.Sprintf("it is at WAL position %s, and last sealed at %s", r.SealerAt, r.SealedAt.UTC().Format(chain.TimeLayout))
		}
		fmt.Fprintf(w, "org %s: NOT VERIFIED: %s%d stored events have no seal (the oldest occurred at %s, event %s), and the sealer has not read past their commits within %s (%s): it is behind or not running, or their seals were removed; check the sealer (audit.sealer_progress, auditlog_sealer_behind_bytes), then verify again\n",
			r.OrgID, atLeast, r.Unresolved, r.FirstUnresolved.OccurredAt.UTC().Format(chain.TimeLayout), r.FirstUnresolved.ID, r.SealerWait, at)
	}
	if r.Unchecked > 0 && r.SealerPassed && r.Unresolved == 0 {
		fmt.Fprintf(w, "org %s: NOT VERIFIED: %d stored events had no seal; the sealer has sealed the %d oldest since, but verify looks for no more than those again: verify again now that the sealer has caught up\n",
			r.OrgID, r.Rechecked+r.Unchecked, r.Rechecked)
	}
	if r.StaleUnsigned() {
		fmt.Fprintf(w, "org %s: NOT VERIFIED: seq %d to %d were sealed more than %d minutes ago (from %s) and no signed checkpoint holds them, though the sealer signs each head within a minute: their checkpoints were removed, or the sealer stopped before signing them; check the sealer, then verify again\n",
			r.OrgID, max(r.CoveredTo+1, r.First), r.Last, int(verify.SignWithin.Minutes()), r.Unsigned.UTC().Format(chain.TimeLayout))
	}
	switch {
	case r.Last == 0:
		if !r.Broken() && !r.Unproved() {
			fmt.Fprintf(w, "org %s: no sealed events\n", r.OrgID)
		}
	case r.Break == nil && (r.Broken() || r.Unproved()):
		fmt.Fprintf(w, "org %s: the links stored recompute, seq %d to %d, but that proves nothing of what is missing (above)\n", r.OrgID, r.First, r.Last)
	case r.Break == nil:
		fmt.Fprintf(w, "org %s: chain verified, seq %d to %d\n", r.OrgID, r.First, r.Last)
	}
	if r.Last > 0 {
		fmt.Fprintf(w, "  %d events recomputed, %d checkpoints checked\n", r.Verified, r.Checkpoints)
	}
	if r.Given > 0 {
		// Not from a checkpoint: the seal's own hash, its event gone.
		fmt.Fprintf(w, "  %d links taken as given, not recomputed: their events are gone (removed by retention, seals not pruned yet) or the file skips them (--partial)\n", r.Given)
	}
	if c := r.PastEnd; r.Last > 0 && r.Break == nil && c != nil {
		fmt.Fprintf(w, "  a checkpoint signed at %s holds seq %d, past the file's last (seq %d): the file ends before what was signed (saved before it, or its last lines cut off)\n",
			c.SignedAt.UTC().Format(chain.TimeLayout), c.Seq, r.Last)
	}
	if r.Last > 0 && r.Break == nil && !r.StaleUnsigned() {
		if r.Checkpoints == 0 {
			fmt.Fprintln(w, "  no signed checkpoint covers these events: the chain is consistent, but nothing signed ties it to what was sealed")
		} else if r.CoveredTo < r.Last {
			// Consistent, but a rewrite of these (every hash recomputed, the
			// later checkpoints removed) would read the same.
			fmt.Fprintf(w, "  seq %d to %d follow the last checkpoint compared (seq %d): nothing signed ties them yet\n", r.CoveredTo+1, r.Last, r.CoveredTo)
		}
	}
	if r.Unsealed > 0 && r.Unresolved == 0 && r.Unchecked == 0 {
		fmt.Fprintf(w, "  %d stored events not sealed yet: committed while verify ran, the sealer had not read them\n", r.Unsealed)
	}
	switch {
	case r.Broken():
		return errBroken
	case r.Unproved():
		return errUnproved
	}
	return nil
}

// printExport reports an export's verification: where it first breaks, or
// what it holds and what the signed checkpoint proves of it.
func printExport(e env, r verify.ExportResult) error {
	if r.Break != nil {
		at := "in the file"
		switch {
		case r.Break.Seq != 0:
			at = fmt.Sprintf("line %d, %v", r.Line, r.Break)
		case r.Line != 0:
			at = fmt.Sprintf("line %d: %s", r.Line, r.Break.Reason)
		default:
			at += ": " + r.Break.Reason
		}
		fmt.Fprintf(e.stdout, "export of org %s: BROKEN at %s\n", r.OrgID, at)
		return errBroken
	}
	fmt.Fprintf(e.stdout, "export of org %s: verified, %d rows (%d sealed, %d not sealed yet), seq %d to %d\n",
		r.OrgID, r.Rows, r.Sealed, r.Rows-r.Sealed, r.First, r.Last)
	fmt.Fprintf(e.stdout, "  the manifest matches (rows, seqs, head, body SHA-256); %d hashes recomputed from their prev_hash; %d gaps in the seqs (events outside the export's range or filters)\n",
		r.Recomputed, r.Gaps)
	switch cp := r.Checkpoint; {
	case cp == nil:
		fmt.Fprintln(e.stdout, "  no signed checkpoint covers these events: the chain is consistent, but nothing signed ties it to what was sealed")
	case !r.CheckpointInFile:
		fmt.Fprintf(e.stdout, "  the checkpoint at seq %d (signed %s, key %s) verifies, but seq %d is not in the file: nothing signed ties these rows to what was sealed\n",
			cp.Seq, cp.SignedAt.UTC().Format(chain.TimeLayout), cp.KeyID, cp.Seq)
	case r.Tied == 0:
		fmt.Fprintf(e.stdout, "  the checkpoint at seq %d (signed %s, key %s) verifies and matches the row's hash, but the row has no prev_hash to recompute it from: nothing signed ties these rows to what was sealed\n",
			cp.Seq, cp.SignedAt.UTC().Format(chain.TimeLayout), cp.KeyID)
	default:
		fmt.Fprintf(e.stdout, "  the checkpoint at seq %d (signed %s, key %s) verifies and matches the row: it proves the %d rows of seq %d to %d\n",
			cp.Seq, cp.SignedAt.UTC().Format(chain.TimeLayout), cp.KeyID, r.Tied, r.TiedFrom, cp.Seq)
	}
	return nil
}
