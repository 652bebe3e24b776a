package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/store"
)

// A cursor is where the next page starts: the (occurred_at, id) of the last
// event shown, bound to the org, signed with HMAC-SHA256 under the key in
// audit.api_keys, so every replica accepts every other's cursors, across
// restarts, and a changed or foreign cursor is refused. It is opaque to
// clients: base64url of
//
//	version (1 byte) | org id (16) | occurred_at, µs since the Unix epoch (8) | event id (16) | MAC (16)
const (
	cursorVersion = 1
	cursorPayload = 1 + 16 + 8 + 16
	cursorMAC     = 16
)

var (
	errCursorInvalid  = errors.New("not a cursor this API issued, or changed since; start again without it")
	errCursorOtherOrg = errors.New("belongs to another org's audit log")
)

// encodeCursor returns the cursor for position pos in org's events.
func encodeCursor(key []byte, org uuid.UUID, pos store.Position) string {
	id, _ := uuid.Parse(pos.ID) // ids come from the database
	b := make([]byte, cursorPayload, cursorPayload+sha256.Size)
	b[0] = cursorVersion
	copy(b[1:17], org[:])
	binary.BigEndian.PutUint64(b[17:25], uint64(pos.OccurredAt.UnixMicro()))
	copy(b[25:41], id[:])
	b = append(b, sign(key, b)...)
	return base64.RawURLEncoding.EncodeToString(b[:cursorPayload+cursorMAC])
}

// decodeCursor checks a cursor and returns its position.
func decodeCursor(key []byte, org uuid.UUID, s string) (store.Position, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != cursorPayload+cursorMAC || b[0] != cursorVersion {
		return store.Position{}, errCursorInvalid
	}
	if !hmac.Equal(sign(key, b[:cursorPayload])[:cursorMAC], b[cursorPayload:]) {
		return store.Position{}, errCursorInvalid
	}
	if !hmac.Equal(b[1:17], org[:]) {
		return store.Position{}, errCursorOtherOrg
	}
	id, _ := uuid.FromBytes(b[25:41])
	at := time.UnixMicro(int64(binary.BigEndian.Uint64(b[17:25]))).UTC()
	return store.Position{OccurredAt: at, ID: id.String()}, nil
}

func sign(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(payload)
	return m.Sum(nil)
}
