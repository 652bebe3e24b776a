package sealer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/sqlstate"
	"github.com/auditlog/auditlog/internal/store"
)

// statusEvery is how often the sealer tells the server how far it got, so
// the slot releases WAL, and a sealer starting after this one is sent again
// little that this one sealed.
const statusEvery = time.Second

type head struct {
	seq  int64
	hash chain.Hash
}

// committed is one decoded transaction's events, its id, where it ends,
// and when it was read.
type committed struct {
	xid    uint32
	end    pglogrepl.LSN
	events []store.Event
	at     time.Time
}

type sealer struct {
	cfg      *Config
	conn     *pgx.Conn
	repl     *pgconn.PgConn
	heads    map[string]head // by org; valid while this sealer holds the lock
	progress pglogrepl.LSN   // end of the last transaction recorded as sealed
}

func (s *sealer) run(ctx context.Context) error {
	replURL, err := replicationURL(s.cfg.DatabaseURL)
	if err != nil {
		return fatalError{err}
	}
	replCfg, err := pgconn.ParseConfig(replURL)
	if err != nil {
		return fatalError{fmt.Errorf("sealer: database URL: %w", err)}
	}
	replCfg.DialFunc = dialPolling(replCfg.DialFunc)
	s.repl, err = pgconn.ConnectConfig(ctx, replCfg)
	if err != nil {
		return fmt.Errorf("replication connection: %w", err)
	}
	defer s.repl.Close(context.Background())
	if err := s.ensureSlot(ctx); err != nil {
		return err
	}
	err = pglogrepl.StartReplication(ctx, s.repl, s.cfg.Slot, s.progress, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'auditlog_events'"},
	})
	if err != nil {
		return fmt.Errorf("start replication from slot %s: %w", s.cfg.Slot, err)
	}
	s.cfg.Logger.Info("sealer active", "slot", s.cfg.Slot, "from", s.progress.String())
	return s.stream(ctx)
}

// ensureSlot makes the slot unless it exists and has finished its first
// pass; a slot that lost WAL it needed, or whose first pass was cut short,
// is made again (the first pass seals what is not sealed yet).
func (s *sealer) ensureSlot(ctx context.Context) error {
	var lsn *pglogrepl.LSN
	var exists, lost bool
	err := s.conn.QueryRow(ctx, `
		SELECT (SELECT p.lsn::text FROM audit.sealer_progress p WHERE p.slot = $1),
		       EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1),
		       EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1 AND wal_status = 'lost')`,
		s.cfg.Slot).Scan(&lsn, &exists, &lost)
	if err != nil {
		return fmt.Errorf("read sealer progress: %w", err)
	}
	if exists && !lost && lsn != nil && *lsn != 0 {
		s.progress = *lsn
		return nil
	}
	if exists {
		s.cfg.Logger.Warn("making the replication slot again", "slot", s.cfg.Slot, "lost", lost)
		if err := pglogrepl.DropReplicationSlot(ctx, s.repl, s.cfg.Slot, pglogrepl.DropReplicationSlotOptions{Wait: true}); err != nil {
			return fmt.Errorf("drop slot %s: %w", s.cfg.Slot, err)
		}
	}
	if _, err := s.conn.Exec(ctx, "SELECT audit.set_sealer_progress($1, '0/0')", s.cfg.Slot); err != nil {
		return fmt.Errorf("record new slot: %w", err)
	}
	s.cfg.Logger.Info("making the replication slot (waits for transactions running now to end)", "slot", s.cfg.Slot)
	slot, err := pglogrepl.CreateReplicationSlot(ctx, s.repl, s.cfg.Slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT",
	})
	if err != nil {
		return fmt.Errorf("create slot %s: %w", s.cfg.Slot, err)
	}
	consistent, err := pglogrepl.ParseLSN(slot.ConsistentPoint)
	if err != nil {
		return err
	}
	n, err := s.sealExisting(ctx, slot.SnapshotName)
	if err != nil {
		return err
	}
	if _, err := s.conn.Exec(ctx, "SELECT audit.set_sealer_progress($1, $2)", s.cfg.Slot, consistent.String()); err != nil {
		return fmt.Errorf("record first pass: %w", err)
	}
	s.cfg.Logger.Info("sealed existing events", "events", n, "slot", s.cfg.Slot)
	s.progress = consistent
	return nil
}

// sealExisting seals the events committed before the slot began, as of its
// exported snapshot, per org in (occurred_at, id) order: their commit order
// is not known.
func (s *sealer) sealExisting(ctx context.Context, snapshot string) (int64, error) {
	read, err := pgx.ConnectConfig(ctx, s.conn.Config())
	if err != nil {
		return 0, fmt.Errorf("connect for the first pass: %w", err)
	}
	defer read.Close(context.Background())
	tx, err := read.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+snapshot+"'"); err != nil {
		return 0, fmt.Errorf("use the slot's snapshot: %w", err)
	}
	rows, err := tx.Query(ctx, `
		SELECT id, org_id, occurred_at, action, target_type, target_id, actor_type, actor_id,
		       actor_email, ip::text AS ip, user_agent, request_id, metadata
		FROM audit.unsealed_events ORDER BY occurred_at, id`)
	if err != nil {
		return 0, fmt.Errorf("read unsealed events: %w", err)
	}
	defer rows.Close()
	var total int64
	var batch []store.Event
	for rows.Next() {
		e, err := pgx.RowToStructByName[store.Event](rows)
		if err != nil {
			return total, err
		}
		batch = append(batch, e)
		if len(batch) == s.cfg.BatchSize {
			if err := s.seal(ctx, batch, nil, nil); err != nil {
				return total, err
			}
			total += int64(len(batch))
			batch = batch[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return total, err
	}
	if err := s.seal(ctx, batch, nil, nil); err != nil {
		return total, err
	}
	return total + int64(len(batch)), nil
}

// stream seals what the slot sends: this goroutine reads and decodes
// committed transactions and queues them; a second one records them in
// batches (write). Reading the next batch thus overlaps with recording the
// last.
func (s *sealer) stream(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := newQueue(s.cfg.BatchSize)
	written := make(chan error, 1)
	go func() {
		err := s.write(ctx, q)
		cancel()
		written <- err
	}()
	err := s.receive(ctx, q)
	cancel()
	if werr := <-written; werr != nil && !errors.Is(werr, context.Canceled) {
		return werr
	}
	if confirmed := q.confirmed(); confirmed != 0 {
		// Stopping: confirm what write settled, so that the next sealer
		// does not decode it again.
		final, cancel := context.WithTimeout(context.Background(), stopWait)
		defer cancel()
		if serr := pglogrepl.SendStandbyStatusUpdate(final, s.repl, pglogrepl.StandbyStatusUpdate{WALWritePosition: confirmed}); serr != nil && err == nil {
			err = fmt.Errorf("send status: %w", serr)
		}
	}
	return err
}

// stopWait bounds how long a stopping sealer waits for the WAL holding its
// last seals to be flushed, to confirm them.
const stopWait = 2 * time.Second

// settle confirms, when the sealer stops, what it recorded, once the WAL
// holding it is flushed (the WAL writer flushes within a fraction of a
// second), or stopWait has passed.
func (s *sealer) settle(q *queue, pending staged) {
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	for {
		var err error
		if pending, err = s.confirm(ctx, q, pending); err != nil {
			return
		}
		if pending.pos == 0 && q.sealedTo(s.progress) <= q.confirmed() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// receive reads the slot, queues its committed transactions in commit
// order, and tells the server how far the slot may be confirmed.
func (s *sealer) receive(ctx context.Context, q *queue) error {
	relations := map[uint32]*pglogrepl.RelationMessage{}
	restart := s.progress // transactions ending here or before were sealed before a restart
	var (
		inTx       bool
		xid        uint32
		current    []store.Event
		nextStatus = time.Now()
		receiveBy  = deadline{parent: ctx}
	)
	defer receiveBy.stop()
	status := func() error {
		if err := pglogrepl.SendStandbyStatusUpdate(ctx, s.repl, pglogrepl.StandbyStatusUpdate{WALWritePosition: q.confirmed()}); err != nil {
			return fmt.Errorf("send status: %w", err)
		}
		nextStatus = time.Now().Add(statusEvery)
		return nil
	}
	for {
		if !time.Now().Before(nextStatus) {
			if err := status(); err != nil {
				return err
			}
		}
		raw, err := s.repl.ReceiveMessage(receiveBy.at(nextStatus))
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		var data []byte
		switch m := raw.(type) {
		case *pgproto3.CopyData:
			data = m.Data
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication: %s (%s)", m.Message, m.Code)
		default:
			continue
		}
		if len(data) == 0 {
			continue
		}
		switch data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
			if err != nil {
				return err
			}
			if !inTx {
				q.idle(k.ServerWALEnd)
			}
			if k.ReplyRequested {
				nextStatus = time.Time{}
			}
		case pglogrepl.XLogDataByteID:
			x, err := pglogrepl.ParseXLogData(data[1:])
			if err != nil {
				return err
			}
			msg, err := pglogrepl.Parse(x.WALData)
			if err != nil {
				return fmt.Errorf("decode: %w", err)
			}
			switch m := msg.(type) {
			case *pglogrepl.RelationMessage:
				relations[m.RelationID] = m
			case *pglogrepl.BeginMessage:
				inTx, xid, current = true, m.Xid, nil
			case *pglogrepl.InsertMessage:
				rel, ok := relations[m.RelationID]
				if !ok {
					return fmt.Errorf("decode: insert into unknown relation %d", m.RelationID)
				}
				e, err := decodeEvent(rel, m.Tuple)
				if err != nil {
					return err
				}
				current = append(current, e)
			case *pglogrepl.CommitMessage:
				inTx = false
				if m.TransactionEndLSN <= restart {
					continue
				}
				t := committed{xid: xid, end: m.TransactionEndLSN, events: current, at: time.Now()}
				current = nil
				for {
					ok, err := q.push(ctx, t, nextStatus)
					if err != nil {
						return err
					}
					if ok {
						break
					}
					if err := status(); err != nil {
						return err
					}
				}
			}
		}
	}
}

// confirmEvery is how often the writer checks whether what it recorded is
// flushed, so that the slot may confirm it.
const confirmEvery = time.Second

// staged is a position that the slot may confirm once the server's WAL is
// flushed to lsn.
type staged struct{ pos, lsn pglogrepl.LSN }

// write records the queued transactions in batches, and does the periodic
// work between batches.
func (s *sealer) write(ctx context.Context, q *queue) error {
	now := time.Now()
	nextCheck, nextPrune, nextConfirm := now, now.Add(s.cfg.PruneEvery), now
	var pending staged
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
	for {
		txs, events, since := q.next()
		flushBy := since.Add(s.cfg.BatchDelay)
		if txs > 0 && (events >= s.cfg.BatchSize || !time.Now().Before(flushBy)) {
			err := s.sealCommitted(ctx, q.take())
			q.recorded()
			if err != nil {
				return err
			}
		}
		now := time.Now()
		if !now.Before(nextCheck) {
			if err := s.signHeads(ctx); err != nil {
				return err
			}
			nextCheck = now.Add(s.cfg.CheckpointEvery)
		}
		if !now.Before(nextPrune) {
			if err := s.prune(ctx); err != nil {
				return err
			}
			nextPrune = now.Add(s.cfg.PruneEvery)
		}
		if !now.Before(nextConfirm) {
			var err error
			if pending, err = s.confirm(ctx, q, pending); err != nil {
				return err
			}
			nextConfirm = now.Add(confirmEvery)
		}

		txs, events, since = q.next()
		deadline := earliest(nextCheck, nextPrune, nextConfirm)
		if txs > 0 {
			if events >= s.cfg.BatchSize {
				continue
			}
			deadline = earliest(deadline, since.Add(s.cfg.BatchDelay))
		}
		wait.Reset(time.Until(deadline))
		select {
		case <-ctx.Done():
			s.settle(q, pending)
			return ctx.Err()
		case <-q.ready:
		case <-wait.C:
		}
	}
}

// confirm moves what the slot may confirm. The sealer commits without
// waiting for the WAL flush (synchronous_commit off: the writers' flushes
// carry its commits), so a crash of the server may lose its last batches,
// seals and progress together; the slot must then not have moved past
// them, or their events would never be sealed. So a position is confirmed
// only once the WAL is flushed past the sealer's commits up to it: it is
// staged with the WAL insert position read after them, and confirmed when
// the flush position passes that, a second or so later.
func (s *sealer) confirm(ctx context.Context, q *queue, pending staged) (staged, error) {
	sealed, confirmed := q.sealedTo(s.progress), q.confirmed()
	if pending.pos == 0 && sealed <= confirmed {
		return pending, nil
	}
	var insert, flush pglogrepl.LSN
	if err := s.conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text").Scan(&insert, &flush); err != nil {
		return pending, fmt.Errorf("read WAL positions: %w", err)
	}
	if pending.pos != 0 && flush >= pending.lsn {
		q.confirm(pending.pos)
		pending, confirmed = staged{}, max(confirmed, pending.pos)
	}
	if pending.pos == 0 && sealed > confirmed {
		pending = staged{sealed, insert}
	}
	return pending, nil
}

// sealCommitted seals decoded transactions, in their commit order, and
// records the end of the last one as the slot's progress.
func (s *sealer) sealCommitted(ctx context.Context, txs []committed) error {
	var events []store.Event
	var xids []int64
	for _, t := range txs {
		events = append(events, t.events...)
		for range t.events {
			xids = append(xids, int64(t.xid))
		}
	}
	end := txs[len(txs)-1].end
	if err := s.seal(ctx, events, xids, &end); err != nil {
		return err
	}
	s.progress = end
	return nil
}

// seal gives events the next seqs of their orgs, in order, and records
// them, with the ids of their transactions (xids, nil if their
// transactions ended before the slot began), and the progress end (nil:
// leave progress). Some may be sealed
// already: an event re-tiered to another plan's table is inserted again.
// That is rare, so the batch is first recorded as if none were, and only
// if that hits a seal of one of its events is it recorded again without
// the events sealed already.
func (s *sealer) seal(ctx context.Context, events []store.Event, xids []int64, end *pglogrepl.LSN) error {
	if len(events) == 0 && end == nil {
		return nil
	}
	err := s.record(ctx, events, xids, end, nil)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == sqlstate.UniqueViolation && pgErr.ConstraintName == "seals_event_key" {
		sealed, err := s.alreadySealed(ctx, events)
		if err != nil {
			return err
		}
		return s.record(ctx, events, xids, end, sealed)
	}
	return err
}

// record records the seals of events, skipping those in sealed when it
// is not nil (and then an event seen twice in the batch).
func (s *sealer) record(ctx context.Context, events []store.Event, xids []int64, end *pglogrepl.LSN, sealed map[eventKey]bool) error {
	if err := s.loadHeads(ctx, events); err != nil {
		return err
	}
	n := len(events)
	orgs, seqs, times, ids, hashes := make([]pgtype.UUID, 0, n), make([]int64, 0, n), make([]time.Time, 0, n), make([]pgtype.UUID, 0, n), make([][]byte, 0, n)
	var txs []int64
	if xids != nil {
		txs = make([]int64, 0, n)
	}
	heads := map[string]head{}
	for i, e := range events {
		if sealed != nil {
			key := eventKey{e.OrgID, e.OccurredAt.UnixMicro(), e.ID}
			if sealed[key] {
				continue
			}
			sealed[key] = true
		}
		var org, id pgtype.UUID
		if err := org.Scan(e.OrgID); err != nil {
			return fmt.Errorf("event %s: org id: %w", e.ID, err)
		}
		if err := id.Scan(e.ID); err != nil {
			return fmt.Errorf("event id %s: %w", e.ID, err)
		}
		h, ok := heads[e.OrgID]
		if !ok {
			h = s.heads[e.OrgID]
		}
		canonical, err := chain.Canonical(e)
		if err != nil {
			return err
		}
		h = head{h.seq + 1, chain.Next(h.hash, h.seq+1, canonical)}
		heads[e.OrgID] = h
		orgs, seqs, times, ids, hashes = append(orgs, org), append(seqs, h.seq), append(times, e.OccurredAt), append(ids, id), append(hashes, h.hash[:])
		if xids != nil {
			txs = append(txs, xids[i])
		}
	}
	var lsn *string
	if end != nil {
		l := end.String()
		lsn = &l
	}
	_, err := s.conn.Exec(ctx, "SELECT audit.record_seals($1, $2, $3, $4, $5, $6, $7, $8)", s.cfg.Slot, lsn, orgs, seqs, times, ids, hashes, txs)
	if err != nil {
		s.heads = map[string]head{}
		return fmt.Errorf("record seals: %w", err)
	}
	for org, h := range heads {
		s.heads[org] = h
	}
	return nil
}

type eventKey struct {
	org string
	at  int64
	id  string
}

// loadHeads reads the heads of the events' orgs not known yet.
func (s *sealer) loadHeads(ctx context.Context, events []store.Event) error {
	var missing []string
	for _, e := range events {
		if _, ok := s.heads[e.OrgID]; !ok {
			missing = append(missing, e.OrgID)
			s.heads[e.OrgID] = head{}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	rows, err := s.conn.Query(ctx, "SELECT org_id::text, seq, hash FROM audit.seal_heads WHERE org_id = ANY($1::uuid[])", missing)
	if err != nil {
		return fmt.Errorf("read heads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var org string
		var seq int64
		var hash []byte
		if err := rows.Scan(&org, &seq, &hash); err != nil {
			return err
		}
		h, err := chain.ParseHash(hash)
		if err != nil {
			return err
		}
		s.heads[org] = head{seq, h}
	}
	if err := rows.Err(); err != nil {
		s.heads = map[string]head{}
		return fmt.Errorf("read heads: %w", err)
	}
	return nil
}

// alreadySealed says which of the events have a seal.
func (s *sealer) alreadySealed(ctx context.Context, events []store.Event) (map[eventKey]bool, error) {
	orgs, times, ids := make([]string, len(events)), make([]time.Time, len(events)), make([]string, len(events))
	for i, e := range events {
		orgs[i], times[i], ids[i] = e.OrgID, e.OccurredAt, e.ID
	}
	rows, err := s.conn.Query(ctx, `
		SELECT s.org_id::text, s.occurred_at, s.event_id::text
		FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[]) AS b(org_id, occurred_at, id)
		JOIN audit.seals s ON s.org_id = b.org_id AND s.occurred_at = b.occurred_at AND s.event_id = b.id`,
		orgs, times, ids)
	if err != nil {
		return nil, fmt.Errorf("read seals: %w", err)
	}
	defer rows.Close()
	sealed := map[eventKey]bool{}
	for rows.Next() {
		var k eventKey
		var at time.Time
		if err := rows.Scan(&k.org, &at, &k.id); err != nil {
			return nil, err
		}
		k.at = at.UnixMicro()
		sealed[k] = true
	}
	return sealed, rows.Err()
}

// deadline is a context ending at a time, made anew only when the time
// changes: the receiver waits until the next status update, one message
// at a time, thousands a second.
type deadline struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
	until  time.Time
}

func (d *deadline) at(t time.Time) context.Context {
	if d.ctx == nil || !t.Equal(d.until) {
		d.stop()
		d.ctx, d.cancel = context.WithDeadline(d.parent, t)
		d.until = t
	}
	return d.ctx
}

func (d *deadline) stop() {
	if d.cancel != nil {
		d.cancel()
	}
}

func earliest(t time.Time, more ...time.Time) time.Time {
	for _, u := range more {
		if u.Before(t) {
			t = u
		}
	}
	return t
}
