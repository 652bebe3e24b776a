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
// many transactions gather in the socket and be read at once, at the cost
// of at most pollMax of lag.
const (
	pollMin = 20 * time.Millisecond
	pollMax = 40 * time.Millisecond
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
		return &pollConn{fd: fd, local: conn.LocalAddr(), remote: conn.RemoteAddr()}, nil
	}
}

// pollConn is a net.Conn on a non-blocking socket that Go's poller does not
// watch. Its deadlines take effect within pollMax.
type pollConn struct {
	fd              int
	local, remote   net.Addr
	readBy, writeBy atomic.Int64 // deadlines, Unix nanoseconds; 0: none
	mu              sync.RWMutex // held to use fd, exclusively to close it
	closed          bool
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

// wait sleeps before the next try, as long as deadline allows, and
// doubles the next sleep up to pollMax; false if the deadline has passed.
func wait(deadline *atomic.Int64, sleep *time.Duration) bool {
	d := pollMax
	if by := deadline.Load(); by != 0 {
		d = time.Duration(by - time.Now().UnixNano())
		if d <= 0 {
			return false
		}
	}
	time.Sleep(min(*sleep, d))
	*sleep = min(2**sleep, pollMax)
	return true
}

func (c *pollConn) Read(b []byte) (int, error) {
	sleep := pollMin
	for {
		n, err := c.io(func(fd int) (int, error) { return syscall.Read(fd, b) })
		switch {
		case errors.Is(err, net.ErrClosed):
			return 0, err
		case err == nil && n == 0 && len(b) > 0:
			return 0, io.EOF
		case err == nil:
			return n, nil
		case err != syscall.EAGAIN && err != syscall.EINTR:
			return 0, os.NewSyscallError("read", err)
		}
		if !wait(&c.readBy, &sleep) {
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (c *pollConn) Write(b []byte) (int, error) {
	sleep, n := pollMin, 0
	for n < len(b) {
		m, err := c.io(func(fd int) (int, error) { return syscall.Write(fd, b[n:]) })
		if m > 0 {
			n += m
		}
		switch {
		case errors.Is(err, net.ErrClosed):
			return n, err
		case err == nil:
			sleep = pollMin
			continue
		case err != syscall.EAGAIN && err != syscall.EINTR:
			return n, os.NewSyscallError("write", err)
		}
		if !wait(&c.writeBy, &sleep) {
			return n, os.ErrDeadlineExceeded
		}
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
