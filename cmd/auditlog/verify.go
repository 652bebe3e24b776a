package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"strings"

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

func runVerify(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "verify", "--org ID [--database-url URL] [--key FILE]... | --file FEED.ndjson [--checkpoints FILE --key FILE...] [--partial]")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "database, as a role holding audit_reader (env DATABASE_URL)")
	org := fs.String("org", "", "the org whose chain to verify in the database")
	file := fs.String("file", "", "verify offline a feed saved as NDJSON (format=ndjson, pages appended) instead of the database")
	cpFile := fs.String("checkpoints", "", "with --file: the org's checkpoints, as GET /api/orgs/{id}/audit/checkpoints returns them")
	partial := fs.Bool("partial", false, "with --file: the feed was filtered or starts after seq 1; links after a gap are taken as given")
	var keys keyFiles
	fs.Var(&keys, "key", "a public key checkpoints may be signed with (PEM or 64 hex digits; repeat for several); default with --org: the keys the database lists")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*org == "") == (*file == "") || fs.NArg() > 0 || (*file == "" && (*cpFile != "" || *partial)) {
		fs.Usage()
		return errors.New("verify: give either --org ID or --file FEED (with its --checkpoints and --partial), and no other arguments")
	}
	trusted, err := keys.load()
	if err != nil {
		return err
	}
	var res verify.Result
	if *file != "" {
		res, err = verifyFile(*file, *cpFile, trusted, *partial)
	} else {
		res, err = verifyOrg(ctx, *dbURL, *org, trusted)
	}
	if err != nil {
		return err
	}
	printVerify(e, res)
	if res.Break != nil {
		return errBroken
	}
	return nil
}

func verifyOrg(ctx context.Context, dbURL, org string, keys map[string]ed25519.PublicKey) (verify.Result, error) {
	pool, err := database.Pool(ctx, dbURL, func(c *pgxpool.Config) { c.MaxConns = 1 })
	if err != nil {
		return verify.Result{}, err
	}
	defer pool.Close()
	return verify.Org(ctx, pool, org, keys)
}

func verifyFile(path, cpPath string, keys map[string]ed25519.PublicKey, partial bool) (verify.Result, error) {
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
	f, err := os.Open(path)
	if err != nil {
		return verify.Result{}, err
	}
	defer f.Close()
	return verify.File(f, cps, keys, partial)
}

func printVerify(e env, r verify.Result) {
	if r.Break != nil {
		fmt.Fprintf(e.stdout, "org %s: chain BROKEN at %v\n", r.OrgID, r.Break)
	}
	switch {
	case r.Last == 0:
		fmt.Fprintf(e.stdout, "org %s: no sealed events\n", r.OrgID)
		return
	case r.Break == nil:
		fmt.Fprintf(e.stdout, "org %s: chain verified, seq %d to %d\n", r.OrgID, r.First, r.Last)
	}
	fmt.Fprintf(e.stdout, "  %d events recomputed, %d links of removed events taken from signed checkpoints, %d checkpoints checked\n",
		r.Verified, r.Given, r.Checkpoints)
	if r.Break == nil && r.Checkpoints == 0 {
		fmt.Fprintln(e.stdout, "  no signed checkpoint covers these events: the chain is consistent, but nothing signed ties it to what was sealed")
	}
	if r.Unsealed > 0 {
		fmt.Fprintf(e.stdout, "  %d stored events not sealed yet (the sealer is behind, or not running)\n", r.Unsealed)
	}
}
