package delivery

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/auditlog/auditlog/internal/chain"
)

// Destination is where a subscription delivers, with its secrets: what the
// database holds only sealed to the worker's key.
type Destination struct {
	// URL is the webhook, Slack incoming webhook or Splunk HEC endpoint.
	URL string `json:"url"`
	// Secret signs webhook bodies (HMAC-SHA256).
	Secret string `json:"secret,omitempty"`
	// Token is a Splunk HEC token.
	Token string `json:"token,omitempty"`
}

// maxSealed is what audit.subscriptions.sealed holds at most.
const maxSealed = 8192

// sealInfo binds the derived key to its use.
const sealInfo = "auditlog-delivery-destination-v1"

// LoadOrCreateKey reads the worker's X25519 private key (PKCS #8 PEM) from
// path, or makes one there (mode 0600) when create is set and it is missing.
func LoadOrCreateKey(path string, create bool) (*ecdh.PrivateKey, error) {
	b, err := chain.LoadOrCreatePKCS8(path, create, "delivery key", func() (any, error) {
		return ecdh.X25519().GenerateKey(rand.Reader)
	})
	if err != nil {
		return nil, err
	}
	k, err := chain.ParsePKCS8(b, "delivery key")
	if err != nil {
		return nil, err
	}
	key, ok := k.(*ecdh.PrivateKey)
	if !ok || key.Curve() != ecdh.X25519() {
		return nil, errors.New("delivery key: not an X25519 key")
	}
	return key, nil
}

// KeyID names a delivery public key as audit.delivery_keys does: the first
// 16 hex digits of its SHA-256.
func KeyID(pub *ecdh.PublicKey) string { return chain.KeyID(ed25519.PublicKey(pub.Bytes())) }

// sealKey derives the AES-256 key of one sealed destination.
func sealKey(shared, ephemeral, recipient []byte) []byte {
	h := sha256.New()
	h.Write([]byte(sealInfo))
	h.Write(shared)
	h.Write(ephemeral)
	h.Write(recipient)
	return h.Sum(nil)
}

// Seal encrypts d to the worker's public key: an ephemeral X25519 key
// agreement, SHA-256 of the shared secret and both public keys as the
// AES-256-GCM key (used once, so a zero nonce), the ephemeral public key
// first.
func Seal(pub *ecdh.PublicKey, d Destination) ([]byte, error) {
	plain, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	shared, err := eph.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("seal destination: %w", err)
	}
	aead, err := newAEAD(sealKey(shared, eph.PublicKey().Bytes(), pub.Bytes()))
	if err != nil {
		return nil, err
	}
	out := aead.Seal(eph.PublicKey().Bytes(), make([]byte, aead.NonceSize()), plain, nil)
	if len(out) > maxSealed {
		return nil, fmt.Errorf("seal destination: %d bytes sealed, at most %d", len(out), maxSealed)
	}
	return out, nil
}

// Open decrypts a destination sealed to key.
func Open(key *ecdh.PrivateKey, sealed []byte) (Destination, error) {
	var d Destination
	if len(sealed) < 32 {
		return d, errors.New("open destination: too short")
	}
	eph, err := ecdh.X25519().NewPublicKey(sealed[:32])
	if err != nil {
		return d, fmt.Errorf("open destination: %w", err)
	}
	shared, err := key.ECDH(eph)
	if err != nil {
		return d, fmt.Errorf("open destination: %w", err)
	}
	aead, err := newAEAD(sealKey(shared, sealed[:32], key.PublicKey().Bytes()))
	if err != nil {
		return d, err
	}
	plain, err := aead.Open(nil, make([]byte, aead.NonceSize()), sealed[32:], nil)
	if err != nil {
		return d, fmt.Errorf("open destination: %w", err)
	}
	return d, json.Unmarshal(plain, &d)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
