package sealer

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The replication connection's socket, read without Go's poller: a read
// waits for data, ends at its deadline as a timeout (which pgconn survives),
// writes arrive, and a closed connection says so.
func TestPollConnReadsWritesAndTimesOut(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	c := pollPair(t, func(peer net.Conn) {
		time.Sleep(100 * time.Millisecond)
		peer.Write([]byte("hello"))
		buf := make([]byte, 4)
		_, err := io.ReadFull(peer, buf)
		got <- string(buf) + errString(err)
	})
	buf := make([]byte, 16)
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	var netErr net.Error
	if n, err := c.Read(buf); !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("read before the peer wrote, past the deadline: %d, %v; want a timeout", n, err)
	}
	c.SetReadDeadline(time.Time{})
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read: %q, %v; want hello", buf[:n], err)
	}
	if n, err := c.Write([]byte("ping")); err != nil || n != 4 {
		t.Fatalf("write: %d, %v", n, err)
	}
	if s := <-got; s != "ping" {
		t.Fatalf("peer read %q, want ping", s)
	}
	if n, err := c.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want EOF", n, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v; want net.ErrClosed", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
}

// pollPair dials a pollConn to a Unix socket whose other end serve has, in
// a goroutine that the test waits for.
func pollPair(t *testing.T, serve func(peer net.Conn)) *pollConn {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		peer, err := ln.Accept()
		if err != nil {
			return
		}
		defer peer.Close()
		serve(peer)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	var d net.Dialer
	nc, err := dialPolling(d.DialContext)(context.Background(), "unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := nc.(*pollConn)
	if !ok {
		t.Fatalf("dialPolling made a %T", nc)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " " + err.Error()
}

// A sender that keeps the socket full, as the WAL sender does while the
// sealer catches up, is read with naps that shrink to napMin: fixed 20 ms
// naps read only a socket's worth (some 20 KB of small messages) per nap,
// and held catching up to a few thousand events a second. Idle again, the
// naps grow back to napMax.
func TestPollConnNapsFollowTheStream(t *testing.T) {
	t.Parallel()
	const total, message = 2 << 20, 100
	idle := make(chan struct{})
	defer close(idle)
	c := pollPair(t, func(peer net.Conn) {
		msg := make([]byte, message)
		for range total / message {
			if _, err := peer.Write(msg); err != nil {
				return
			}
		}
		<-idle
	})
	var napped time.Duration
	shortest := time.Hour
	c.sleep = func(d time.Duration) { napped += d; shortest = min(shortest, d); time.Sleep(d) }
	buf := make([]byte, 8<<10)
	read := 0
	for read < total/message*message {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", read, err)
		}
		read += n
	}
	t.Logf("read %d bytes, napped %v, the shortest nap %v", read, napped, shortest)
	// The naps shrink to napMin: fixed naps never do, whatever the machine's
	// socket buffers hold (with large ones, fixed 20 ms naps took 0.8 s here,
	// under the bound below).
	if shortest != napMin {
		t.Errorf("reading %d bytes from a sender keeping the socket full, the shortest nap was %v; want %v", read, shortest, napMin)
	}
	// Naps staying at napMax: about 2 s here. Halving from napMax reaches
	// napMin within 6 naps, 80 ms together, and the rest are 1 ms each: some
	// 100 ms on an idle machine. Under load the sender refills the socket
	// late now and then, a nap doubles, and the sum has reached 380 ms.
	if napped > time.Second {
		t.Errorf("reading %d bytes from a sender keeping the socket full napped %v; want under 1s", read, napped)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(buf); !os.IsTimeout(err) {
		t.Fatalf("read with the sender idle: %v; want a timeout", err)
	}
	if c.nap != napMax {
		t.Errorf("nap with the sender idle: %v; want %v", c.nap, napMax)
	}
}
