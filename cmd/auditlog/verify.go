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
	fs := newFlagSet(e, "verify", "--org ID [--database-url URL] [--key FILE]...")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "database, as a role holding audit_reader (env DATABASE_URL)")
	org := fs.String("org", "", "the org whose chain to verify (required)")
	var keys keyFiles
	fs.Var(&keys, "key", "a public key checkpoints may be signed with (PEM or 64 hex digits; repeat for several); default: the keys the database lists")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *org == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("verify: give --org ID and no other arguments")
	}
	trusted, err := keys.load()
	if err != nil {
		return err
	}
	pool, err := database.Pool(ctx, *dbURL, func(c *pgxpool.Config) { c.MaxConns = 1 })
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := verify.Org(ctx, pool, *org, trusted)
	if err != nil {
		return err
	}
	printVerify(e, res)
	if res.Break != nil {
		return errBroken
	}
	return nil
}

func printVerify(e env, r verify.Result) {
	if r.Break != nil {
		fmt.Fprintf(e.stdout, "org %s: chain BROKEN at %v\n", r.OrgID, r.Break)
	}
	switch {
	case r.Last == 0:
		fmt.Fprintf(e.stdout, "org %s: no sealed events\n", r.OrgID)
	case r.Break == nil:
		fmt.Fprintf(e.stdout, "org %s: chain verified, seq %d to %d\n", r.OrgID, r.First, r.Last)
	}
	fmt.Fprintf(e.stdout, "  %d events recomputed, %d links of removed events taken from signed checkpoints, %d checkpoints checked\n",
		r.Verified, r.Given, r.Checkpoints)
	if r.Unsealed > 0 {
		fmt.Fprintf(e.stdout, "  %d stored events not sealed yet (the sealer is behind, or not running)\n", r.Unsealed)
	}
}
