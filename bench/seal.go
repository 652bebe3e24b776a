package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/sealer"
)

// benchSeal measures the sealer against log_event at full speed: what a
// running sealer costs the writers (log_event tx/s with and without it,
// interleaved), the lag from a writer's COMMIT returning to the event's
// seal, and how fast it seals a backlog compared with log_event's peak.
func benchSeal(ctx context.Context, b *bench) ([]row, error) {
	url, conn, err := b.freshConn(ctx, "auditlog_bench_seal")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	org, s, err := sealedOrg(ctx, b, url, conn)
	if err != nil {
		return nil, err
	}
	// The slot is made once; stopping the sealer keeps it, so what is
	// written while it is stopped waits in the WAL, as after an outage.
	if err := s.start(ctx, conn); err != nil {
		return nil, err
	}
	if err := waitSealed(ctx, conn, org); err != nil {
		return nil, err
	}

	// Writers: 4 clients, single-event durable transactions; each notes when
	// its COMMIT returned, by event id, for the lag.
	var mu sync.Mutex
	committedAt := map[string]time.Time{}
	write := func(ctx context.Context, c *pgx.Conn, i int) error {
		var id string
		if err := c.QueryRow(ctx, `SELECT audit.log_event(org_id => $1, action => 'cluster.created', target_id => $2,
			metadata => '{"name": "prod-eu-1"}')`, org, fmt.Sprint("cl-", i)).Scan(&id); err != nil {
			return err
		}
		t := time.Now()
		mu.Lock()
		committedAt[id] = t
		mu.Unlock()
		return nil
	}
	const clients = 4
	var with, without float64
	// Interleaved: with the sealer, without, with, without. What is written
	// without it is its backlog, sealed when it starts again: the first
	// time before the next phase, the last time timed.
	var backlog int64
	var catchUp time.Duration
	var cpu sealCPU
	for i := range 2 {
		w, err := runClients(ctx, url, clients, b.duration/2, nil, write)
		if err != nil {
			return nil, err
		}
		s.stop()
		wo, err := runClients(ctx, url, clients, b.duration/2, nil, write)
		if err != nil {
			return nil, err
		}
		with += w.perSecond() / 2
		without += wo.perSecond() / 2
		if backlog, err = countUnsealed(ctx, conn); err != nil {
			return nil, err
		}
		start, self := time.Now(), processCPU()
		if err := s.start(ctx, conn); err != nil {
			return nil, err
		}
		if err := waitSealed(ctx, conn, org); err != nil {
			return nil, err
		}
		catchUp = time.Since(start)
		if i == 1 {
			if cpu, err = catchUpCPU(ctx, conn, processCPU()-self); err != nil {
				return nil, err
			}
			s.stop()
		}
	}
	lags, err := sealLags(ctx, conn, committedAt, s.ran)
	if err != nil {
		return nil, err
	}
	lagRow := row{benchmark: "commit to sealed lag p99 (p50), 4 writers at full speed", goal: "< 1000 ms",
		measured: "no event sealed while the sealer ran (phases too short)", met: ptr(false)}
	if len(lags) > 0 {
		p50, p99 := lags[len(lags)/2], lags[len(lags)*99/100]
		lagRow.measured, lagRow.met = fmt.Sprintf("%s (%s), %d events", ms(p99), ms(p50), len(lags)), ptr(p99 < time.Second)
	}
	sealRate := float64(backlog) / catchUp.Seconds()
	cpuRow := row{benchmark: "CPU per event sealing the backlog: sealer process / its backend / WAL sender",
		measured: "not measured (the server's processes are not on this machine)"}
	if cpu.ok {
		per := func(d time.Duration) string {
			return fmt.Sprintf("%.0f µs", float64(d.Microseconds())/float64(backlog))
		}
		cpuRow.measured = per(cpu.process) + " / " + per(cpu.backend) + " / " + per(cpu.walSender)
	}
	return []row{
		{benchmark: fmt.Sprintf("log_event tx/s with the sealer running vs without, %d clients, durable", clients),
			measured: fmt.Sprintf("%.0f tx/s", with), baseline: fmt.Sprintf("%.0f tx/s", without), ratio: with / without,
			goal: ">= 0.98", met: ptr(with/without >= 0.98)},
		lagRow,
		{benchmark: "sealing a backlog, events/s vs log_event's peak tx/s",
			measured: fmt.Sprintf("%.0f events/s (%d in %s)", sealRate, backlog, catchUp.Round(time.Millisecond)),
			baseline: fmt.Sprintf("%.0f tx/s", without), ratio: sealRate / without,
			goal: ">= 5", met: ptr(sealRate/without >= 5)},
		cpuRow,
	}, nil
}

// sealedOrg makes a team org with today's and tomorrow's leaves in the
// database at url (conn), and a sealer for it, not started, with a key of
// its own.
func sealedOrg(ctx context.Context, b *bench, url string, conn *pgx.Conn) (string, *sealerProc, error) {
	var org string
	err := conn.QueryRow(ctx, `
		WITH o AS (INSERT INTO cloud.orgs (name, plan) VALUES ('bench', 'team') RETURNING id),
		     leaves AS (SELECT audit.make_leaf('team', current_date), audit.make_leaf('team', current_date + 1))
		SELECT o.id::text FROM o, leaves`).Scan(&org)
	if err != nil {
		return "", nil, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	return org, &sealerProc{cfg: sealer.Config{DatabaseURL: url, Key: key, Logger: b.logger}}, nil
}

// sealCPU is the CPU time the sealer's three parts spent catching up.
type sealCPU struct {
	ok                          bool
	process, backend, walSender time.Duration
}

// catchUpCPU reads, once the sealer has caught up, the CPU time of its two
// server processes (made when it started: its connection and its WAL
// sender) from /proc, when the server runs on this machine; process is this
// process's, in which the sealer runs (the writers are stopped meanwhile).
func catchUpCPU(ctx context.Context, conn *pgx.Conn, process time.Duration) (sealCPU, error) {
	cpu := sealCPU{process: process}
	rows, err := conn.Query(ctx, `
		SELECT pid, backend_type = 'walsender' FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type IN ('client backend', 'walsender')`)
	if err != nil {
		return cpu, err
	}
	var pid int
	var walSender bool
	var senders, backends int
	_, err = pgx.ForEachRow(rows, []any{&pid, &walSender}, func() error {
		d, err := procCPU(pid)
		if err != nil {
			return nil // not on this machine
		}
		if walSender {
			cpu.walSender, senders = cpu.walSender+d, senders+1
		} else {
			cpu.backend, backends = cpu.backend+d, backends+1
		}
		return nil
	})
	cpu.ok = senders == 1 && backends == 1
	return cpu, err
}

// procCPU is the user and system CPU time of process pid, from /proc.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command's closing parenthesis; utime and stime
	// are the 14th and 15th of the line, in clock ticks (100 a second).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// processCPU is this process's user and system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sealerProc runs the sealer in this process and records when it ran.
type sealerProc struct {
	cfg    sealer.Config
	cancel func()
	done   chan struct{}
	ran    []span // from each start's return to the next stop
}

type span struct{ from, to time.Time }

// start runs the sealer and returns once its slot is made.
func (s *sealerProc) start(ctx context.Context, conn *pgx.Conn) error {
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := sealer.Run(ctx, s.cfg); err != nil {
			s.cfg.Logger.Error("sealer", "err", err)
		}
	}()
	for {
		var ready bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM audit.sealer_progress WHERE lsn <> '0/0')").Scan(&ready); err != nil {
			return err
		}
		if ready {
			s.ran = append(s.ran, span{from: time.Now()})
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *sealerProc) stop() {
	s.ran[len(s.ran)-1].to = time.Now()
	s.cancel()
	<-s.done
}

func countUnsealed(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var n int64
	err := conn.QueryRow(ctx, "SELECT count(*) FROM audit.unsealed_events").Scan(&n)
	return n, err
}

// waitSealed waits until every stored event of org is sealed, with the
// writers stopped: until the org's head reaches the count of its events,
// counted once. Polling the head is one primary key lookup, so the wait
// takes next to nothing from the sealer it times (audit.unsealed_events
// reads every event and seal: tens of milliseconds a poll at this size,
// so polling it kept a backend busy through the timed catch-up).
func waitSealed(ctx context.Context, conn *pgx.Conn, org string) error {
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM audit.stored_events WHERE org_id = $1", org).Scan(&n); err != nil {
		return err
	}
	for {
		var head int64
		err := conn.QueryRow(ctx, "SELECT coalesce((SELECT seq FROM audit.seal_heads WHERE org_id = $1), 0)", org).Scan(&head)
		if err != nil || head >= n {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sealLags is, sorted, the time from COMMIT returning to sealed_at of every
// event committed and sealed while the sealer ran: not those written while
// it was stopped (its backlog), nor those it had not sealed when it
// stopped.
func sealLags(ctx context.Context, conn *pgx.Conn, committedAt map[string]time.Time, ran []span) ([]time.Duration, error) {
	rows, err := conn.Query(ctx, "SELECT event_id::text, sealed_at FROM audit.seals")
	if err != nil {
		return nil, err
	}
	var id string
	var sealedAt time.Time
	var lags []time.Duration
	_, err = pgx.ForEachRow(rows, []any{&id, &sealedAt}, func() error {
		at, ok := committedAt[id]
		if !ok || !whileRunning(at, sealedAt, ran) {
			return nil
		}
		lags = append(lags, max(sealedAt.Sub(at), 0))
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(lags)
	return lags, nil
}

// whileRunning says whether an event committed at `at` and sealed at
// sealedAt was both while the sealer ran, in one span.
func whileRunning(at, sealedAt time.Time, ran []span) bool {
	for _, r := range ran {
		if !at.Before(r.from) && !sealedAt.After(r.to) {
			return true
		}
	}
	return false
}
