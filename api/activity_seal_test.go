package api

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/sealer"
)

// The Activity page shows an event's seq in its details ("Not sealed yet"
// before the sealer has sealed it), and the org's latest signed checkpoint
// (its seq and time) next to the export.
func TestActivityPageShowsSealsAndCheckpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	stop := sealtest.Start(t, b.url, sealer.Config{CheckpointEvery: 50 * time.Millisecond})
	for range 2 {
		fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Action: "auth.signin"})
	}
	sealtest.WaitSealed(t, b.admin, org, 2)
	sealtest.WaitCheckpoint(t, b.admin, org, 2)
	stop()
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Action: "auth.signout"})

	ctx := newBrowser(t)
	do(ctx, t,
		chromedp.Navigate(b.base+"/orgs/"+org+"/activity"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS("#sign-in-form button")))
	waitRows(ctx, t, 3)
	do(ctx, t, chromedp.Poll[chromedp.Void](`document.getElementById('checkpoint').textContent !== ''`, chromedp.WithPollingTimeout(20*time.Second)))
	if cp := text(ctx, t, "checkpoint"); !strings.HasPrefix(cp, "Latest signed checkpoint: seq 2, ") {
		t.Errorf("next to the export: %q", cp)
	}
	// seq is the dd after the dt "Seq" of each row's details, newest first.
	seqs := eval[[]string](ctx, t, `[...document.querySelectorAll('#rows tr.details dt')].filter(dt => dt.textContent === 'Seq').map(dt => dt.nextElementSibling.textContent)`)
	if strings.Join(seqs, ",") != "Not sealed yet,2,1" {
		t.Errorf("details show seqs %q, want Not sealed yet, 2, 1", seqs)
	}
	do(ctx, t, chromedp.Click(chromedp.CSS("#rows tr.event:nth-of-type(3)")))
	if shown := eval[string](ctx, t, `document.querySelector('#rows tr.details:not([hidden]) dl').innerText`); !strings.Contains(shown, "Seq\n2") && !strings.Contains(shown, "Seq\t2") {
		t.Errorf("the opened row's details show %q", shown)
	}
	shoot(ctx, t, "activity-seal.png")
}
