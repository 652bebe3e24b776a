package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
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

	_, want := b.sentences(t, org, token, catalog, len(events))

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

// sentences reads the org's newest n events from the JSON page, and each
// as internal/sentence writes it with the catalog's sentences.
func (b *testBundle) sentences(t *testing.T, org, token string, catalog []store.Action, n int) ([]store.Event, []string) {
	t.Helper()
	_, body := b.get(t, fmt.Sprintf("/api/orgs/%s/audit?limit=%d", org, n), token)
	var page struct{ Events []store.Event }
	if err := json.Unmarshal(body, &page); err != nil || len(page.Events) != n {
		t.Fatalf("%d events of %d: %v %s", len(page.Events), n, err, body)
	}
	templates := map[string]string{}
	for _, a := range catalog {
		templates[a.Action] = a.Sentence
	}
	var want []string
	for _, e := range page.Events {
		want = append(want, sentence.Render(templates[e.Action], e, same, same))
	}
	return page.Events, want
}

// same leaves text as it is: sentences as plain text.
func same(s string) string { return s }

// realisticValues are metadata values as the control plane records them,
// by key, with quotes, commas, line breaks and non-ASCII text among them.
var realisticValues = map[string]any{
	"name": `prod "eu", west`, "changes": map[string]any{"name": "x", "labels": []string{"a"}}, "operation": "exec",
	"reason": "missing role \"admin\",\nasked twice", "from_version": "1.4.2", "to_version": 1.50,
	"email": "jöe@exämple.com", "role": "admin", "invited_by": "ken@example.com", "domain": "northwind.example",
	"previous_role": "member", "new_role": "admin", "plan": "team", "subscription_id": "sub_1", "previous_plan": "free",
	"new_plan": "team", "previous_quantity": 1, "new_quantity": 10, "method": "sso", "kind": "slack",
	"host": "hooks.slack.com", "previous_state": "active", "new_state": "paused", "failing_since": "2026-12-01T00:00:00Z",
}

// oddValues are values a sentence must show in a given way: missing ones,
// other JSON types, numbers that JSON and a double write differently, and
// text a CSV must quote or a spreadsheet would run.
var oddValues = []string{`null`, `""`, `true`, `[1.5, "a,b", null, "", {"k": 1, "j": 2}, [2, false]]`, `1e21`, `0.1`,
	`-2.5e-7`, `{"b": 1, "a": {}}`, `{}`, `[]`, `1e400`, `-1e-400`, `123456789012345678901`, `"=SUM(1)"`,
	`"Zürich 東京 🚀\r\n\"x\""`, `"  "`, `["domains", "name", ""]`, `[""]`, `["x, \"y\"", "z\\"]`, `{"a\"b": 1, "ü, ß": 2}`, `"a\u202eb\u0007c\u2067"`, `{"ab": 1, "100": 2, "4294967295": 3, "7": 4}`, `[["a", "b"], {}, []]`}

// TestExportSentencesReadAsSlackAndThePage: the CSV and NDJSON exports'
// sentence of each event reads as internal/sentence (Slack messages) writes
// it, which TestSentencesReadAsOnThePage checks against the page: for
// realistic metadata of every action of the catalog, and for missing keys,
// odd values and every kind of actor; the CSV's cell neutralised as the
// others are. An action without a sentence reads as who acted and its code.
func TestExportSentencesReadAsSlackAndThePage(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	ctx := context.Background()
	catalog, err := store.New(b.admin).Actions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	org, token := b.owner(t, "team")
	now := time.Now().Truncate(time.Second)
	n := 0
	insert := func(action, actorType string, actorID, actorEmail, targetID *string, metadata map[string]any) {
		t.Helper()
		md, err := json.Marshal(metadata)
		if err != nil {
			t.Fatal(err)
		}
		n++
		at := now.Add(-time.Duration(n) * time.Second)
		// The events go back minutes: in the first minutes of a UTC day,
		// to the day before's leaf.
		if _, err := b.admin.Exec(ctx, "SELECT audit.make_leaf('team', ($1::timestamptz AT TIME ZONE 'UTC')::date)", at); err != nil {
			t.Fatal(err)
		}
		_, err = b.admin.Exec(ctx, `INSERT INTO audit.events_team (id, org_id, occurred_at, action, target_type, target_id, actor_type, actor_id, actor_email, metadata)
			SELECT gen_random_uuid(), $1, $2, action, target_type, $3, $4, $5, $6, $7 FROM audit.actions WHERE action = $8`,
			org, at, targetID, actorType, actorID, actorEmail, md, action)
		if err != nil {
			t.Fatal(err)
		}
	}
	ptr := func(s string) *string { return &s }
	userID := "6f1c1d0e-8a0b-4c53-9d7e-3a3f0b9c2d11"
	for i, a := range catalog {
		realistic, missing, odd := map[string]any{"via_pat": "ci"}, map[string]any{}, map[string]any{}
		for j, k := range a.RequiredKeys {
			realistic[k] = cmp.Or(realisticValues[k], any("v-"+k))
			odd[k] = json.RawMessage(oddValues[(i+j)%len(oddValues)])
		}
		insert(a.Action, "user", ptr(userID), ptr("ann@example.com"), ptr("c-7f3a"), realistic)
		insert(a.Action, "system", nil, nil, ptr("c-7f3a, \"b\""), missing)
		insert(a.Action, "user", ptr(userID), ptr(""), ptr(""), odd)
		insert(a.Action, "user", nil, ptr("=cmd|' /C calc'!A0@example.com"), nil, odd)
	}
	insert("auth.signin", "user", nil, nil, nil, map[string]any{"method": "sso"})

	events, want := b.sentences(t, org, token, catalog, n)

	resp, body := b.get(t, "/api/orgs/"+org+"/audit?format=csv", token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(rows) != n+1 {
		t.Fatalf("%d CSV rows of %d: %v", len(rows), n+1, err)
	}
	col := slices.Index(rows[0], "sentence")
	if col < 0 {
		t.Fatalf("no sentence column: %q", rows[0])
	}
	resp, body = b.get(t, "/api/orgs/"+org+"/audit?format=ndjson", token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	if len(lines) != n+1 { // and the manifest
		t.Fatalf("%d NDJSON lines of %d", len(lines), n+1)
	}
	for i, w := range want {
		// encoding/csv reads a quoted \r\n as \n.
		if got := rows[i+1][col]; got != strings.ReplaceAll(neutralised(w), "\r\n", "\n") {
			t.Errorf("%s: the CSV reads %q, internal/sentence %q", events[i].Action, got, w)
		}
		var line struct{ Sentence *string }
		if err := json.Unmarshal(lines[i], &line); err != nil || line.Sentence == nil || *line.Sentence != w {
			t.Errorf("%s: the NDJSON line reads %v (%v), internal/sentence %q", events[i].Action, line.Sentence, err, w)
		}
	}
	for _, s := range []string{`cluster "prod "eu", west"`, "Unknown user signed in with sso", "System deleted cluster \"…\"",
		"'=cmd|' /C calc'!A0@example.com ", userID + " ", "from member to admin", "from 1.4.2 to 1.5", "1e+21",
		"0.1", "-2.5e-7", "a\ufffdb\ufffdc\ufffd", "7, 100, ab, 4294967295", "1.5, a,b, , , j, k, 2, false", "domains, name, ", `x, "y", z\`, `a"b, ü, ß`, `Zürich 東京 🚀`} {
		if !bytes.Contains([]byte(strings.Join(slices.Concat(rows...), "\n")), []byte(s)) {
			t.Errorf("no sentence of the CSV shows %q", s)
		}
	}

	var got string
	if err := b.admin.QueryRow(ctx, "SELECT audit.event_sentence('no.sentence', 'user', NULL, 'ann@example.com', NULL, '{}')").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if w := sentence.Render("", store.Event{Action: "no.sentence", ActorType: "user", ActorEmail: ptr("ann@example.com")}, same, same); got != w {
		t.Errorf("an action without a sentence reads %q, internal/sentence %q", got, w)
	}
}
