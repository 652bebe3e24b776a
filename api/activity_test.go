package api

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/auditlog/auditlog/internal/fixture"
)

// browserPath finds a Chromium or Chrome to drive, where
// scripts/install-deps.sh looks (make test installs one where it can).
// Without one the browser tests are skipped, unless AUDITLOG_REQUIRE_BROWSER
// is set (CI sets it), when that is a failure.
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	for _, app := range []string{"/Applications/Chromium.app/Contents/MacOS/Chromium", "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"} {
		if _, err := os.Stat(app); err == nil {
			return app
		}
	}
	if os.Getenv("AUDITLOG_REQUIRE_BROWSER") != "" {
		t.Fatal("no Chromium found (scripts/install-deps.sh chromium says how to install one); AUDITLOG_REQUIRE_BROWSER is set")
	}
	t.Skip("no Chromium found (scripts/install-deps.sh chromium says how to install one): skipping the browser test")
	return ""
}

// newBrowser starts a headless Chromium of its own for the test, with the
// flags a closed network wants, and returns a tab's context.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browserPath(t)),
		chromedp.NoSandbox, // we may be root, in a container
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	return ctx
}

// activityBundle is an org with a history to browse, its owner's and a mere
// member's tokens, and the page's URL.
type activityBundle struct {
	*testBundle
	org, ownerToken, memberToken, page string
}

// ownerSignedIn opens the Activity page in a new browser, signed in as the
// org's owner, once its first 50 rows show.
func ownerSignedIn(t *testing.T) (activityBundle, context.Context) {
	b := setupActivity(t)
	ctx := newBrowser(t)
	do(ctx, t, chromedp.Navigate(b.page))
	signIn(ctx, t, b.ownerToken)
	waitRows(ctx, t, 50)
	return b, ctx
}

func setupActivity(t *testing.T) activityBundle {
	t.Helper()
	b := setup(t, Config{})
	org, ownerToken := b.owner(t, "team")
	member, _ := fixture.User(t, b.admin, fixture.UserOpts{OrgID: org, Role: "member"})
	now := time.Now()
	add := func(n int, action, actor, metadata string) {
		for i := range n {
			fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Action: action, ActorEmail: actor,
				OccurredAt: now.Add(-time.Duration(len(action)*7+i*53) * time.Minute), Metadata: metadata})
		}
	}
	add(40, "auth.signin", "bob@example.com", `{"method": "sso"}`)
	add(15, "cluster.created", "ann@example.com", `{"name": "prod-eu", "labels": {"env": "prod"}}`)
	add(5, "cluster.token_rotated", "ann@example.com", `{"name": "prod-eu", "via_pat": "deploy-bot"}`)
	add(1, "org_member.role_changed", "carol@example.com", `{"previous_role": "member", "new_role": "admin"}`)
	return activityBundle{testBundle: b, org: org, ownerToken: ownerToken,
		memberToken: b.token(t, member, tokenOpts{}), page: b.base + "/orgs/" + org + "/activity"}
}

// placeholdersCutJS names the visible inputs whose placeholder is wider
// than the room inside them.
const placeholdersCutJS = `[...document.querySelectorAll('input[placeholder]')].filter((i) => i.offsetParent).filter((i) => {
	const s = getComputedStyle(i), c = document.createElement('canvas').getContext('2d');
	c.font = s.font;
	return c.measureText(i.placeholder).width > i.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
}).map((i) => i.id).join(' ')`

// eventRowsJS lists the actions of the log's rows, as shown.
const eventRowsJS = `[...document.querySelectorAll('#rows tr.event code.action')].map(c => c.textContent)`

// waitRows waits until the log shows n rows, and returns their actions.
func waitRows(ctx context.Context, t *testing.T, n int) []string {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](
		fmt.Sprintf(`document.querySelectorAll('#rows tr.event').length === %d`, n),
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		status, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("status")))
		t.Fatalf("waiting for %d rows: %v (status: %q)", n, err, status)
	}
	return eval[[]string](ctx, t, eventRowsJS)
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](ctx context.Context, t *testing.T, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// text is the text of the element with this id.
func text(ctx context.Context, t *testing.T, id string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("text of #%s: %v", id, err)
	}
	return v
}

// do runs the steps and fails the test on an error, saying what the page
// showed.
func do(ctx context.Context, t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		shown, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("%v; the page shows:\n%s", err, shown)
	}
}

// TestActivityPage drives the page in a real headless Chromium as an owner
// would: sign in, page through the log, filter by action and by actor,
// reload a shared view, open a row, export the CSV, sign out.
func TestActivityPage(t *testing.T) {
	t.Parallel()
	b := setupActivity(t)
	ctx := newBrowser(t)

	// Signed out: the sign-in form, nothing else.
	do(ctx, t, chromedp.Navigate(b.page), chromedp.WaitVisible(chromedp.ID("token")))
	if !eval[bool](ctx, t, `!document.getElementById('sign-in').hidden && document.getElementById('content').hidden`) {
		t.Fatal("signed out, the page shows more than the sign-in form")
	}

	// A wrong token is refused on the form.
	do(ctx, t,
		chromedp.SendKeys(chromedp.ID("token"), "alpat_not-a-token"),
		chromedp.Click(chromedp.CSS("#sign-in-form button")),
		chromedp.Poll[chromedp.Void](`document.getElementById('sign-in-error').textContent !== ''`, chromedp.WithPollingTimeout(10*time.Second)))
	if refusal := text(ctx, t, "sign-in-error"); !strings.Contains(refusal, "token") {
		t.Fatalf("wrong token: %q", refusal)
	}

	// Signed in: the newest 50 events, the plan's retention, a bar per day.
	do(ctx, t,
		chromedp.Evaluate[chromedp.Void](`document.getElementById('token').value = ''`),
		chromedp.SendKeys(chromedp.ID("token"), b.ownerToken),
		chromedp.Click(chromedp.CSS("#sign-in-form button")),
		chromedp.Poll[chromedp.Void](`document.querySelector('#rows tr.event') !== null`, chromedp.WithPollingTimeout(20*time.Second)))
	first := waitRows(ctx, t, 50)
	// The action dropdown offers the catalog at once, without a reload.
	do(ctx, t, chromedp.Poll[chromedp.Void](`document.querySelectorAll('#action-list option').length > 0`, chromedp.WithPollingTimeout(10*time.Second)))
	// The rows show as their page arrives, the summary once its own request
	// has answered too.
	do(ctx, t, chromedp.Poll[chromedp.Void](`document.querySelectorAll('#chart .bar').length > 0`, chromedp.WithPollingTimeout(20*time.Second)))
	if r := text(ctx, t, "retention"); !strings.Contains(r, "30 days") || !strings.Contains(r, "Team plan") {
		t.Errorf("retention stated as %q", r)
	}
	if name, bars := text(ctx, t, "org-name"), eval[int](ctx, t, `document.querySelectorAll('#chart .bar').length`); !strings.HasPrefix(name, "org-") || bars != 7 {
		t.Errorf("org name %q, %d bars, want 7 (the last 6 days and today)", name, bars)
	}
	if first[0] != "auth.signin" {
		t.Errorf("newest row %q", first[0])
	}

	// More rows: the next page, the first one unchanged.
	do(ctx, t, chromedp.Click(chromedp.ID("more")))
	if all := waitRows(ctx, t, 61); !slices.Equal(all[:50], first) {
		t.Error("the first page changed when the next was added")
	}

	// Filter by action, free text: "token" finds cluster.token_rotated.
	do(ctx, t, chromedp.SendKeys(chromedp.ID("f-action"), "token"), chromedp.Click(chromedp.CSS("#filters button[type=submit]")))
	for _, a := range waitRows(ctx, t, 5) {
		if a != "cluster.token_rotated" {
			t.Errorf("action filter shows %s", a)
		}
	}
	if u, err := chromedp.Run(ctx, chromedp.Location()); err != nil || !strings.Contains(u, "q=token") {
		t.Errorf("the URL does not hold the filter: %s %v", u, err)
	}

	// Filter by actor instead: ann's 20 events.
	do(ctx, t,
		chromedp.Evaluate[chromedp.Void](`document.getElementById('f-action').value = ''`),
		chromedp.SendKeys(chromedp.ID("f-actor"), "ann@example.com"),
		chromedp.Click(chromedp.CSS("#filters button[type=submit]")))
	annRows := waitRows(ctx, t, 20)
	for _, a := range annRows {
		if a != "cluster.created" && a != "cluster.token_rotated" {
			t.Errorf("actor filter shows %s", a)
		}
	}

	// Each row reads as a sentence, from the catalog and the metadata.
	sentences := eval[[]string](ctx, t, `[...document.querySelectorAll('#rows .sentence')].map(s => s.textContent)`)
	if !slices.Contains(sentences, `ann@example.com registered cluster "prod-eu"`) {
		t.Errorf("ann's rows read %q", sentences)
	}

	// The view can be shared: reloading its URL shows the same log.
	do(ctx, t, chromedp.Reload())
	if got := waitRows(ctx, t, 20); !slices.Equal(got, annRows) {
		t.Errorf("after a reload: %v", got)
	}

	// Open a row with the keyboard: its metadata shows.
	do(ctx, t, chromedp.Focus(chromedp.CSS("#rows tr.event button.open")), chromedp.KeyEvent("\r"))
	expanded, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#rows tr.event button.open"), "aria-expanded"))
	if err != nil || expanded.Value != "true" {
		t.Errorf("the row did not open: %+v %v", expanded, err)
	}
	if details := eval[string](ctx, t, `document.querySelector('#rows tr.details:not([hidden]) pre').textContent`); !strings.Contains(details, `"name": "prod-eu"`) && !strings.Contains(details, `"via_pat": "deploy-bot"`) {
		t.Errorf("opened row shows %q", details)
	}

	shoot(ctx, t, "activity-event")

	// Each event has a link that opens the page on it.
	link := eval[string](ctx, t, `document.querySelector('#rows tr.details:not([hidden]) a').href`)
	eventID := eval[string](ctx, t, `document.querySelector('#rows tr.details:not([hidden])').id.slice(3)`)
	list, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	do(ctx, t, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("linked-"+eventID)))
	if !strings.Contains(link, "/activity/events/"+eventID) || !eval[bool](ctx, t, `document.querySelector('#linked button.open').getAttribute('aria-expanded') === 'true'`) {
		t.Errorf("the link %s does not open its event", link)
	}
	shoot(ctx, t, "activity-linked")
	do(ctx, t, chromedp.Navigate(list))
	waitRows(ctx, t, 20)
	do(ctx, t, chromedp.Focus(chromedp.CSS("#rows tr.event button.open")), chromedp.KeyEvent("\r"))

	// From a small phone to a desktop, the page (an event open) fits the
	// screen's width: nothing scrolls sideways.
	fitsEveryWidth(ctx, t)

	// Export the filtered log: the browser downloads a CSV of ann's events.
	rows := download(ctx, t, chromedp.ID("export"))
	if len(rows) != 21 || strings.Join(rows[0][:4], ",") != "id,org_id,occurred_at,action" {
		t.Fatalf("export: %d rows, header %v", len(rows), rows[0])
	}
	for _, r := range rows[1:] {
		if r[8] != "ann@example.com" {
			t.Errorf("exported a row of %s", r[8])
		}
	}

	// Sign out: the form again.
	do(ctx, t, chromedp.Click(chromedp.ID("sign-out")), chromedp.WaitVisible(chromedp.ID("token")))
}

// TestActivityPageSaysWhatItShows, in a browser on New York time: every
// time is in UTC and says so until the reader switches to their own zone,
// which the page remembers; the range is said in words with the total of
// matching events, each filter is a chip that removes it, a range longer
// than the plan keeps says so, a range the page does not know falls back
// to the default, and an empty result offers to clear the filters.
func TestActivityPageSaysWhatItShows(t *testing.T) {
	t.Parallel()
	b := setupActivity(t)
	ctx := newBrowser(t)
	do(ctx, t, chromedp.Navigate("about:blank"))
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "America/New_York"}); err != nil {
		t.Fatal(err)
	}
	do(ctx, t, chromedp.Navigate(b.page), chromedp.WaitVisible(chromedp.ID("token")))
	shoot(ctx, t, "activity-sign-in")
	signIn(ctx, t, b.ownerToken)
	waitRows(ctx, t, 50)
	waitText(ctx, t, "total", "61 events")
	shoot(ctx, t, "activity")

	// Times: UTC everywhere, and labelled.
	labels := func() []string {
		return eval[[]string](ctx, t, `[document.getElementById('range-words').textContent, document.getElementById('chart-caption').textContent,
			...[...document.querySelectorAll('#rows .abs, #rows tr.details dd')].filter(e => /\d:\d\d/.test(e.textContent)).map(e => e.textContent)]`)
	}
	for _, l := range labels() {
		if !strings.Contains(l, "UTC") {
			t.Errorf("in UTC, %q names no zone", l)
		}
	}
	if r := text(ctx, t, "range-words"); !strings.HasPrefix(r, "Last 7 days: ") {
		t.Errorf("range said as %q", r)
	}
	// A row's time omits the year when it is this year in the zone shown:
	// 02:00 UTC on January 1st is this year in UTC, though New York still
	// has the year before.
	if s := eval[string](ctx, t, `fmtShort(new Date(Date.UTC(new Date().getUTCFullYear(), 0, 1, 2)))`); !strings.HasPrefix(s, "Jan 1,") || strings.Contains(s, "20") {
		t.Errorf("this year's January 1st, 02:00 UTC, shown as %q", s)
	}
	// The chart reads by keyboard: each bar's count in a tooltip, which a
	// screen reader is told too (a live region: the tooltip's own text
	// goes unsaid).
	do(ctx, t, chromedp.Focus(chromedp.ID("chart")), chromedp.KeyEvent(kb.ArrowLeft))
	waitText(ctx, t, "chart-tip", "events")
	if tip, last := text(ctx, t, "chart-tip"), eval[string](ctx, t, `document.querySelector('#chart-table tbody tr:nth-last-child(2)').textContent`); !strings.HasPrefix(last, strings.Split(tip, ":")[0]) {
		t.Errorf("the tooltip says %q for the bar before the last, the table %q", tip, last)
	}
	if said := eval[string](ctx, t, `[...document.querySelectorAll('[aria-live]')].map(e => e.textContent).join('|')`); !strings.Contains(said, text(ctx, t, "chart-tip")) {
		t.Errorf("the live regions say %q, not the tooltip's count", said)
	}

	// The reader's zone, kept across a reload.
	do(ctx, t, chromedp.Evaluate[chromedp.Void](`(s => { s.value = 'local'; s.dispatchEvent(new Event('change')) })(document.getElementById('f-tz'))`))
	waitText(ctx, t, "chart-caption", "New York")
	do(ctx, t, chromedp.Reload())
	waitRows(ctx, t, 50)
	waitText(ctx, t, "chart-caption", "New York")
	for _, l := range labels() {
		if !strings.Contains(l, "America/New York") && !strings.HasSuffix(l, " EST") && !strings.HasSuffix(l, " EDT") {
			t.Errorf("in New York time, %q names another zone", l)
		}
	}

	// A filter is a chip; removing it removes the filter.
	do(ctx, t, chromedp.SendKeys(chromedp.ID("f-actor"), "ann@example.com\r"))
	waitRows(ctx, t, 20)
	waitText(ctx, t, "chips", "Actor: ann@example.com")
	shoot(ctx, t, "activity-filtered")
	do(ctx, t, chromedp.Click(chromedp.CSS("#chips button")))
	waitRows(ctx, t, 50)
	if u, _ := chromedp.Run(ctx, chromedp.Location()); strings.Contains(u, "actor") || !eval[bool](ctx, t, `document.getElementById('chips').hidden`) {
		t.Errorf("after removing the chip: %s", u)
	}

	// The search box takes qualifiers and phrases; each term is a chip of
	// its own, a phrase in quotes one term.
	do(ctx, t, chromedp.SendKeys(chromedp.ID("f-action"), `action:cluster.*   -"a cluster is  registered"`+"\r"))
	for _, a := range waitRows(ctx, t, 5) {
		if a != "cluster.token_rotated" {
			t.Errorf(`action:cluster.* -"a cluster is registered" shows %s`, a)
		}
	}
	if chips := eval[[]string](ctx, t, `[...document.querySelectorAll('#chips button strong')].map(s => s.textContent)`); !slices.Equal(chips, []string{"action:cluster.*", `-"a cluster is  registered"`}) {
		t.Errorf("the chips of two search terms: %q", chips)
	}
	do(ctx, t, chromedp.Click(chromedp.CSS("#chips li:last-child button")))
	waitRows(ctx, t, 20)

	// Longer than the plan keeps: the page says so.
	do(ctx, t, chromedp.Navigate(b.page+"?range=1y"))
	waitText(ctx, t, "plan-limit", "Team plan keeps 30 days")
	shoot(ctx, t, "activity-plan-limit")
	// Not a range: the default, and a word why.
	do(ctx, t, chromedp.Navigate(b.page+"?range=2y"))
	waitRows(ctx, t, 50)
	waitText(ctx, t, "status", "range=2y")
	if r, org := eval[string](ctx, t, `document.getElementById('f-range').value`), text(ctx, t, "org-name"); r != "7d" || !strings.HasPrefix(org, "org-") {
		t.Errorf("after range=2y: range %q, org %q", r, org)
	}

	// Nothing matches: say so, offer to clear, nothing to export.
	do(ctx, t, chromedp.Navigate(b.page+"?actor=nobody@example.com"), chromedp.WaitVisible(chromedp.ID("empty")))
	if !eval[bool](ctx, t, `document.getElementById('export').getAttribute('aria-disabled') === 'true' && !document.getElementById('clear-empty').hidden`) {
		t.Error("no match: export still active, or no way to clear the filters")
	}
	shoot(ctx, t, "activity-empty")
	do(ctx, t, chromedp.Click(chromedp.ID("clear-empty")))
	waitRows(ctx, t, 50)
}

// fitsEveryWidth checks that, from a small phone to a desktop, the page as
// it is fits the screen's width (nothing scrolls sideways) and every
// placeholder shown fits its box; the page is left at 1280 px.
func fitsEveryWidth(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, width := range []int64{320, 390, 768, 1024, 1440} {
		// The chart redraws at the new width once its resize is observed:
		// a loaded machine may take a moment.
		do(ctx, t, chromedp.EmulateViewport(width, 900))
		chromedp.Run(ctx, chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.documentElement.scrollWidth <= %d`, width),
			chromedp.WithPollingTimeout(3*time.Second)))
		if w := eval[int64](ctx, t, `document.documentElement.scrollWidth`); w > width {
			t.Errorf("on a %d px screen the page is %d px wide", width, w)
		}
		if cut := eval[string](ctx, t, placeholdersCutJS); cut != "" {
			t.Errorf("on a %d px screen the placeholders of %s are cut off", width, cut)
		}
		// Nor does the chart as drawn for a wider screen, until it is
		// redrawn for this one (a turned phone; a busy machine).
		if w := eval[int64](ctx, t, `(() => { document.querySelector('#chart svg')?.setAttribute('width', 1200); return document.documentElement.scrollWidth })()`); w > width {
			t.Errorf("on a %d px screen, the chart drawn for 1200 px makes the page %d px wide", width, w)
		}
		// No term of the search box's hint breaks across lines (-action:
		// did at 320 px), the filters open.
		if broken := eval[string](ctx, t, `(() => { document.getElementById('filters').classList.add('open');
			return [...document.querySelectorAll('#search-hint code')].filter(c => c.getClientRects().length > 1).map(c => c.textContent).join(' ') })()`); broken != "" {
			t.Errorf("on a %d px screen the hint's %s breaks across lines", width, broken)
		}
	}
	do(ctx, t, chromedp.EmulateViewport(1280, 900))
}

// signIn signs in on the page with token.
func signIn(ctx context.Context, t *testing.T, token string) {
	t.Helper()
	do(ctx, t, chromedp.WaitVisible(chromedp.ID("token")), chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("sign-in-button")))
}

// waitText waits until the element with this id shows want.
func waitText(ctx context.Context, t *testing.T, id, want string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](
		fmt.Sprintf(`document.getElementById(%q).textContent.includes(%q)`, id, want), chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("#%s never showed %q: it shows %q", id, want, text(ctx, t, id))
	}
}

// A member who is not an owner is told why the log is closed to them, and
// sees nothing of the owner who signed in before them in the same browser.
func TestActivityPageRefusesMember(t *testing.T) {
	t.Parallel()
	b := setupActivity(t)
	ctx := newBrowser(t)
	do(ctx, t, chromedp.Navigate(b.page))
	signIn(ctx, t, b.ownerToken)
	waitText(ctx, t, "retention", "Team plan")
	do(ctx, t, chromedp.Click(chromedp.ID("sign-out")))
	signIn(ctx, t, b.memberToken)
	do(ctx, t, chromedp.WaitVisible(chromedp.ID("denied")))
	if message := text(ctx, t, "denied"); !strings.Contains(message, "not an owner") {
		t.Fatalf("member sees %q", message)
	}
	if shown := eval[string](ctx, t, `document.body.innerText`); strings.Contains(shown, "Team plan") || strings.Contains(shown, "org-") {
		t.Errorf("the member sees the owner's org: %s", shown)
	}
	shoot(ctx, t, "activity-member")
}

// TestActivityPageLinkFocusesItsEvent: a link to an event, opened by a
// reader who signs in then, puts the focus on the event it opened (the box
// was focused while the log was still hidden, so the focus stayed on the
// page's body).
func TestActivityPageLinkFocusesItsEvent(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "team")
	id := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Action: "pat.created", ActorEmail: "ann@example.com",
		Metadata: `{"name": "ci"}`, OccurredAt: time.Now().Add(-time.Hour)})
	ctx := newBrowser(t)
	do(ctx, t, chromedp.Navigate(b.base+"/orgs/"+org+"/activity/events/"+id))
	signIn(ctx, t, token)
	do(ctx, t, chromedp.WaitVisible(chromedp.ID("linked-"+id)))
	if focused := eval[string](ctx, t, `document.activeElement.id`); focused != "linked" {
		t.Errorf("the focus is on %q, not on the linked event", focused)
	}
}

// TestActivityPageCustomRangeWithoutStart: a custom range with only its
// end (To) shows the log and its chart over what the plan keeps, where it
// asked for hours over a year and showed an error instead.
func TestActivityPageCustomRangeWithoutStart(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "enterprise")
	now := time.Now()
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, ActorEmail: "ann@example.com", OccurredAt: now.AddDate(0, 0, -100)})
	ctx := newBrowser(t)
	do(ctx, t, chromedp.Navigate(b.base+"/orgs/"+org+"/activity?until="+url.QueryEscape(now.UTC().Format(time.RFC3339))))
	signIn(ctx, t, token)
	waitRows(ctx, t, 1)
	if status := text(ctx, t, "status"); strings.Contains(status, "cannot be shown") {
		t.Errorf("the page says %q", status)
	}
	if bars := eval[int](ctx, t, `document.querySelectorAll('#chart rect.bar').length`); bars == 0 || bars > 60 {
		t.Errorf("%d bars for a year", bars)
	}
}

// TestActivityPageYearChartSaysItsDays: the "Last year" chart goes by
// week, in UTC and in the browser's zone (New York) alike: its first bar
// is the range's first days, from the day a year ago to that week's Sunday,
// not the week from the Monday before the range; the table and the
// tooltip name those days (the first starts on it, not on the Monday
// before), the last bar's days end today, and so does the axis (it ended
// at the last week's Monday); a week cut to one day is said as that day,
// as the first is on a Sunday.
func TestActivityPageYearChartSaysItsDays(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "enterprise")
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, ActorEmail: "ann@example.com", OccurredAt: time.Now().Add(-time.Hour)})
	ctx := newBrowser(t)
	do(ctx, t, chromedp.Navigate("about:blank"))
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "America/New_York"}); err != nil {
		t.Fatal(err)
	}
	do(ctx, t, chromedp.Navigate(b.base+"/orgs/"+org+"/activity?range=1y"))
	signIn(ctx, t, token)
	waitRows(ctx, t, 1)
	for _, zone := range []string{"UTC", "America/New_York"} {
		if zone != "UTC" {
			do(ctx, t, chromedp.Evaluate[chromedp.Void](`(s => { s.value = 'local'; s.dispatchEvent(new Event('change')) })(document.getElementById('f-tz'))`))
			waitText(ctx, t, "chart-caption", "New York")
			waitRows(ctx, t, 1)
		}
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		today := time.Now().In(loc)
		first := today.AddDate(0, 0, -364)
		sunday := first.AddDate(0, 0, (7-int(first.Weekday()))%7)
		weeks := eval[[]string](ctx, t, `[...document.querySelectorAll('#chart-table tbody tr td:first-child')].map(td => td.textContent)`)
		if len(weeks) < 53 {
			t.Fatalf("%s: %d weeks: %q", zone, len(weeks), weeks)
		}
		// A week the range cuts to one day (the first on a Sunday, the
		// last on a Monday, as every week of the year on those days) is
		// said as that day.
		lastMonday := today.AddDate(0, 0, -(int(today.Weekday())+6)%7)
		oneDay := time.Date(sunday.Year(), sunday.Month(), sunday.Day(), 0, 0, 0, 0, loc)
		oneDaySaid := eval[string](ctx, t, fmt.Sprintf(`bucketLabel({start: %q, end: %q}, "week")`, oneDay.Format(time.RFC3339), oneDay.AddDate(0, 0, 1).Format(time.RFC3339)))
		for _, w := range []struct {
			which, said string
			from, to    time.Time
		}{{"first", weeks[0], first, sunday}, {"last", weeks[len(weeks)-1], lastMonday, today}, {"one day's", oneDaySaid, oneDay, oneDay}} {
			if pattern := saysDays(w.from, w.to); !pattern.MatchString(w.said) {
				t.Errorf("%s: the %s week is said as %q, want the days from %s to %s (%s)", zone, w.which, w.said, w.from.Format(time.DateOnly), w.to.Format(time.DateOnly), pattern)
			}
		}
		// The axis's ends are the range's first day and today.
		if ends := eval[[]string](ctx, t, `[...document.querySelectorAll('#chart svg text.tick')].slice(-2).map(e => e.textContent)`); !slices.Equal(ends, []string{first.Format("Jan 2"), today.Format("Jan 2")}) {
			t.Errorf("%s: the axis runs from %q, want from %s to %s", zone, ends, first.Format("Jan 2"), today.Format("Jan 2"))
		}
		do(ctx, t, chromedp.Focus(chromedp.ID("chart")), chromedp.KeyEvent(kb.Home))
		waitText(ctx, t, "chart-tip", weeks[0]+": ")
		do(ctx, t, chromedp.Blur(chromedp.ID("chart")))
	}
}

// saysDays matches how the page names the days from one date to another,
// as en-US writes a range: "Dec 6 – 7, 2025", "Nov 30 – Dec 6, 2025",
// "Dec 28, 2025 – Jan 3, 2026", or "Dec 7, 2025" for one day.
func saysDays(from, to time.Time) *regexp.Regexp {
	if from.Format(time.DateOnly) == to.Format(time.DateOnly) {
		return regexp.MustCompile("^" + regexp.QuoteMeta(from.Format("Jan 2, 2006")) + "$")
	}
	return regexp.MustCompile(`^` + from.Format("Jan 2") + `\b(,| –).*[ –]` + to.Format("2, 2006") + "$")
}

// TestActivityPageFocusStaysWhenAFilterGoes: removing a filter's chip
// from the keyboard leaves the focus on the next chip, then, with none
// left, on the search box, as does "Clear filters" when nothing matched
// (it fell to the page's body with the button removed).
func TestActivityPageFocusStaysWhenAFilterGoes(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "team")
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Action: "pat.created", ActorEmail: "ann@example.com", OccurredAt: time.Now().Add(-time.Hour)})
	ctx := newBrowser(t)
	do(ctx, t, chromedp.Navigate(b.base+"/orgs/"+org+"/activity?q=pat&actor=ann%40example.com"))
	signIn(ctx, t, token)
	waitRows(ctx, t, 1)
	for left, want := range []string{"chip", "f-action"} {
		do(ctx, t, chromedp.Focus(chromedp.CSS("#chips button")), chromedp.KeyEvent("\r"),
			chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelectorAll('#chips button').length === %d && !document.getElementById('results').ariaBusy.includes('true')`, 1-left),
				chromedp.WithPollingTimeout(10*time.Second)))
		focused := eval[string](ctx, t, `document.activeElement.id || document.activeElement.className`)
		if focused != want {
			t.Errorf("after removing a chip the focus is on %q, want %q", focused, want)
		}
	}
	do(ctx, t, chromedp.Navigate(b.base+"/orgs/"+org+"/activity?q=cluster"), chromedp.WaitVisible(chromedp.ID("clear-empty")),
		chromedp.Focus(chromedp.ID("clear-empty")), chromedp.KeyEvent("\r"))
	waitRows(ctx, t, 1)
	if focused := eval[string](ctx, t, `document.activeElement.id`); focused != "f-action" {
		t.Errorf("after Clear filters the focus is on %q", focused)
	}
}

// TestActivityPageLoadsMoreOfTheSameRange: the next page continues the
// range the page was loaded with, though the page stayed open past
// midnight (the range was worked out again from the new day, and the rest
// of the log fell out of it).
func TestActivityPageLoadsMoreOfTheSameRange(t *testing.T) {
	t.Parallel()
	_, ctx := ownerSignedIn(t)
	// A week later, by the page's clock.
	do(ctx, t, chromedp.Evaluate[chromedp.Void](`(() => { const D = Date, later = () => D.now() + 7 * 86400000;
		window.Date = class extends D { constructor(...a) { super(...(a.length ? a : [later()])); } static now() { return later(); } };
		document.getElementById('more').click(); })()`))
	waitRows(ctx, t, 61)
}

// TestActivityPageHintsAfterABadSearch: a link whose search the API
// refuses still gets the search box's hints (the qualifiers and the
// catalog's actions), which are what the reader needs to mend it; they say
// that created: takes UTC days.
func TestActivityPageHintsAfterABadSearch(t *testing.T) {
	t.Parallel()
	b := setupActivity(t)
	ctx := newBrowser(t)
	do(ctx, t, chromedp.Navigate(b.page+"?q="+url.QueryEscape("created:>=2026-13-01")))
	signIn(ctx, t, b.ownerToken)
	waitText(ctx, t, "status", `"created:>=2026-13-01"`)
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`document.querySelector('#action-list option[value="auth.signin"]') !== null`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Errorf("no hints after a refused search: %d options", eval[int](ctx, t, `document.querySelectorAll('#action-list option').length`))
	}
	// created: reads a date as a UTC day, whatever zone the page shows
	// times in: its hints say so.
	if hint, below := eval[string](ctx, t, `document.querySelector('#action-list option[value="created:>="]').textContent`), text(ctx, t, "search-hint"); !strings.Contains(hint, "UTC day") || !strings.Contains(below, "UTC day") {
		t.Errorf("created: hinted as %q, and below the box as %q", hint, below)
	}
}

// TestActivityPageRefusesOtherWildcards: a ? in the search box, a
// wildcard elsewhere, is an error that names the term and says * is the
// wildcard, where the page said no events match.
func TestActivityPageRefusesOtherWildcards(t *testing.T) {
	t.Parallel()
	_, ctx := ownerSignedIn(t)
	do(ctx, t, chromedp.SendKeys(chromedp.ID("f-action"), "action:cluster.?reated\r"))
	waitText(ctx, t, "status", `"action:cluster.?reated": only * is a wildcard`)
	if !eval[bool](ctx, t, `document.getElementById('empty').hidden && document.getElementById('status').classList.contains('error')`) {
		t.Errorf("a refused ? shows %q", eval[string](ctx, t, `document.getElementById('results').innerText`))
	}
}

// TestActivityPageCreatedIsNoPlanLimit: a created: term that starts the
// range later than the preset does is no plan limit (the page said the
// plan kept 30 days and nothing before the created: day was shown); a
// range the plan does cut still says so, with the plan's first day.
func TestActivityPageCreatedIsNoPlanLimit(t *testing.T) {
	t.Parallel()
	b := setupActivity(t)
	ctx := newBrowser(t)
	yesterday := time.Now().UTC().AddDate(0, 0, -1)
	created := url.QueryEscape("created:>=" + yesterday.Format(time.DateOnly))
	do(ctx, t, chromedp.Navigate(b.page+"?q="+created))
	signIn(ctx, t, b.ownerToken)
	waitText(ctx, t, "range-words", yesterday.Format("Jan 2"))
	if !eval[bool](ctx, t, `document.getElementById('plan-limit').hidden`) {
		t.Errorf("created: on the last 7 days says %q", text(ctx, t, "plan-limit"))
	}
	do(ctx, t, chromedp.Navigate(b.page+"?range=1y&q="+created))
	waitText(ctx, t, "plan-limit", "Team plan keeps 30 days of activity: nothing before "+time.Now().UTC().AddDate(0, 0, -30).Format("Jan 2"))
}

// TestActivityPageAfterARefusedSearch: a search the API refuses shows its
// error and nothing of the view before it (no chart, rows, count or
// export), the term still there to mend; the next search shows its view.
func TestActivityPageAfterARefusedSearch(t *testing.T) {
	t.Parallel()
	_, ctx := ownerSignedIn(t)
	waitText(ctx, t, "total", "61 events")

	do(ctx, t, chromedp.SendKeys(chromedp.ID("f-action"), `"token rotated`+"\r"))
	waitText(ctx, t, "status", "no closing quote")
	shown := eval[map[string]any](ctx, t, `({
		chart: !document.getElementById('chart-figure').hidden, log: !document.getElementById('log').hidden,
		empty: !document.getElementById('empty').hidden, more: !document.getElementById('more').hidden,
		rows: document.querySelectorAll('#rows tr').length, total: document.getElementById('total').textContent,
		export: document.getElementById('export').getAttribute('aria-disabled'),
		error: document.getElementById('status').classList.contains('error'),
		chips: document.getElementById('chips').textContent, box: document.getElementById('f-action').value})`)
	want := map[string]any{"chart": false, "log": false, "empty": false, "more": false, "rows": 0.0, "total": "",
		"export": "true", "error": true, "chips": `Search: "token rotated×`, "box": `"token rotated`}
	for k, v := range want {
		if shown[k] != v {
			t.Errorf("after a refused search, %s is %v, want %v", k, shown[k], v)
		}
	}

	do(ctx, t, chromedp.SendKeys(chromedp.ID("f-action"), `"`+"\r"))
	for _, a := range waitRows(ctx, t, 5) {
		if a != "cluster.token_rotated" {
			t.Errorf(`"token rotated" shows %s`, a)
		}
	}
	waitText(ctx, t, "total", "5 events")
	if bars, hidden, isError := eval[int](ctx, t, `document.querySelectorAll('#chart .bar').length`),
		eval[bool](ctx, t, `document.getElementById('chart-figure').hidden`),
		eval[bool](ctx, t, `document.getElementById('status').classList.contains('error')`); bars != 7 || hidden || isError {
		t.Errorf("after the search is mended: %d bars, chart hidden %v, status an error %v", bars, hidden, isError)
	}
}

// TestActivityPageExportsNDJSON: next to Export CSV, Export NDJSON links the
// same view as one JSON event a line (and its manifest), and goes inactive when nothing
// matches.
func TestActivityPageExportsNDJSON(t *testing.T) {
	t.Parallel()
	b := setupActivity(t)
	ctx := newBrowser(t)
	do(ctx, t, chromedp.Navigate(b.page+"?q=cluster.token_rotated"))
	signIn(ctx, t, b.ownerToken)
	waitRows(ctx, t, 5)
	lines, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(async () => {
		const a = document.getElementById('export-ndjson');
		if (!a || !a.href) return [];
		return (await (await fetch(a.href)).text()).trim().split('\n');
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	// Five events, then the export's manifest.
	if len(lines) != 6 || !strings.Contains(lines[0], `"action":"cluster.token_rotated"`) || !strings.Contains(lines[5], `"rows":5`) {
		t.Errorf("NDJSON export: %q", lines)
	}
	do(ctx, t, chromedp.Navigate(b.page+"?q=nothing.matches"))
	waitText(ctx, t, "total", "0 events")
	if !eval[bool](ctx, t, `document.getElementById('export-ndjson').getAttribute('aria-disabled') === 'true'`) {
		t.Error("no match: Export NDJSON still active")
	}
}

// download clicks the link and returns the CSV the browser saved.
func download[S chromedp.Selectable](ctx context.Context, t *testing.T, link S) [][]string {
	t.Helper()
	dir := t.TempDir()
	_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: new(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	events := chromedp.BrowserEvents(ctx, browser.DownloadProgress)
	do(ctx, t, chromedp.Click(link))
	var guid string
	for e, err := range events {
		if err != nil {
			t.Fatalf("waiting for the download: %v", err)
		}
		if e.State == browser.DownloadProgressStateCompleted {
			guid = e.GUID
			break
		}
		if e.State == browser.DownloadProgressStateCanceled {
			t.Fatal("the download was cancelled")
		}
	}
	f, err := os.Open(filepath.Join(dir, guid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The page's export starts with a byte-order mark, for spreadsheets.
	r := bufio.NewReader(f)
	if bom, _ := r.Peek(3); string(bom) != "\ufeff" {
		t.Errorf("the download starts with %q, not a byte-order mark", bom)
	} else {
		r.Discard(3)
	}
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// shoot saves what the screen shows, at a desktop's 1440x900 and a
// phone's 390x844, into $AUDITLOG_SCREENSHOTS (make screenshots sets it to
// docs/screenshots), if set, as name-desktop.png and name-phone.png; the
// page is left at the desktop's width.
func shoot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	dir := os.Getenv("AUDITLOG_SCREENSHOTS")
	if dir == "" {
		return
	}
	for _, screen := range []struct {
		suffix        string
		width, height int64
	}{{"phone", 390, 844}, {"desktop", 1440, 900}} {
		do(ctx, t, chromedp.EmulateViewport(screen.width, screen.height), chromedp.Sleep(300*time.Millisecond))
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-"+screen.suffix+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestActivityPageAccessible runs axe-core (api/testdata/axe.min.js,
// vendored from the npm package, MPL-2.0) over the page signed out, and
// signed in with the filters, the chart and an event open, at a desktop's
// and a phone's width: no serious or critical violation.
func TestActivityPageAccessible(t *testing.T) {
	t.Parallel()
	b := setupActivity(t)
	ctx := newBrowser(t)
	do(ctx, t, chromedp.Navigate(b.page), chromedp.WaitVisible(chromedp.ID("token")))
	scanAccessibility(ctx, t, "signed out")
	signIn(ctx, t, b.ownerToken)
	waitRows(ctx, t, 50)
	do(ctx, t, chromedp.EmulateViewport(1440, 900), chromedp.Click(chromedp.CSS("#rows tr.event")),
		chromedp.Navigate(b.page+"?actor=ann@example.com"))
	waitRows(ctx, t, 20)
	// The filters open on a phone too, an event open, the chart's tooltip shown.
	do(ctx, t, chromedp.Click(chromedp.CSS("#rows tr.event")),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('filters').classList.add('open')`),
		chromedp.Focus(chromedp.ID("chart")))
	scanAccessibility(ctx, t, "signed in")
}

// scanAccessibility runs axe-core over the page as it is, at a desktop's
// and a phone's width, and fails on any serious or critical violation.
func scanAccessibility(ctx context.Context, t *testing.T, state string) {
	t.Helper()
	axe, err := os.ReadFile("testdata/axe.min.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, width := range []int64{1440, 390} {
		do(ctx, t, chromedp.EmulateViewport(width, 900), chromedp.Evaluate[chromedp.Void](string(axe)))
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
			.filter(v => v.impact === 'serious' || v.impact === 'critical')
			.map(v => v.id + ': ' + v.help + ' (' + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', ') + ')'))`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		for _, violation := range v {
			t.Errorf("%s at %d px: %s", state, width, violation)
		}
	}
}
