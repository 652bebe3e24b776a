package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/importer"
)

// state is what a seeded org has, each thing with the time it appeared.
type state struct {
	members  []seededMember
	clusters []seededCluster
	pats     []seededPAT
}

type seededMember struct {
	person *person
	role   string
	joined time.Time
}

type seededCluster struct {
	id      string
	spec    clusterSpec
	created time.Time
}

type seededPAT struct {
	id      string
	spec    patSpec
	owner   *person
	created time.Time
}

// historyEnd is how long before the demo's live part its history stops.
const historyEnd = 15 * time.Minute

// history is the older part: each seeded org's retention window, from its
// start (or the org's creation) to a quarter of an hour ago, written as
// NDJSON and loaded through the bulk import.
func (r *runner) history(ctx context.Context) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, o := range world {
		if o.live {
			continue
		}
		var retention int64
		if err := r.tx.QueryRow(ctx, query("retention"), o.plan).Scan(&retention); err != nil {
			return fmt.Errorf("demo: retention of the %s plan: %w", o.plan, err)
		}
		// An hour inside the window, so the oldest event is still retained
		// when the import checks it.
		start := r.now.Add(-time.Duration(retention)*time.Second + time.Hour)
		if created := r.now.Add(-o.age); created.After(start) {
			start = created
		}
		h := historian{runner: r, org: o, st: r.seeded[o], start: start, end: r.now.Add(-historyEnd), defaultRole: "member"}
		for _, e := range h.events() {
			if err := enc.Encode(e); err != nil {
				return fmt.Errorf("demo: write history: %w", err)
			}
		}
	}
	rep, err := importer.Import(ctx, r.tx, &buf, importer.Options{
		Format: importer.FormatNDJSON, Size: int64(buf.Len()), Progress: r.cfg.Progress, Logger: r.cfg.Logger, Now: r.cfg.Now,
	})
	if err != nil {
		return fmt.Errorf("demo: import history: %w", err)
	}
	if rep.Loaded != rep.Rows {
		return fmt.Errorf("demo: import history: %d of %d rows not loaded: %v %v", rep.Rows-rep.Loaded, rep.Rows, rep.Problems, rep.Skips)
	}
	r.imported = rep
	return nil
}

// event is a line of the history's NDJSON, in the import's columns.
type event struct {
	OrgID      string          `json:"org_id"`
	OccurredAt time.Time       `json:"occurred_at"`
	Action     auditlog.Action `json:"action"`
	TargetID   string          `json:"target_id,omitempty"`
	ActorID    string          `json:"actor_id,omitempty"`
	ActorEmail string          `json:"actor_email,omitempty"`
	IP         string          `json:"ip,omitempty"`
	UserAgent  string          `json:"user_agent,omitempty"`
	RequestID  string          `json:"request_id,omitempty"`
	Metadata   map[string]any  `json:"metadata,omitempty"`
}

// historian writes one org's history between start and end.
type historian struct {
	*runner
	org         *orgSpec
	st          *state
	start, end  time.Time
	defaultRole string // the role people joining by domain get, as org.updated changes it
	out         []event
}

// events is the org's history: the milestones that fall in the window (the
// org's creation, members joining, clusters and tokens created, monthly
// billing) and, every day, people signing in and out and working on their
// clusters, fewer at weekends.
func (h *historian) events() []event {
	h.milestones()
	for d := h.start.Truncate(day); d.Before(h.end); d = d.Add(day) {
		n := h.org.perDay
		if wd := d.Weekday(); wd == time.Saturday || wd == time.Sunday {
			n /= 4
		}
		n += h.rng.IntN(n/3+1) - n/6
		for range n {
			at := d.Add(7*time.Hour + time.Duration(h.rng.Int64N(int64(11*time.Hour))))
			if at.Before(h.start) || !at.Before(h.end) {
				continue
			}
			h.everyday(at)
		}
	}
	return h.out
}

func (h *historian) milestones() {
	o, st := h.org, h.st
	founder := st.members[0]
	if h.within(founder.joined) {
		h.emit(founder.person, browser, "", founder.joined, auditlog.AuthSignin, founder.person.id, map[string]any{"method": o.signin})
		h.emit(founder.person, browser, "", founder.joined.Add(time.Minute), auditlog.OrgCreated, o.id, map[string]any{"name": o.name})
	}
	for _, m := range st.members[1:] {
		invited := m.joined.Add(-time.Duration(1+h.rng.IntN(20)) * time.Hour)
		if !h.within(invited) {
			continue
		}
		inviter := founder.person
		invitation := fmt.Sprintf("%08x-0000-4000-8000-%012x", h.rng.Uint32(), h.rng.Uint64()>>16)
		h.emit(inviter, browser, "", invited, auditlog.OrgInvitationCreated, invitation, map[string]any{"email": m.person.email, "role": m.role})
		h.emit(m.person, browser, "", m.joined, auditlog.OrgInvitationAccepted, invitation, map[string]any{"email": m.person.email})
		h.emit(m.person, browser, "", m.joined, auditlog.OrgMemberJoined, m.person.id, map[string]any{"invited_by": inviter.email, "role": m.role})
	}
	for _, c := range st.clusters {
		if h.within(c.created) {
			h.emit(h.admin(c.created), browser, "", c.created, auditlog.ClusterCreated, c.id,
				map[string]any{"name": c.spec.name, "env": c.spec.env, "region": c.spec.region})
		}
	}
	for _, p := range st.pats {
		if h.within(p.created) {
			h.emit(p.owner, browser, "", p.created, auditlog.PATCreated, p.id, map[string]any{"name": p.spec.name})
		}
	}
	if o.plan == "enterprise" {
		h.streams()
	}
	// The agent's releases, one every couple of months over the last year;
	// each cluster is upgraded within days, except the one the live part
	// upgrades to the last release.
	every := 365 * day / time.Duration(len(agentVersions))
	for i := 1; i < len(agentVersions); i++ {
		released := h.now.Add(-365*day + time.Duration(i)*every)
		for _, c := range st.clusters {
			at := released.Add(time.Duration(1 + h.rng.Int64N(int64(10*day))))
			if c.created.After(released) || !h.within(at) || i == len(agentVersions)-1 && c.spec.name == laggingCluster {
				continue
			}
			h.emit(h.admin(at), browser, "", at, auditlog.ClusterAgentUpgradeRequested, c.id, map[string]any{
				"from_version": agentVersions[i-1], "to_version": agentVersions[i], "name": c.spec.name})
		}
	}
	if o.subscription == "" {
		return
	}
	quantity := len(o.clusters)
	for at := h.start.Add(36 * time.Hour); at.Before(h.end); at = at.Add(30 * day) {
		next := quantity + 1 - 2*h.rng.IntN(2)
		h.emit(nil, stripe, "", at, auditlog.BillingSubscriptionChanged, o.subscription, map[string]any{
			"subscription_id": o.subscription, "previous_plan": o.plan, "new_plan": o.plan,
			"previous_quantity": quantity, "new_quantity": next})
		quantity = next
	}
}

// streams is the enterprise org's delivery history, one of each
// audit_stream action: a SIEM stream paused for a maintenance and resumed,
// and a Slack alert that kept failing, stopped, and was removed.
func (h *historian) streams() {
	owner := h.st.members[0].person
	const siem, alerts = "5eed57e0-0000-4000-8000-000000000001", "5eed57e0-0000-4000-8000-000000000002"
	at := h.end.Add(-40 * day)
	if !h.within(at) {
		return
	}
	h.emit(owner, browser, "", at, auditlog.AuditStreamCreated, siem, map[string]any{"name": "splunk", "kind": "splunk_hec", "host": "splunk.northwind.example"})
	h.emit(owner, browser, "", at.Add(2*day), auditlog.AuditStreamCreated, alerts, map[string]any{"name": "security alerts", "kind": "slack", "host": "hooks.slack.com"})
	for i, state := range [][2]string{{"active", "paused"}, {"paused", "active"}} {
		h.emit(owner, browser, "", at.Add(9*day+time.Duration(i)*2*time.Hour), auditlog.AuditStreamUpdated, siem, map[string]any{
			"name": "splunk", "changes": "state", "previous_state": state[0], "new_state": state[1]})
	}
	h.emit(nil, client{}, "", at.Add(20*day), auditlog.AuditStreamFailing, alerts, map[string]any{
		"name": "security alerts", "failing_since": at.Add(19 * day).UTC().Format(time.RFC3339)})
	h.emit(owner, browser, "", at.Add(21*day), auditlog.AuditStreamDeleted, alerts, map[string]any{"name": "security alerts"})
}

// everyday is one ordinary thing happening at at: mostly someone signing
// in (and out later), often a cluster changed, now and then a refusal, a
// token rotated, a setting changed.
func (h *historian) everyday(at time.Time) {
	m := h.present(at)
	cluster := h.cluster(at)
	switch k := h.rng.IntN(1000); {
	case k < 250 && cluster != nil:
		who, c, viaPAT := h.admin(at), browser, ""
		if p := h.pat(at); p != nil && h.rng.IntN(2) == 0 {
			who, c, viaPAT = p.owner, p.spec.client, p.spec.name
		}
		h.emit(who, c, viaPAT, at, auditlog.ClusterUpdated, cluster.id, map[string]any{"name": cluster.spec.name, "changes": map[string]any{
			"labels": []map[string]string{{"team": "platform"}, {"team": "platform", "cost-center": fmt.Sprint(100 + h.rng.IntN(900))}}}})
	case k < 265 && cluster != nil:
		h.emit(h.admin(at), browser, "", at, auditlog.ClusterTokenRotated, cluster.id, map[string]any{"name": cluster.spec.name})
	case k < 270 && h.org.plan == "enterprise":
		h.emit(h.st.members[0].person, browser, "", at, auditlog.OrgSSOPortalOpened, h.org.id, nil)
	case k < 273:
		previous := h.defaultRole
		h.defaultRole = map[string]string{"member": "admin", "admin": "member"}[previous]
		h.emit(h.st.members[0].person, browser, "", at, auditlog.OrgUpdated, h.org.id, map[string]any{
			"changes": map[string]any{"default_role": []string{previous, h.defaultRole}}})
	case k < 333 && cluster != nil && m.role == "member":
		h.emit(m.person, browser, "", at, auditlog.ClusterActionDenied, cluster.id, map[string]any{
			"operation": "cluster.token_rotate", "reason": "role member may not rotate install tokens", "name": cluster.spec.name})
	default:
		h.emit(m.person, browser, "", at, auditlog.AuthSignin, m.person.id, map[string]any{"method": h.org.signin})
		if out := at.Add(time.Duration(1+h.rng.IntN(8)) * time.Hour); out.Before(h.end) {
			h.emit(m.person, browser, "", out, auditlog.AuthSignout, m.person.id, nil)
		}
	}
}

func (h *historian) within(t time.Time) bool { return !t.Before(h.start) && t.Before(h.end) }

// present is a member who had joined by at.
func (h *historian) present(at time.Time) seededMember {
	for {
		if m := h.st.members[h.rng.IntN(len(h.st.members))]; !m.joined.After(at) {
			return m
		}
	}
}

// admin is an owner or admin who had joined by at.
func (h *historian) admin(at time.Time) *person {
	for {
		if m := h.present(at); m.role != "member" {
			return m.person
		}
	}
}

// cluster is a cluster that existed at at, or nil.
func (h *historian) cluster(at time.Time) *seededCluster {
	var existing []*seededCluster
	for i := range h.st.clusters {
		if !h.st.clusters[i].created.After(at) {
			existing = append(existing, &h.st.clusters[i])
		}
	}
	if len(existing) == 0 {
		return nil
	}
	return existing[h.rng.IntN(len(existing))]
}

// pat is a token that existed at at, or nil.
func (h *historian) pat(at time.Time) *seededPAT {
	for i := range h.st.pats {
		if !h.st.pats[i].created.After(at) {
			return &h.st.pats[i]
		}
	}
	return nil
}

// emit adds an event by who (nil: the platform), from client c, with a
// personal access token if viaPAT is set.
func (h *historian) emit(who *person, c client, viaPAT string, at time.Time, action auditlog.Action, target string, metadata map[string]any) {
	e := event{OrgID: h.org.id, OccurredAt: at, Action: action, TargetID: target, UserAgent: c.userAgent,
		RequestID: h.requestID(), Metadata: metadata}
	if c.ip.IsValid() {
		e.IP = c.ip.String()
	}
	if who != nil {
		e.ActorID, e.ActorEmail = who.id, who.email
		if e.IP == "" {
			e.IP = userIP(who.email).String()
		}
	}
	if viaPAT != "" {
		e.Metadata["via_pat"] = viaPAT
	}
	h.out = append(h.out, e)
}
