package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestActivityPageShowsStreams: the Streams panel lists each subscription
// with its rule, destination host, state, lag and last attempts, and never
// its destination's URL; it opens by keyboard, fits every width from 320
// to 1440 px and passes the accessibility scan; a member sees none of it.
func TestActivityPageShowsStreams(t *testing.T) {
	t.Parallel()
	b := setupActivity(t)
	ctx := context.Background()
	if _, err := b.admin.Exec(ctx, "INSERT INTO audit.delivery_keys (key_id, public_key) VALUES ('k1', decode(repeat('ab', 32), 'hex'))"); err != nil {
		t.Fatal(err)
	}
	subscribe := func(name, kind, host, actions, emails string) string {
		var id string
		err := b.admin.QueryRow(ctx, `SELECT audit.subscribe($1, $2, $3, $4, 'k1', convert_to('SECRET-MARKER https://' || $4 || '/secret-path', 'UTF8'), $5, '{}', $6)::text`,
			b.org, name, kind, host, actions, emails).Scan(&id)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	var siem, alerts string
	addStreams := func() {
		siem = subscribe("siem", "webhook", "hooks.example.com", "{cluster.*,pat.created}", "{}")
		alerts = subscribe("security alerts", "slack", "hooks.slack.com", "{}", "{ann@example.com}")
		// The org's feed is at seq 70: siem fails once, then delivers up to 64
		// (6 behind); the alerts fail until they are marked failing.
		steps := []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO audit.seal_heads (org_id, seq, hash, sealed_at) VALUES ($1, 70, decode(repeat('00', 32), 'hex'), now())`, []any{b.org}},
			{`SELECT audit.record_delivery($1, 0, 0, false, now() - interval '2 minutes', 503, 12, 1, 64, 40, 'hooks.example.com answered 503 Service Unavailable')`, []any{siem}},
			{`SELECT audit.record_delivery($1, 0, 64, true, now() - interval '1 minute', 200, 41, 1, 64, 40, NULL)`, []any{siem}},
			{`SELECT audit.record_delivery($1, 0, 0, false, now() - interval '3 minutes', NULL, 10000, 5, 9, 2, 'context deadline exceeded')`, []any{alerts}},
			{`SELECT audit.mark_subscription_failing($1, (SELECT failing_since FROM audit.subscriptions WHERE id = $1))`, []any{alerts}},
		}
		for _, st := range steps {
			if _, err := b.admin.Exec(ctx, st.sql, st.args...); err != nil {
				t.Fatalf("%s: %v", st.sql, err)
			}
		}
	}

	bctx := newBrowser(t)
	do(bctx, t, chromedp.Navigate(b.page))
	signIn(bctx, t, b.ownerToken)
	// Before any subscription there is no panel.
	waitRows(bctx, t, 50)
	if hidden, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`loadStreams().then(() => document.getElementById('streams').hidden)`, chromedp.EvalAwaitPromise)); err != nil || !hidden {
		t.Errorf("a Streams panel for an org that streams nothing (%v)", err)
	}
	addStreams()
	do(bctx, t, chromedp.Reload())
	waitText(bctx, t, "streams-summary", "2 subscriptions, 1 failing, up to 6 events behind")
	if eval[bool](bctx, t, `document.getElementById('streams').open`) {
		t.Error("the Streams panel is open before the reader opens it")
	}
	// Opened with the keyboard, it lists both, by name.
	do(bctx, t, chromedp.Focus(chromedp.CSS("#streams > summary")), chromedp.KeyEvent("\r"))
	do(bctx, t, chromedp.WaitVisible(chromedp.CSS("#streams-list li.stream")))
	shown := text(bctx, t, "streams-list")
	for _, want := range []string{
		"security alerts", "Failing since", "Slack to hooks.slack.com", "Events with actors ann@example.com",
		"Failed: context deadline exceeded", "2 events, seq 5–9",
		"siem", "Active", "Webhook to hooks.example.com", "Events with actions cluster.*, pat.created",
		"6 events behind (delivered up to seq 64)", "Delivered (200) · 40 events, seq 1–64 · 41 ms",
	} {
		if !strings.Contains(shown, want) {
			t.Errorf("the Streams panel lacks %q:\n%s", want, shown)
		}
	}
	if names := eval[[]string](bctx, t, `[...document.querySelectorAll('#streams-list .stream-head strong')].map(s => s.textContent)`); strings.Join(names, ",") != "security alerts,siem" {
		t.Errorf("streams listed as %v, want by name", names)
	}
	if page := eval[string](bctx, t, `document.documentElement.outerHTML`); strings.Contains(page, "SECRET-MARKER") || strings.Contains(page, "secret-path") {
		t.Error("the page shows a sealed destination")
	}

	// siem's attempts, newest first, open by keyboard; the panel read again
	// keeps them open.
	do(bctx, t, chromedp.Focus(chromedp.CSS(`#streams-list details[data-id="`+siem+`"] > summary`)), chromedp.KeyEvent(" "))
	attempts := func() []string {
		return eval[[]string](bctx, t, `[...document.querySelectorAll('#streams-list details[data-id="`+siem+`"][open] .attempts li')].map(l => l.textContent)`)
	}
	if a := attempts(); len(a) != 2 || !strings.Contains(a[0], "Delivered (200)") || !strings.Contains(a[1], "Failed (503): hooks.example.com answered 503") {
		t.Errorf("siem's attempts read %q", a)
	}
	do(bctx, t, chromedp.Evaluate[chromedp.Void](`loadStreams()`), chromedp.Sleep(500*time.Millisecond))
	if a := attempts(); len(a) != 2 {
		t.Errorf("after the panel was read again, siem's attempts show %q", a)
	}
	shoot(bctx, t, "activity-streams")
	fitsEveryWidth(bctx, t)
	scanAccessibility(bctx, t, "streams open")

	// A member is refused the page, streams and all.
	do(bctx, t, chromedp.Click(chromedp.ID("sign-out")))
	signIn(bctx, t, b.memberToken)
	do(bctx, t, chromedp.WaitVisible(chromedp.ID("denied")))
	if shownToMember := eval[string](bctx, t, `document.body.innerText`); strings.Contains(shownToMember, "siem") || strings.Contains(shownToMember, "hooks.") {
		t.Errorf("a member sees the streams: %s", shownToMember)
	}
}
