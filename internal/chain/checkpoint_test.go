package chain_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/chain"
)

func TestCheckpointSignVerify(t *testing.T) {
	key, other := newKey(t), newKey(t)
	head := links(t, events(3)...)[2]
	good := checkpoint(key, "day", head)
	if err := good.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("a checkpoint does not verify with its own key: %v", err)
	}
	// Stored as PostgreSQL stores it: signed_at to the microsecond.
	stored := good
	stored.SignedAt = time.UnixMicro(good.SignedAt.UnixMicro()).In(time.FixedZone("X", 7200))
	if err := stored.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("a checkpoint read back from the database does not verify: %v", err)
	}

	for _, tc := range []struct {
		name   string
		change func(*chain.Checkpoint)
		pub    ed25519.PublicKey
		want   string
	}{
		{"kind", func(c *chain.Checkpoint) { c.Kind = "removal" }, nil, "bad signature"},
		{"org", func(c *chain.Checkpoint) { c.OrgID = "5eed0000-0000-4000-8000-000000000002" }, nil, "bad signature"},
		{"seq", func(c *chain.Checkpoint) { c.Seq++ }, nil, "bad signature"},
		{"hash", func(c *chain.Checkpoint) { c.Hash[31] ^= 1 }, nil, "bad signature"},
		{"signed_at", func(c *chain.Checkpoint) { c.SignedAt = c.SignedAt.Add(time.Microsecond) }, nil, "bad signature"},
		{"signature", func(c *chain.Checkpoint) { c.Signature = append([]byte(nil), c.Signature...); c.Signature[0] ^= 1 }, nil, "bad signature"},
		{"signature cut", func(c *chain.Checkpoint) { c.Signature = c.Signature[:63] }, nil, "bad signature"},
		{"signed by another key under this key's id", func(c *chain.Checkpoint) {
			c.Sign(other)
			c.KeyID = chain.KeyID(key.Public().(ed25519.PublicKey))
		}, nil, "bad signature"},
		{"verified with another key", func(*chain.Checkpoint) {}, other.Public().(ed25519.PublicKey), "is signed by key"},
		{"verified with a malformed key of the same id", func(c *chain.Checkpoint) {
			c.KeyID = chain.KeyID(ed25519.PublicKey("short"))
		}, ed25519.PublicKey("short"), "not an Ed25519 public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.change(&c)
			pub := tc.pub
			if pub == nil {
				pub = key.Public().(ed25519.PublicKey)
			}
			err := c.Verify(pub)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestVerifierAddCheckpoint(t *testing.T) {
	key, other := newKey(t), newKey(t)
	head := links(t, events(1)...)[0]
	pub := key.Public().(ed25519.PublicKey)
	id := chain.KeyID(pub)
	for _, tc := range []struct {
		name  string
		org   string
		keys  map[string]chain.Key
		cp    chain.Checkpoint
		wantE string // "" for none
	}{
		{"signed by a known key", org, keysOf(key), checkpoint(key, "day", head), ""},
		{"verifying the org named in capitals", strings.ToUpper(org), keysOf(key), checkpoint(key, "day", head), ""},
		{"another org's", "5eed0000-0000-4000-8000-000000000002", keysOf(key), checkpoint(key, "day", head), "verifying org"},
		{"signed by an unknown key", org, keysOf(key), checkpoint(other, "day", head), "unknown key"},
		{"signed within the key's validity", org,
			map[string]chain.Key{id: {Public: pub, ValidFrom: signedAt.Add(-time.Hour), ValidUntil: signedAt.Add(time.Hour)}},
			checkpoint(key, "day", head), ""},
		{"signed before the key's validity", org,
			map[string]chain.Key{id: {Public: pub, ValidFrom: signedAt.Add(time.Hour)}},
			checkpoint(key, "day", head), "outside the validity of key"},
		{"signed after the key's validity", org,
			map[string]chain.Key{id: {Public: pub, ValidUntil: signedAt.Add(-time.Hour)}},
			checkpoint(key, "day", head), "outside the validity of key"},
		{"signed just after the key's validity, within the clock skew allowed", org,
			map[string]chain.Key{id: {Public: pub, ValidUntil: signedAt.Add(-chain.ClockSkew)}},
			checkpoint(key, "day", head), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := chain.NewVerifier(tc.org, tc.keys).AddCheckpoint(tc.cp)
			if tc.wantE == "" && err != nil {
				t.Fatalf("AddCheckpoint: %v", err)
			}
			if tc.wantE != "" && (err == nil || !strings.Contains(err.Error(), tc.wantE)) {
				t.Fatalf("AddCheckpoint: %v, want an error with %q", err, tc.wantE)
			}
		})
	}
}

func TestKeyID(t *testing.T) {
	pub, err := hex.DecodeString("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
	if err != nil {
		t.Fatal(err)
	}
	// The first 8 bytes of sha256 of the key, as audit.register_seal_key
	// computes it: left(encode(sha256(key), 'hex'), 16).
	if got := chain.KeyID(pub); got != "21fe31dfa154a261" {
		t.Fatalf("KeyID = %q", got)
	}
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseKeys(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ecPubDER, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("private", func(t *testing.T) {
		got, err := chain.ParsePrivateKey(pemOf("PRIVATE KEY", der))
		if err != nil || !got.Equal(key) {
			t.Fatalf("ParsePrivateKey of a PKCS #8 PEM: %v", err)
		}
		for name, in := range map[string][]byte{
			"empty":             nil,
			"not PEM":           []byte("hello"),
			"another PEM type":  pemOf("EC PRIVATE KEY", der),
			"a public key":      pemOf("PUBLIC KEY", pubDER),
			"bad DER":           pemOf("PRIVATE KEY", der[:20]),
			"an ECDSA key":      pemOf("PRIVATE KEY", ecDER),
			"hex of the seed":   []byte(hex.EncodeToString(key.Seed())),
			"PEM without a key": []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"),
		} {
			if _, err := chain.ParsePrivateKey(in); err == nil || !strings.HasPrefix(err.Error(), "seal key: ") {
				t.Errorf("ParsePrivateKey(%s): %v, want a seal key error", name, err)
			}
		}
	})
	t.Run("public", func(t *testing.T) {
		for name, in := range map[string][]byte{
			"PKIX PEM":           pemOf("PUBLIC KEY", pubDER),
			"hex":                []byte(hex.EncodeToString(pub)),
			"hex with a newline": []byte(hex.EncodeToString(pub) + "\n"),
			"upper-case hex":     []byte(strings.ToUpper(hex.EncodeToString(pub))),
		} {
			got, err := chain.ParsePublicKey(in)
			if err != nil || !got.Equal(pub) {
				t.Errorf("ParsePublicKey(%s) = %x, %v; want the key", name, got, err)
			}
		}
		for name, in := range map[string][]byte{
			"empty":          nil,
			"short hex":      []byte(hex.EncodeToString(pub[:31])),
			"long hex":       []byte(hex.EncodeToString(append(pub, 0))),
			"not hex":        []byte(strings.Repeat("g", 64)),
			"an ECDSA key":   pemOf("PUBLIC KEY", ecPubDER),
			"a private key":  pemOf("PRIVATE KEY", der),
			"bad DER":        pemOf("PUBLIC KEY", pubDER[:10]),
			"the key id":     []byte(chain.KeyID(pub)),
			"base64 of hash": []byte("2VqYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="),
		} {
			if _, err := chain.ParsePublicKey(in); err == nil || !strings.HasPrefix(err.Error(), "public key: ") {
				t.Errorf("ParsePublicKey(%s): %v, want a public key error", name, err)
			}
		}
	})
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "seal.pem")
	if _, err := chain.LoadOrCreateKey(path, false); err == nil {
		t.Fatal("a missing key file without create: no error")
	}
	made, err := chain.LoadOrCreateKey(path, true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key file has mode %o, want 600", fi.Mode().Perm())
	}
	again, err := chain.LoadOrCreateKey(path, true)
	if err != nil || !again.Equal(made) {
		t.Fatalf("second load: %v; want the key made first", err)
	}
	if _, err := chain.LoadOrCreateKey(filepath.Join(dir, "missing", "seal.pem"), true); err == nil {
		t.Fatal("a key file in a missing directory: no error")
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := chain.LoadOrCreateKey(bad, true); err == nil {
		t.Fatal("a file that holds no key is used or overwritten")
	}
}

// TestLoadOrCreateKeyRefusesReadableByOthers: a signing key others can read
// is as good as published.
func TestLoadOrCreateKeyRefusesReadableByOthers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seal.pem")
	if _, err := chain.LoadOrCreateKey(path, true); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := chain.LoadOrCreateKey(path, false); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("key file of mode %o: %v, want a refusal", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := chain.LoadOrCreateKey(path, false); err != nil {
			t.Errorf("key file of mode %o: %v", mode, err)
		}
	}
}

func TestLoadOrCreateKeyRefusesHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seal.pem")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := chain.LoadOrCreateKey(path, false); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("a 1 MiB key file: %v, want too large", err)
	}
}

// TestLoadOrCreateKeyConcurrent: processes starting together on a new key
// file (serve and seal, or two sealers) end up with one key; none
// overwrites another's or reads it half written.
func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	for range 20 {
		path := filepath.Join(t.TempDir(), "seal.pem")
		keys := make([]ed25519.PrivateKey, 8)
		errs := make([]error, len(keys))
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() { keys[i], errs[i] = chain.LoadOrCreateKey(path, true) })
		}
		wg.Wait()
		onDisk, err := chain.LoadOrCreateKey(path, false)
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if errs[i] != nil || !keys[i].Equal(onDisk) {
				t.Fatalf("caller %d: %v; its key is not the one in the file", i, errs[i])
			}
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*")); len(left) != 1 {
			t.Fatalf("files left beside the key: %v", left)
		}
	}
}
