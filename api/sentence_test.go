package api

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sentence"
	"github.com/auditlog/auditlog/internal/store"
)

// TestSentencesReadAsOnThePage: internal/sentence (Slack messages) writes
// each event as the Activity page does, for an event of every action of the
// catalog and for values the page must show in a given way (an object's
// keys, a list, a number, true, a missing value, a system actor, an empty
// list or object as missing, lists in a list, numbers JavaScript writes
// with an exponent, and control and bidirectional formatting characters,
// which both show as U+FFFD so a value cannot reorder or break the line).
func TestSentencesReadAsOnThePage(t *testing.T) {
	t.Parallel()
	b := setupActivity(t)
	catalog, err := store.New(b.admin).Actions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	type event struct{ action, actor, metadata string }
	var events []event
	for _, a := range catalog {
		m := map[string]any{}
		for _, k := range a.RequiredKeys {
			m[k] = "v-" + k
		}
		m["changes"] = map[string]any{"name": "x", "env": "y"}
		md, _ := json.Marshal(m)
		events = append(events, event{a.Action, "ann@example.com", string(md)})
	}
	events = append(events,
		event{"pat.created", "ann@example.com", `{}`},
		event{"org.updated", "", `{"changes": ["domains", "name"]}`},
		event{"cluster.agent.upgrade_requested", "ann@example.com", `{"from_version": 1.5, "to_version": true}`},
		event{"org_member.role_changed", "ann@example.com", `{"email": "", "previous_role": null, "new_role": "admin"}`},
		event{"org.updated", "ann@example.com", `{"changes": []}`},
		event{"cluster.updated", "ann@example.com", `{"changes": {}, "name": "c1"}`},
		event{"org.updated", "ann@example.com", `{"changes": [["a", "b"], {"c": 1}, null, 2]}`},
		event{"org.updated", "ann@example.com", `{"changes": {"ab": 1, "100": 2}}`},
		event{"cluster.agent.upgrade_requested", "ann@example.com", `{"from_version": 1e21, "to_version": 1e-7}`},
		event{"cluster.agent.upgrade_requested", "ann@example.com", `{"from_version": -0, "to_version": 0.000001}`},
		event{"pat.revoked", "ann@example.com", `{"name": "\u202eterraform\u2066x\u200f"}`},
		event{"pat.created", "ann@example.com", `{"name": "ci\n*mallory* revoked token \"prod\"\t\u0007"}`})
	bidi := "\u202e"
	org, token := b.owner(t, "team")
	now := time.Now()
	for i, e := range events {
		fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Action: e.action, ActorEmail: e.actor, Metadata: e.metadata,
			OccurredAt: now.Add(-time.Duration(i+1) * time.Minute)})
	}

	_, body := b.get(t, fmt.Sprintf("/api/orgs/%s/audit?limit=%d", org, len(events)), token)
	var page struct{ Events []store.Event }
	if err := json.Unmarshal(body, &page); err != nil || len(page.Events) != len(events) {
		t.Fatalf("%d events: %v %s", len(page.Events), err, body)
	}
	templates := map[string]string{}
	for _, a := range catalog {
		templates[a.Action] = a.Sentence
	}
	same := func(s string) string { return s }
	var want []string
	for _, e := range page.Events {
		want = append(want, sentence.Render(templates[e.Action], e, same, same))
	}

	ctx := newBrowser(t)
	do(ctx, t, chromedp.Navigate(b.base+"/orgs/"+org+"/activity"))
	signIn(ctx, t, token)
	waitRows(ctx, t, len(events))
	got := eval[[]string](ctx, t, `[...document.querySelectorAll('#rows .sentence')].map(s => s.textContent)`)
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("the page reads %q, internal/sentence %q", got[i], want[i])
			}
		}
	}
	if !slices.ContainsFunc(want, func(s string) bool { return strings.Contains(s, "changed the organization's domains, name") }) {
		t.Errorf("no list among %q", want)
	}
	for _, s := range want {
		if strings.ContainsAny(s, bidi+"\n\t\a") {
			t.Errorf("%q keeps a control or bidirectional formatting character", s)
		}
	}
	if n := eval[int](ctx, t, `document.querySelectorAll('#rows .sentence bdi').length`); n == 0 {
		t.Error("no value of a sentence is isolated in a bdi element")
	}
}
