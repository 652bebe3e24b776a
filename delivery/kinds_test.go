package delivery_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/delivery"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sealtest"
)

// TestSlackAndSplunkFormats: a Slack subscription gets one readable
// message per event (its sentence as the Activity page reads it, the
// action, a link to the event), a Splunk HEC
// one gets batches of HEC events with its token, each in seq order; the
// metrics count the events delivered per kind.
func TestSlackAndSplunkFormats(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	var mu sync.Mutex
	var slackTexts []string
	var hecSeqs []int64
	var hecAuth []string
	slack := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		var m struct{ Text string }
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		slackTexts = append(slackTexts, m.Text)
		mu.Unlock()
		return true
	})
	hec := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		hecAuth = append(hecAuth, r.Header.Get("Authorization"))
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			var ev struct {
				Sourcetype string
				Event      struct{ Seq int64 }
			}
			if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Sourcetype != "auditlog:event" {
				t.Errorf("HEC line %s", sc.Text())
			}
			hecSeqs = append(hecSeqs, ev.Event.Seq)
		}
		return true
	})
	g := guard(slack, hec)
	rule := delivery.Rule{Actions: []string{"pat.created"}}
	slackID, _, err := delivery.Subscribe(ctx, e.control, g, delivery.Subscription{OrgID: org, Name: "slack", Kind: delivery.KindSlack, Rule: rule,
		Destination: delivery.Destination{URL: slack.srv.URL + "/services/T/B/X"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := delivery.Subscribe(ctx, e.control, g, delivery.Subscription{OrgID: org, Name: "hec", Kind: delivery.KindSplunkHEC, Rule: rule,
		Destination: delivery.Destination{URL: hec.srv.URL + "/services/collector/event", Token: "hec-token"}}); err != nil {
		t.Fatal(err)
	}
	from := e.position(t, slackID)
	metrics := delivery.NewMetrics()
	e.start(t, delivery.Config{Guard: g, Link: "https://audit.example.com", Batch: 4, Metrics: metrics})
	n := write(t, e, org, 2, 12)
	sealtest.WaitSealed(t, e.admin, org, n+2)
	want := matching(t, e, org, from, rule)
	waitFor(t, "every message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(slackTexts) >= len(want) && len(hecSeqs) >= len(want)
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics)
	// A batch is counted once its delivery is recorded, after the receiver
	// has it.
	waitFor(t, "the deliveries counted", func() bool {
		return counter(t, reg, "auditlog_delivered_events_total", "slack") >= float64(len(want)) &&
			counter(t, reg, "auditlog_delivered_events_total", "splunk_hec") >= float64(len(want))
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(hecSeqs, want) || len(slackTexts) != len(want) {
		t.Errorf("HEC seqs %v, %d Slack messages; want %v", hecSeqs, len(slackTexts), want)
	}
	for _, kind := range []string{"slack", "splunk_hec"} {
		if got := counter(t, reg, "auditlog_delivered_events_total", kind); got != float64(len(want)) {
			t.Errorf("%s events delivered: %v, want %d", kind, got, len(want))
		}
	}
	for _, a := range hecAuth {
		if a != "Splunk hec-token" {
			t.Errorf("HEC Authorization %q", a)
		}
	}
	for _, text := range slackTexts {
		// The catalog's sentence, as the Activity page reads it, then the action.
		if !strings.Contains(text, `@example.com* created token "t" `+"`pat.created` (seq ") || !strings.Contains(text, "<https://audit.example.com/orgs/"+org+"/activity/events/") {
			t.Errorf("Slack message %q", text)
		}
	}
}

// counter is the value of family name's series with label kind in reg.
func counter(t *testing.T, reg *prometheus.Registry, name, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == name && m.GetLabel()[0].GetValue() == kind {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestSlackMessageEscapesMarkup: what an event's writer chose (a token's
// name here) reaches Slack as text: no @channel mention, no link of its
// own, its &, < and > escaped as Slack's mrkdwn asks.
func TestSlackMessageEscapesMarkup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	texts := make(chan string, 10)
	slack := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		var m struct{ Text string }
		json.NewDecoder(r.Body).Decode(&m)
		texts <- m.Text
		return true
	})
	g := guard(slack)
	if _, _, err := delivery.Subscribe(ctx, e.control, g, delivery.Subscription{OrgID: org, Name: "slack", Kind: delivery.KindSlack,
		Rule: delivery.Rule{Actions: []string{"pat.created"}}, Destination: delivery.Destination{URL: slack.srv.URL + "/services/T/B/X"}}); err != nil {
		t.Fatal(err)
	}
	e.start(t, delivery.Config{Guard: g, Link: "https://audit.example.com"})
	const name = "<!channel> & <https://evil.example|click> [x](https://evil.example)"
	if _, err := auditlog.Log(ctx, e.admin, auditlog.Event{OrgID: org, Action: auditlog.PATCreated, TargetID: "t1",
		Metadata: map[string]string{"name": name}, Actor: &auditlog.Actor{Email: "a@example.com"}}); err != nil {
		t.Fatal(err)
	}
	text := <-texts
	want := `"&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; [x](https://evil.example)"`
	if !strings.Contains(text, want) || strings.Count(text, "<") != 1 || strings.Count(text, ">") != 1 {
		t.Errorf("Slack message %q, want the name as %s and only the event's own link", text, want)
	}
}

// TestSlackRateLimitMidBatchMovesOn: Slack rate-limits an incoming webhook
// (429 past a short burst); a message it refuses is sent again, and those
// it took are not, so a backlog longer than the burst gets through, each
// event once, in order.
func TestSlackRateLimitMidBatchMovesOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	var mu sync.Mutex
	var took []string
	burst := 0
	slack := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		var m struct{ Text string }
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		defer mu.Unlock()
		if burst == 3 { // three messages, then one refused
			burst = 0
			http.Error(w, "rate_limited", http.StatusTooManyRequests)
			return true
		}
		burst++
		took = append(took, regexp.MustCompile(`\(seq \d+\)`).FindString(m.Text))
		return true
	})
	g := guard(slack)
	rule := delivery.Rule{Actions: []string{"pat.created"}}
	id, _, err := delivery.Subscribe(ctx, e.control, g, delivery.Subscription{OrgID: org, Name: "slack", Kind: delivery.KindSlack, Rule: rule,
		Destination: delivery.Destination{URL: slack.srv.URL + "/services/T/B/X"}})
	if err != nil {
		t.Fatal(err)
	}
	from := e.position(t, id)
	n := write(t, e, org, 1, 40)
	sealtest.WaitSealed(t, e.admin, org, n+1)
	var want []string
	for _, seq := range matching(t, e, org, from, rule) {
		want = append(want, fmt.Sprintf("(seq %d)", seq))
	}
	e.start(t, delivery.Config{Guard: g, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	waitFor(t, "every message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(took) >= len(want)
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(took, want) {
		t.Errorf("Slack took %v, want %v", took, want)
	}
}
