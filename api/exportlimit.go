package api

import (
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// orgSlots counts the requests of one kind running per org (exports, waiting
// feed requests), so that one org cannot take the server's share of them.
type orgSlots struct {
	max int

	mu      sync.Mutex
	running map[string]int // only orgs with a request running
}

func newOrgSlots(max int) *orgSlots {
	return &orgSlots{max: max, running: map[string]int{}}
}

// acquire takes one of org's slots, if it has one free.
func (o *orgSlots) acquire(org string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.running[org] >= o.max {
		return false
	}
	o.running[org]++
	return true
}

func (o *orgSlots) release(org string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.running[org]--; o.running[org] <= 0 {
		delete(o.running, org)
	}
}

// floorWriter sends an export to the client no slower than a floor: the
// client may keep the server waiting at most window in all for each bytes
// it takes. Only time spent blocked on the client counts, not time the
// server spends reading the database, so a sparse export is never cut; a
// client that stops reading, or trickles, is cut off within window once
// the socket's buffers are full.
type floorWriter struct {
	c      *gin.Context
	bytes  int
	window time.Duration

	taken  int           // bytes the client took since the floor was last met
	waited time.Duration // time spent writing them
}

func (w *floorWriter) Write(p []byte) (int, error) {
	start := time.Now()
	// An error here means the server cannot set deadlines (not net/http's):
	// the write then just has none.
	_ = http.NewResponseController(w.c.Writer).SetWriteDeadline(start.Add(w.window - w.waited))
	n, err := w.c.Writer.Write(p)
	w.waited += time.Since(start)
	if w.taken += n; w.taken >= w.bytes {
		w.taken, w.waited = 0, 0
	}
	return n, err
}
