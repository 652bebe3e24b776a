package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// The headers of a signed webhook request (docs/delivery.md).
const (
	HeaderTimestamp = "Auditlog-Timestamp" // Unix seconds when the request was signed
	HeaderSignature = "Auditlog-Signature" // "v1=" and the hex HMAC-SHA256
)

// Sign is the signature header's value for body sent at t: v1= and the hex
// HMAC-SHA256, under secret, of the timestamp, a dot and the body (the
// Stripe convention).
func Sign(secret string, t time.Time, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(t.Unix(), 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify is what a receiver does: the signature matches the timestamp and
// body, and the timestamp is within tolerance of now (5 minutes rejects
// replays).
func Verify(secret, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) bool {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	t := time.Unix(sec, 0)
	if now.Sub(t).Abs() > tolerance {
		return false
	}
	return hmac.Equal([]byte(Sign(secret, t, body)), []byte(signature))
}
