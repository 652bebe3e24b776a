package chain

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Checkpoint is a signed (org, seq, hash, time): the sealer's statement that
// the org's chain had this hash at this seq.
type Checkpoint struct {
	// Kind is "day" (an org's head during a UTC day) or "removal" (the last
	// link retention removed; the chain continues from it).
	Kind      string    `json:"kind"`
	OrgID     string    `json:"org_id"`
	Seq       int64     `json:"seq"`
	Hash      Hash      `json:"-"`
	SignedAt  time.Time `json:"signed_at"`
	KeyID     string    `json:"key_id"`
	Signature []byte    `json:"signature"`
}

// Message is what a checkpoint's signature covers:
// "auditlog-checkpoint-v1\n" || kind || "\n" || org id || "\n" || seq (8 bytes
// big-endian) || hash || signed_at in Unix microseconds (8 bytes big-endian).
func (c Checkpoint) Message() []byte {
	m := []byte("auditlog-checkpoint-v1\n" + c.Kind + "\n" + c.OrgID + "\n")
	m = binary.BigEndian.AppendUint64(m, uint64(c.Seq))
	m = append(m, c.Hash[:]...)
	return binary.BigEndian.AppendUint64(m, uint64(c.SignedAt.UnixMicro()))
}

// Sign fills in the checkpoint's key id and signature.
func (c *Checkpoint) Sign(key ed25519.PrivateKey) {
	c.SignedAt = c.SignedAt.Truncate(time.Microsecond)
	c.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	c.Signature = ed25519.Sign(key, c.Message())
}

// Verify checks the signature with pub.
func (c Checkpoint) Verify(pub ed25519.PublicKey) error {
	// ed25519.Verify panics on such a key, which a key table can hold.
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("checkpoint of org %s at seq %d: key %s is not an Ed25519 public key (%d bytes)", c.OrgID, c.Seq, c.KeyID, len(pub))
	}
	if KeyID(pub) != c.KeyID {
		return fmt.Errorf("checkpoint of org %s at seq %d is signed by key %s, not %s", c.OrgID, c.Seq, c.KeyID, KeyID(pub))
	}
	if !ed25519.Verify(pub, c.Message(), c.Signature) {
		return fmt.Errorf("checkpoint of org %s at seq %d: bad signature", c.OrgID, c.Seq)
	}
	return nil
}

// KeyID names a public key: the first 16 hex digits of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return fmt.Sprintf("%x", sum[:8])
}

// maxKeyFile bounds what LoadOrCreatePKCS8 reads (a PEM Ed25519 key is 119
// bytes).
const maxKeyFile = 16 << 10

// LoadOrCreateKey reads an Ed25519 private key (PKCS #8 PEM) from path, or,
// when create is set and the file does not exist, makes one and writes it
// there with mode 0600. It refuses a key file that others may read.
func LoadOrCreateKey(path string, create bool) (ed25519.PrivateKey, error) {
	b, err := LoadOrCreatePKCS8(path, create, "seal key", func() (any, error) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		return key, err
	})
	if err != nil {
		return nil, err
	}
	return ParsePrivateKey(b)
}

// LoadOrCreatePKCS8 reads the PEM of a private key from path, or, when
// create is set and the file does not exist, writes one with mode 0600 made
// by generate (a key x509.MarshalPKCS8PrivateKey takes). It refuses a key
// file that others may read. what names the key in errors.
func LoadOrCreatePKCS8(path string, create bool, what string, generate func() (any, error)) ([]byte, error) {
	if create {
		b, err := createKey(path, what, generate)
		if !errors.Is(err, fs.ErrExist) {
			return b, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s %s may be read by others (mode %o): chmod 600 %s", what, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s %s: file too large for a key", what, path)
	}
	return b, nil
}

// createKey writes a new key to path, failing with fs.ErrExist if a file is
// there: it links a complete temporary file at path, so callers racing on a
// new file end up with one key, none overwritten or read half written.
func createKey(path, what string, generate func() (any, error)) ([]byte, error) {
	key, err := generate()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", what, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), path)
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", what, err)
	}
	return b, nil
}

// ParsePrivateKey reads an Ed25519 private key in PKCS #8 PEM.
func ParsePrivateKey(pemBytes []byte) (ed25519.PrivateKey, error) {
	k, err := ParsePKCS8(pemBytes, "seal key")
	if err != nil {
		return nil, err
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("seal key: not an Ed25519 key")
	}
	return key, nil
}

// ParsePKCS8 reads a private key in PKCS #8 PEM; what names it in errors.
func ParsePKCS8(pemBytes []byte, what string) (any, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM \"PRIVATE KEY\" block", what)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return k, nil
}

// ParsePublicKey reads an Ed25519 public key: PKIX PEM ("PUBLIC KEY", as
// `openssl pkey -pubout` writes it) or the 64 hex digits the API shows.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	if block, _ := pem.Decode(b); block != nil {
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, errors.New("public key: not an Ed25519 key")
		}
		return pub, nil
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, errors.New("public key: want a PEM PUBLIC KEY or 64 hex digits")
	}
	return ed25519.PublicKey(raw), nil
}
