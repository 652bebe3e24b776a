package sealer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// The replication connection is a pollConn: it reads what has arrived and,
// when nothing has, sleeps before trying again. The WAL sender writes one
// message per decoded begin, insert and commit; Go's network poller is
// edge-triggered and wakes a thread for each of them, whether a goroutine
// reads or not, and a read blocked in the kernel instead keeps the
// runtime's monitor polling every 20 µs. On a small machine those wakeups
// cost the sealer (and the WAL sender, which the woken thread preempts)
// more CPU than decoding. Sleeping between reads lets the messages of
// many transactions gather in the socket and be read at once.
//
// How long to sleep follows the stream. A socket holds little of it: on a
// Unix socket each small message costs the sender a kernel buffer of about
// a kilobyte, so some 70 events fill it (25 KB of messages), and the WAL
// sender then waits. A sleep after which fullBurst bytes or more were read
// may have kept the sender waiting, so the next one is half as long, down
// to napMin; one after which less than a quarter of that was read is
// doubled, up to napMax. Catching up, the sealer reads every millisecond
// or so; at a steady rate, a few kilobytes per wakeup, within napMax of
// lag.
const (
	napMin    = time.Millisecond
	napMax    = 40 * time.Millisecond
	fullBurst = 8 << 10
	writeNap  = 20 * time.Millisecond // a write waits only when the server is not reading
)

// dialPolling dials with dial, then swaps the connection for a pollConn on
// a duplicate of its descriptor, which the poller does not watch.
func dialPolling(dial pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		sc, ok := conn.(syscall.Conn)
		if !ok {
			return conn, nil
		}
		defer conn.Close()
		raw, err := sc.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("replication connection: %w", err)
		}
		fd, dupErr := -1, error(nil)
		err = raw.Control(func(orig uintptr) {
			syscall.ForkLock.RLock()
			defer syscall.ForkLock.RUnlock()
			if fd, dupErr = syscall.Dup(int(orig)); dupErr == nil {
				syscall.CloseOnExec(fd) // non-blocking, like the original
			}
		})
		if err = errors.Join(err, dupErr); err != nil {
			return nil, fmt.Errorf("replication connection: %w", err)
		}
		return &pollConn{fd: fd, local: conn.LocalAddr(), remote: conn.RemoteAddr(), nap: napMax, sleep: time.Sleep}, nil
	}
}

// pollConn is a net.Conn on a non-blocking socket that Go's poller does not
// watch. Its deadlines take effect within napMax. One goroutine reads.
type pollConn struct {
	fd              int
	local, remote   net.Addr
	readBy, writeBy atomic.Int64 // deadlines, Unix nanoseconds; 0: none
	mu              sync.RWMutex // held to use fd, exclusively to close it
	closed          bool

	nap   time.Duration       // the next read's sleep when nothing has arrived
	burst int                 // bytes read since the last sleep
	sleep func(time.Duration) // time.Sleep
}

// io runs op on the descriptor unless the connection is closed.
func (c *pollConn) io(op func(fd int) (int, error)) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return op(c.fd)
}

// wait sleeps d, or until deadline if that is sooner; false if the
// deadline has passed.
func (c *pollConn) wait(deadline *atomic.Int64, d time.Duration) bool {
	if by := deadline.Load(); by != 0 {
		left := time.Duration(by - time.Now().UnixNano())
		if left <= 0 {
			return false
		}
		d = min(d, left)
	}
	c.sleep(d)
	return true
}

// napped adapts the read's sleep to the burst read since the last one.
func (c *pollConn) napped() {
	switch {
	case c.burst >= fullBurst:
		c.nap = max(c.nap/2, napMin)
	case c.burst < fullBurst/4:
		c.nap = min(2*c.nap, napMax)
	}
	c.burst = 0
}

func (c *pollConn) Read(b []byte) (int, error) {
	for {
		n, err := c.io(func(fd int) (int, error) { return syscall.Read(fd, b) })
		switch {
		case errors.Is(err, net.ErrClosed):
			return 0, err
		case err == nil && n == 0 && len(b) > 0:
			return 0, io.EOF
		case err == nil:
			c.burst += n
			return n, nil
		case err != syscall.EAGAIN && err != syscall.EINTR:
			return 0, os.NewSyscallError("read", err)
		}
		c.napped()
		if !c.wait(&c.readBy, c.nap) {
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (c *pollConn) Write(b []byte) (int, error) {
	sleep, n := writeNap, 0
	for n < len(b) {
		m, err := c.io(func(fd int) (int, error) { return syscall.Write(fd, b[n:]) })
		if m > 0 {
			n += m
		}
		switch {
		case errors.Is(err, net.ErrClosed):
			return n, err
		case err == nil:
			sleep = writeNap
			continue
		case err != syscall.EAGAIN && err != syscall.EINTR:
			return n, os.NewSyscallError("write", err)
		}
		if !c.wait(&c.writeBy, sleep) {
			return n, os.ErrDeadlineExceeded
		}
		sleep = min(2*sleep, napMax)
	}
	return n, nil
}

func (c *pollConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.closed = true
	return syscall.Close(c.fd)
}

func (c *pollConn) LocalAddr() net.Addr  { return c.local }
func (c *pollConn) RemoteAddr() net.Addr { return c.remote }

func (c *pollConn) SetDeadline(t time.Time) error {
	c.readBy.Store(unixNano(t))
	c.writeBy.Store(unixNano(t))
	return nil
}

func (c *pollConn) SetReadDeadline(t time.Time) error {
	c.readBy.Store(unixNano(t))
	return nil
}

func (c *pollConn) SetWriteDeadline(t time.Time) error {
	c.writeBy.Store(unixNano(t))
	return nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
