package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/demo"
	"github.com/auditlog/auditlog/internal/devenv"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/pat"
	"github.com/auditlog/auditlog/internal/pglocal"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/sealer"
)

// dev prepares the demo and an owner token; a second run keeps the demo and
// the token, and prints where everything is.
func TestDevPreparesOnceAndSaysWhereThingsAre(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	dir := t.TempDir()
	e, _ := testEnv(t)
	// dev makes the login roles as it migrates (devMigrate); a fresh
	// cluster has none until some test does.
	rolesConn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	err = devenv.CreateLoginRoles(ctx, rolesConn)
	rolesConn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}

	first, err := prepareDev(ctx, e, url, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !first.demo.Created || !first.tokenMinted || !strings.HasPrefix(first.token, pat.Prefix) {
		t.Fatalf("first run: demo created %v, token minted %v", first.demo.Created, first.tokenMinted)
	}
	second, err := prepareDev(ctx, e, url, dir)
	if err != nil {
		t.Fatal(err)
	}
	if second.demo.Created || second.tokenMinted || second.token != first.token {
		t.Fatalf("second run: demo created %v, token minted %v, same token %v", second.demo.Created, second.tokenMinted, second.token == first.token)
	}
	if fi, err := os.Stat(filepath.Join(dir, devenv.TokenFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The token is an enterprise owner's, stored as its hash only.
	var role string
	err = conn.QueryRow(ctx, `SELECT m.role FROM cloud.pats p JOIN cloud.org_members m ON m.user_id = p.user_id
		WHERE p.token_hash = $1 AND m.org_id = $2 AND p.revoked_at IS NULL`, pat.Hash(first.token), demo.EnterpriseOrgID).Scan(&role)
	if err != nil || role != "owner" {
		t.Fatalf("token's user is %q in the enterprise org (%v)", role, err)
	}
	if !strings.Contains(second.apiURL, "auditlog_api@") {
		t.Errorf("the API connects as %s", second.apiURL)
	}
	if err := sealer.Check(ctx, second.sealerURL); err != nil {
		t.Errorf("the sealer's role cannot seal: %v", err)
	}

	var out strings.Builder
	printDev(&out, "127.0.0.1:8080", dir, 4242, second)
	for _, want := range []string{
		"http://127.0.0.1:8080/orgs/" + demo.EnterpriseOrgID + "/activity",
		"http://127.0.0.1:8080/api/orgs/" + demo.EnterpriseOrgID + "/audit",
		"Owner token:   " + first.token,
		"Authorization: Bearer " + first.token,
		"Press Ctrl-C to stop",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dev's message lacks %q:\n%s", want, out.String())
		}
	}
}

// waitFor waits until b holds s.
func waitFor(t *testing.T, b *fixture.Buffer, s string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); !strings.Contains(b.String(), s); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in:\n%s", s, b.String())
		}
	}
}

// recordEvent records an event of the demo's enterprise org in the
// database of the dev running on the cluster in dir.
func recordEvent(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	cluster, err := pglocal.Start(ctx, pglocal.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close(ctx)
	conn, err := pgx.Connect(ctx, cluster.URL(devDatabase))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := auditlog.Log(ctx, conn, auditlog.Event{OrgID: demo.EnterpriseOrgID, Action: auditlog.AuthSignout}); err != nil {
		t.Fatal(err)
	}
}

// waitDelivered waits until the demo's subscription, the org's only one,
// has delivered events in an attempt after since, and none failed, as the
// owner reads them through the API.
func waitDelivered(t *testing.T, r devRun, since time.Time) {
	t.Helper()
	m := regexp.MustCompile(`Owner token: +(\S+)`).FindStringSubmatch(r.stdout.String())
	if m == nil || !strings.Contains(r.stdout.String(), "Streams:       every event of Northwind Robotics goes to a webhook receiver at https://127.0.0.1:") {
		t.Fatalf("no owner token or receiver in:\n%s", r.stdout)
	}
	var last string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodGet, r.base+"/api/orgs/"+demo.EnterpriseOrgID+"/audit/streams", nil)
		req.Header.Set("Authorization", "Bearer "+m[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Streams []store.Stream }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || len(body.Streams) != 1 || body.Streams[0].Name != devenv.ReceiverSubscription {
			t.Fatalf("streams: %d, %+v, %v", resp.StatusCode, body, err)
		}
		for _, a := range body.Streams[0].Attempts {
			if a.Error != nil {
				t.Fatalf("a failed delivery to the demo receiver: %v %s", a.Status, *a.Error)
			}
			if a.AttemptedAt.After(since) && a.Events > 0 {
				return
			}
		}
		last = fmt.Sprintf("%+v", body.Streams[0])
	}
	t.Fatalf("the demo subscription delivered nothing after %v: %s", since, last)
}

// devRun is one `auditlog dev` run in the test: what it printed and logged.
type devRun struct {
	stdout, stderr *fixture.Buffer
	base           string // the API's URL
}

// startDev runs dev on the cluster in dir until the test stops it with the
// func returned, which returns dev's error.
func startDev(t *testing.T, dir string, logRequests bool) (devRun, func() error) {
	t.Helper()
	r := devRun{stdout: new(fixture.Buffer), stderr: new(fixture.Buffer)}
	e := env{stdout: r.stdout, stderr: r.stderr, logger: slog.New(slog.NewTextHandler(r.stderr, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- dev(ctx, e, devConfig{addr: "127.0.0.1:0", dir: dir, logRequests: logRequests}) }()
	stop := func() error { cancel(); return <-errc }
	waitFor(t, r.stdout, "To print this again")
	m := regexp.MustCompile(`\(http://([^)]+)\)`).FindStringSubmatch(r.stdout.String())
	if m == nil {
		stop()
		t.Fatalf("no address in:\n%s", r.stdout)
	}
	r.base = "http://" + m[1]
	return r, stop
}

// A first dev run prints a line per phase with its time, each once and in
// order, then the banner; it logs no request, prints the banner again for
// --print and on SIGUSR1, and says what it stopped. A second run, with
// --log-requests, finds the schema and the demo there and logs requests.
func TestDevPrintsEachPhaseOnceThenTheBanner(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("/var/tmp", "auditlog-dev-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // for the server's user when we are root
		t.Fatal(err)
	}

	first, stop := startDev(t, dir, false)
	if code := get(t, first.base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	// The demo's subscription delivers to dev's receiver, which checks
	// each batch's signature: the Streams panel's API shows it.
	waitDelivered(t, first, time.Time{})
	var printed strings.Builder
	if err := printRunningBanner(&printed, dir); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, first.stdout, printed.String()+printed.String())
	if err := stop(); err != nil {
		t.Fatalf("dev stopped with %v", err)
	}

	phases, banner, ok := strings.Cut(first.stdout.String(), "\nauditlog is running")
	if !ok || !strings.HasPrefix(printed.String(), "\nauditlog is running") || !strings.HasPrefix("\nauditlog is running"+banner, printed.String()) {
		t.Fatalf("--print printed %q, not dev's banner:\n%s", printed.String(), first.stdout)
	}
	wantPhases := regexp.MustCompile(`^starting PostgreSQL in ` + regexp.QuoteMeta(dir) + ` \.\.\. \d+\.\ds
migrating \.\.\. \d+\.\ds \(schema version \d+: \d+ migrations applied\)
loading the demo \.\.\. \d+\.\ds \(made just now: 4 orgs, \d+ events recorded live, \d+ imported\)
starting the demo's webhook receiver \.\.\. \d+\.\ds
serving \.\.\. \d+\.\ds \(http://127\.0\.0\.1:\d+\)
$`)
	if !wantPhases.MatchString(phases) {
		t.Errorf("phases:\n%s\nwant each once, in order, with its time", phases)
	}
	stopped := regexp.MustCompile(`stopped the API server, the retention worker, the sealer and the delivery worker
stopped the demo's webhook receiver \(it took [1-9]\d* events this run, up to seq [1-9]\d*\)
stopped PostgreSQL \(its data stays in ` + regexp.QuoteMeta(dir) + ` for the next run\)
$`)
	if !stopped.MatchString(first.stdout.String()) {
		t.Errorf("dev did not say what it stopped, or its receiver took nothing:\n%s", first.stdout)
	}
	if s := first.stderr.String(); s != "" {
		t.Errorf("dev logged, without --log-requests:\n%s", s)
	}
	if err := printRunningBanner(io.Discard, dir); err == nil || !strings.Contains(err.Error(), "no auditlog dev is running") {
		t.Errorf("--print after dev stopped: %v", err)
	}

	second, stop := startDev(t, dir, true)
	if code := get(t, second.base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	// A second run keeps the subscription, with a receiver on its port and
	// a certificate of its own: an event recorded now reaches it too.
	since := time.Now()
	recordEvent(t, dir)
	waitDelivered(t, second, since)
	if err := stop(); err != nil {
		t.Fatalf("second dev stopped with %v", err)
	}
	for _, want := range []string{"(schema version ", ", as before)\n", "(4 orgs, made on an earlier run)\n"} {
		if !strings.Contains(second.stdout.String(), want) {
			t.Errorf("second run's phases lack %q:\n%s", want, second.stdout)
		}
	}
	if !strings.Contains(second.stderr.String(), "msg=request method=GET path=/healthz status=200") {
		t.Errorf("--log-requests logged no request:\n%s", second.stderr)
	}
}

// While a dev runs for a checkout, a second one stops before it does
// anything, pointing at --print; --print, until the first one serves, says
// that it is starting.
func TestSecondDevForTheCheckoutStopsAtOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := claimDev(dir) // what a running dev holds from its start
	if err != nil {
		t.Fatal(err)
	}
	defer first.release()
	if err := printRunningBanner(io.Discard, dir); err == nil || !strings.Contains(err.Error(), "still starting") {
		t.Errorf("--print while the first dev starts: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, out := testEnv(t)
	err = dev(ctx, e, devConfig{addr: "127.0.0.1:0", dir: dir})
	if err == nil || !strings.Contains(err.Error(), "already running for this checkout") || !strings.Contains(err.Error(), "dev --print") {
		t.Errorf("second dev: %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("the second dev went ahead:\n%s", out)
	}
}

// A dev whose port is taken stops before it does anything, naming the
// variable that moves it.
func TestDevWhosePortIsTakenStopsAtOnce(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, out := testEnv(t)
	err = dev(ctx, e, devConfig{addr: taken.Addr().String(), dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "AUDITLOG_ADDR") {
		t.Errorf("dev on a taken port: %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("dev went ahead on a taken port:\n%s", out)
	}
}
