// Package delivery delivers an org's sealed events to its subscriptions'
// destinations (webhooks, Slack, Splunk HEC), in seq order and at least
// once, each subscription from its own position (docs/delivery.md).
package delivery

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/sentence"
	"github.com/auditlog/auditlog/internal/store"
)

// Config configures the worker. Zero durations and sizes take the defaults.
type Config struct {
	// DatabaseURL connects as a role holding audit_deliverer.
	DatabaseURL string
	// Key opens the sealed destinations; its public half is registered
	// for new ones.
	Key *ecdh.PrivateKey
	// Guard is the SSRF rule every connection is checked against.
	Guard  Guard
	Logger *slog.Logger
	// Poll is how often the worker looks for new subscriptions and for
	// events past a caught-up position (default 250 ms).
	Poll time.Duration
	// Timeout bounds an attempt (default 10 s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the delay after a failed attempt,
	// doubled at each failure, with jitter (defaults 1 s and 5 min).
	MinBackoff, MaxBackoff time.Duration
	// FailAfter is how long a subscription fails before it is marked
	// failing and no longer delivered until resumed (default 24 h).
	FailAfter time.Duration
	// Batch is the most events of one attempt (default 100).
	Batch int
	// Metrics, if not nil, count the attempts.
	Metrics *Metrics
	// Link is the base URL of the Activity page (https://audit.example.com)
	// that Slack messages link each event to; none if empty.
	Link string
	// Connections bounds the worker's database connections (default 20);
	// an attempt holds one while its request runs.
	Connections int32
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.Poll, 250*time.Millisecond)
	set(&c.Timeout, 10*time.Second)
	set(&c.MinBackoff, time.Second)
	set(&c.MaxBackoff, 5*time.Minute)
	set(&c.FailAfter, 24*time.Hour)
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.Batch > 1000 {
		c.Batch = 1000
	}
	if c.Connections <= 0 {
		c.Connections = 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

type worker struct {
	cfg    Config
	pool   *pgxpool.Pool
	store  *store.Store
	client *http.Client
	// sentences are the catalog's, by action: how Slack messages read.
	sentences map[string]string
}

// Run delivers until ctx ends: a goroutine per active subscription, so a
// slow or failing destination holds up only its own.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	if cfg.Key == nil {
		return errors.New("delivery: no key")
	}
	pool, err := database.Pool(ctx, cfg.DatabaseURL, func(c *pgxpool.Config) { c.MaxConns = cfg.Connections })
	if err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	defer pool.Close()
	pub := cfg.Key.PublicKey()
	if _, err := pool.Exec(ctx, "SELECT audit.register_delivery_key($1, $2)", KeyID(pub), pub.Bytes()); err != nil {
		return fmt.Errorf("delivery: register key: %w", err)
	}
	w := &worker{cfg: cfg, pool: pool, store: store.New(pool), client: cfg.Guard.Client(cfg.Timeout)}
	defer w.client.CloseIdleConnections()
	if w.sentences, err = sentences(ctx, w.store); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	return w.run(ctx)
}

func (w *worker) run(ctx context.Context) error {
	var wg sync.WaitGroup
	running := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range running {
			cancel()
		}
		wg.Wait()
	}()
	tick := time.NewTicker(w.cfg.Poll)
	defer tick.Stop()
	var pruned time.Time
	for {
		ids, err := w.active(ctx)
		if err != nil && ctx.Err() == nil {
			w.cfg.Logger.Warn("delivery: list subscriptions", "err", err)
		}
		if err == nil {
			for id, cancel := range running {
				if !ids[id] {
					cancel()
					delete(running, id)
				}
			}
			for id := range ids {
				if running[id] == nil {
					sctx, cancel := context.WithCancel(ctx)
					running[id] = cancel
					wg.Go(func() { w.deliver(sctx, id) })
				}
			}
		}
		if time.Since(pruned) > time.Hour {
			if _, err := w.pool.Exec(ctx, "SELECT audit.prune_delivery_attempts()"); err == nil {
				pruned = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// active lists the active subscriptions.
func (w *worker) active(ctx context.Context) (map[string]bool, error) {
	rows, err := w.pool.Query(ctx, "SELECT id::text FROM audit.subscriptions WHERE state = 'active'")
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m, err
}

// outcome is what one step did.
type outcome int

const (
	idle     outcome = iota // nothing to deliver, or another worker holds the subscription
	moved                   // the position moved: go on at once
	failed                  // the attempt failed: back off
	tooLarge                // failed with 413 (Content Too Large): back off, fewer events
	inactive                // paused, failing or gone: wait for run to stop it
)

// deliver runs steps for subscription id until ctx ends: run cancels it
// once the subscription is no longer active. A step that finds it paused
// waits like an idle one, since it may be resumed before run looks again.
func (w *worker) deliver(ctx context.Context, id string) {
	failures := 0
	// limit is the most events a step sends: halved while the receiver
	// answers 413 (a batch larger than it takes), doubled back after each
	// delivery.
	limit := w.cfg.Batch
	for {
		out, err := w.step(ctx, id, limit)
		switch out {
		case tooLarge:
			limit = max(limit/2, 1)
		case moved:
			limit = min(limit*2, w.cfg.Batch)
		}
		if err != nil && ctx.Err() == nil {
			w.cfg.Logger.Warn("delivery step", "subscription", id, "err", err)
		}
		var wait time.Duration
		switch {
		case out == failed || out == tooLarge || err != nil:
			wait = backoff(w.cfg.MinBackoff, w.cfg.MaxBackoff, failures)
			failures++
		case out == moved:
			failures = 0
			continue
		default:
			failures = 0
			wait = w.cfg.Poll
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// backoff is the delay after n earlier failures: min doubled n times, at
// most max, less a random part of up to half (jitter, so receivers coming
// back are not hit by every subscription at once).
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := hi
	if n < 30 && lo<<n < hi {
		d = lo << n
	}
	return d - time.Duration(rand.Int64N(int64(d)/2+1))
}

// sub is a subscription as a step reads it.
type sub struct {
	orgID, kind  string
	rule         Rule
	sealed       []byte
	state        string
	position     int64
	failingSince *time.Time
}

// step delivers the next batch of subscription id, in a transaction that
// holds the subscription's advisory lock (one worker at a time across
// replicas) while the request runs, and records the attempt and the new
// position in it.
func (w *worker) step(ctx context.Context, id string, limit int) (outcome, error) {
	tx, err := w.pool.Begin(ctx)
	if err != nil {
		return idle, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var locked bool
	if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock(hashtextextended('auditlog delivery ' || $1, 0))", id).Scan(&locked); err != nil || !locked {
		return idle, err
	}
	var s sub
	err = tx.QueryRow(ctx, `
		SELECT org_id::text, kind, actions, target_types, actor_emails, sealed, state, position, failing_since
		FROM audit.subscriptions WHERE id = $1`, id).
		Scan(&s.orgID, &s.kind, &s.rule.Actions, &s.rule.TargetTypes, &s.rule.ActorEmails, &s.sealed, &s.state, &s.position, &s.failingSince)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && s.state != "active") {
		return inactive, nil
	}
	if err != nil {
		return idle, err
	}
	scope, err := w.store.Scope(ctx, s.orgID, nil)
	if err != nil {
		return idle, err
	}
	page, err := w.store.Feed(ctx, store.FeedQuery{OrgID: s.orgID, Tiers: scope.Tiers, Floor: scope.Floor, After: s.position, Limit: w.cfg.Batch})
	if err != nil || page.Next == s.position {
		return idle, err
	}
	var events []store.FeedEvent
	for _, e := range page.Events {
		if s.rule.Match(e.Event) {
			events = append(events, e)
		}
	}
	// Slack takes a message per event and refuses those past a short burst
	// (429): a step sends one, so that a refusal sends again only it, not
	// the messages Slack took before it (which, a backlog being longer than
	// the burst, were sent again and again, and the rest never).
	if s.kind == KindSlack {
		limit = 1
	}
	if len(events) > limit {
		events = events[:limit]
		page.Next = events[limit-1].Seq
	}
	a := attempt{at: time.Now()}
	if len(events) > 0 {
		a = w.send(ctx, id, s, events)
		w.cfg.Metrics.observe(s.kind, len(events), a.err)
	}
	var first, last int64
	if len(events) > 0 {
		first, last = events[0].Seq, events[len(events)-1].Seq
	}
	var since *time.Time
	err = tx.QueryRow(ctx, "SELECT audit.record_delivery($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
		id, s.position, page.Next, a.err == nil, a.at, a.status, a.latency.Milliseconds(), first, last, len(events), a.errText()).Scan(&since)
	if err != nil {
		return idle, fmt.Errorf("record delivery: %w", err)
	}
	out := moved
	if a.err != nil {
		out = failed
		if a.status != nil && *a.status == http.StatusRequestEntityTooLarge && len(events) > 1 {
			out = tooLarge
		}
		w.cfg.Logger.Warn("delivery failed", "subscription", id, "seqs", fmt.Sprintf("%d-%d", first, last), "err", a.err)
		if since != nil && a.at.Sub(*since) >= w.cfg.FailAfter {
			if _, err := tx.Exec(ctx, "SELECT audit.mark_subscription_failing($1, $2)", id, *since); err != nil {
				return idle, fmt.Errorf("mark failing: %w", err)
			}
			out = inactive
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return idle, err
	}
	return out, nil
}

// attempt is one request and how it went.
type attempt struct {
	at      time.Time
	status  *int
	latency time.Duration
	err     error
}

// errText is the attempt's error as logged: control characters, which a
// receiver can put in its reason phrase or certificate names, shown as
// U+FFFD, since the log is printed to terminals.
func (a attempt) errText() *string {
	if a.err == nil {
		return nil
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return unicode.ReplacementChar
		}
		return r
	}, a.err.Error())
	return &s
}

// maxResponse bounds what is read of a receiver's response.
const maxResponse = 64 << 10

// send posts events to the subscription's destination. The attempt's
// latency is set however it ends (a named result, so that the deferred
// func sets what is returned).
func (w *worker) send(ctx context.Context, id string, s sub, events []store.FeedEvent) (a attempt) {
	a = attempt{at: time.Now()}
	defer func() { a.latency = time.Since(a.at) }()
	d, err := Open(w.cfg.Key, s.sealed)
	if err != nil {
		a.err = err
		return a
	}
	reqs, err := requests(ctx, id, s, d, events, a.at, w.cfg.Link, w.sentences)
	if err != nil {
		a.err = err
		return a
	}
	for _, req := range reqs {
		resp, err := do(w.client, req)
		if err != nil {
			a.err = err
			return a
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
		resp.Body.Close()
		status := resp.StatusCode
		a.status = &status
		if status < 200 || status > 299 {
			a.err = fmt.Errorf("%s answered %s", req.URL.Host, resp.Status)
			return a
		}
	}
	return a
}

// webhookBody is a webhook request's JSON.
type webhookBody struct {
	Subscription string            `json:"subscription"`
	OrgID        string            `json:"org_id"`
	Events       []store.FeedEvent `json:"events"`
}

// requests are the HTTP requests that deliver events to d: one signed
// batch for a webhook, one message per event for Slack, one batch of HEC
// events for Splunk. link, if not empty, is the base URL of the Activity
// page that Slack messages link events to; sentences, the catalog's by
// action, how they read.
func requests(ctx context.Context, id string, s sub, d Destination, events []store.FeedEvent, at time.Time, link string, sentences map[string]string) ([]*http.Request, error) {
	post := func(body []byte, contentType string) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", contentType)
		}
		return req, err
	}
	switch s.kind {
	case KindWebhook:
		body, err := json.Marshal(webhookBody{Subscription: id, OrgID: s.orgID, Events: events})
		if err != nil {
			return nil, err
		}
		req, err := post(body, "application/json")
		if err != nil {
			return nil, err
		}
		req.Header.Set(HeaderTimestamp, fmt.Sprint(at.Unix()))
		req.Header.Set(HeaderSignature, Sign(d.Secret, at, body))
		return []*http.Request{req}, nil
	case KindSlack:
		var reqs []*http.Request
		for _, e := range events {
			body, err := json.Marshal(map[string]string{"text": slackLine(e, link, sentences[e.Action])})
			if err != nil {
				return nil, err
			}
			req, err := post(body, "application/json")
			if err != nil {
				return nil, err
			}
			reqs = append(reqs, req)
		}
		return reqs, nil
	case KindSplunkHEC:
		var body bytes.Buffer
		enc := json.NewEncoder(&body)
		for _, e := range events {
			err := enc.Encode(map[string]any{
				"time": float64(e.OccurredAt.UnixMicro()) / 1e6, "source": "auditlog", "sourcetype": "auditlog:event", "event": e,
			})
			if err != nil {
				return nil, err
			}
		}
		req, err := post(body.Bytes(), "application/json")
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Splunk "+d.Token)
		return []*http.Request{req}, nil
	}
	return nil, fmt.Errorf("unknown kind %s", s.kind)
}

// slackEscape escapes what Slack's mrkdwn reads as markup.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackLine is one readable line for an event: its action's sentence, as
// the Activity page reads it (who acted in bold), then the action's code,
// with a link to it on the Activity page. Without a sentence it is who acted
// and the action's code.
func slackLine(e store.FeedEvent, link, template string) string {
	bold := func(s string) string { return "*" + s + "*" }
	line := sentence.Render(template, e.Event, bold, slackEscape.Replace)
	if template != "" {
		line += " `" + e.Action + "`"
	}
	line += fmt.Sprintf(" (seq %d)", e.Seq)
	if link != "" {
		line += fmt.Sprintf(" <%s/orgs/%s/activity/events/%s|view>", strings.TrimSuffix(link, "/"), e.OrgID, e.ID)
	}
	return line
}

// sentences reads the catalog's sentences, by action.
func sentences(ctx context.Context, st *store.Store) (map[string]string, error) {
	actions, err := st.Actions(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the catalog's sentences: %w", err)
	}
	m := make(map[string]string, len(actions))
	for _, a := range actions {
		m[a.Action] = a.Sentence
	}
	return m, nil
}

// Match reports whether the rule keeps event e.
func (r Rule) Match(e store.Event) bool {
	return matchAny(r.Actions, func(a string) bool {
		prefix, ok := strings.CutSuffix(a, "*")
		return a == e.Action || (ok && strings.HasPrefix(e.Action, prefix))
	}) && matchAny(r.TargetTypes, func(t string) bool { return t == e.TargetType }) &&
		matchAny(r.ActorEmails, func(m string) bool { return e.ActorEmail != nil && strings.EqualFold(m, *e.ActorEmail) })
}

// matchAny: an empty list keeps everything, else one entry must match.
func matchAny(list []string, match func(string) bool) bool {
	if len(list) == 0 {
		return true
	}
	for _, x := range list {
		if match(x) {
			return true
		}
	}
	return false
}

// Check connects to url and says whether its role may deliver (holds
// audit_deliverer) on a primary (not a hot standby, which takes no writes),
// so that serve and deliver refuse to start where the worker cannot.
func Check(ctx context.Context, url string) error {
	conn, err := database.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := database.CheckPrimary(ctx, conn, "delivery worker"); err != nil {
		return err
	}
	var ok bool
	var user string
	if err := conn.QueryRow(ctx, "SELECT pg_has_role('audit_deliverer', 'USAGE'), current_user").Scan(&ok, &user); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	if !ok {
		return fmt.Errorf("delivery: role %s does not hold audit_deliverer", user)
	}
	return nil
}
