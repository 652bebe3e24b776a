package sealer

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
)

// queue hands decoded transactions, in commit order, from the goroutine
// reading the slot to the one recording seals, so that reading the next
// batch overlaps with recording the last. It holds about one batch: the
// reader waits while batchSize events are queued.
type queue struct {
	batchSize int
	ready     chan struct{} // wakes the writer: the first transaction queued, or a full batch
	room      chan struct{} // wakes the reader: the writer took a batch

	mu      sync.Mutex
	txs     []committed
	events  int
	busy    bool          // the writer holds transactions it has not recorded yet
	idleEnd pglogrepl.LSN // a WAL end the reader saw with nothing queued, held or half-read
	durable pglogrepl.LSN // what the slot may confirm (see sealer.confirm)
}

func newQueue(batchSize int) *queue {
	return &queue{batchSize: batchSize, ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push queues t, waiting for room until `until`; false if it did not.
func (q *queue) push(ctx context.Context, t committed, until time.Time) (bool, error) {
	for {
		q.mu.Lock()
		if len(q.txs) == 0 || q.events < q.batchSize {
			wake := len(q.txs) == 0 || q.events+len(t.events) >= q.batchSize
			q.txs = append(q.txs, t)
			q.events += len(t.events)
			q.mu.Unlock()
			if wake {
				signal(q.ready)
			}
			return true, nil
		}
		q.mu.Unlock()
		wait := time.NewTimer(time.Until(until))
		select {
		case <-ctx.Done():
			wait.Stop()
			return false, ctx.Err()
		case <-wait.C:
			return false, nil
		case <-q.room:
			wait.Stop()
		}
	}
}

// next says how many transactions and events are queued, and when the
// oldest of them arrived.
func (q *queue) next() (txs, events int, since time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.txs) > 0 {
		since = q.txs[0].at
	}
	return len(q.txs), q.events, since
}

// take removes the next batch: whole transactions, up to batchSize events
// (or one larger transaction). The writer calls recorded once it is.
func (q *queue) take() []committed {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, i := 0, 0
	for ; i < len(q.txs); i++ {
		if i > 0 && n+len(q.txs[i].events) > q.batchSize {
			break
		}
		n += len(q.txs[i].events)
	}
	batch := q.txs[:i:i]
	q.txs = append([]committed(nil), q.txs[i:]...)
	q.events -= n
	q.busy = true
	signal(q.room)
	return batch
}

func (q *queue) recorded() {
	q.mu.Lock()
	q.busy = false
	q.mu.Unlock()
}

// idle notes end, the server's WAL end in a keepalive that the reader got
// outside a transaction: if nothing is queued or held either, every
// transaction that committed before end is recorded.
func (q *queue) idle(end pglogrepl.LSN) {
	q.mu.Lock()
	if len(q.txs) == 0 && !q.busy {
		q.idleEnd = max(q.idleEnd, end)
	}
	q.mu.Unlock()
}

// sealedTo is how far everything is recorded, given the writer's progress.
func (q *queue) sealedTo(progress pglogrepl.LSN) pglogrepl.LSN {
	q.mu.Lock()
	defer q.mu.Unlock()
	return max(progress, q.idleEnd)
}

func (q *queue) confirmed() pglogrepl.LSN {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.durable
}

func (q *queue) confirm(lsn pglogrepl.LSN) {
	q.mu.Lock()
	q.durable = max(q.durable, lsn)
	q.mu.Unlock()
}
