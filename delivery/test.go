package delivery

import (
	"context"
	"crypto/ecdh"
	"fmt"
	"io"
	"time"

	"github.com/auditlog/auditlog/internal/store"
)

// Test sends subscription id of org orgID a delivery with no events, signed
// as any other (Slack and Splunk: one test event of seq 0), and returns the destination's HTTP status: a receiver
// checks its set-up with it. db is a role holding audit_deliverer (it reads
// the sealed destination); key opens it.
func Test(ctx context.Context, db Querier, key *ecdh.PrivateKey, g Guard, orgID, id string) (int, error) {
	var s sub
	err := db.QueryRow(ctx, "SELECT org_id::text, kind, sealed FROM audit.subscriptions WHERE org_id = $1 AND id = $2", orgID, id).
		Scan(&s.orgID, &s.kind, &s.sealed)
	if err != nil {
		return 0, fmt.Errorf("read subscription %s: %w", id, err)
	}
	d, err := Open(key, s.sealed)
	if err != nil {
		return 0, err
	}
	// A webhook gets an empty batch; Slack and Splunk, which need content,
	// one event of seq 0 saying what it is.
	events := []store.FeedEvent{}
	if s.kind != KindWebhook {
		target := id
		events = append(events, store.FeedEvent{Event: store.Event{
			OrgID: orgID, OccurredAt: time.Now(), Action: "test", TargetType: "audit_stream", TargetID: &target,
			ActorType: "system", Metadata: []byte("{}"),
		}})
	}
	reqs, err := requests(ctx, id, s, d, events, time.Now(), "", nil)
	if err != nil {
		return 0, err
	}
	client := g.Client(10 * time.Second)
	defer client.CloseIdleConnections()
	resp, err := do(client, reqs[0])
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	return resp.StatusCode, nil
}
