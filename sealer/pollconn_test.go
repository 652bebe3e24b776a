package sealer

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// The replication connection's socket, read without Go's poller: a read
// waits for data, ends at its deadline as a timeout (which pgconn survives),
// writes arrive, and a closed connection says so.
func TestPollConnReadsWritesAndTimesOut(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		peer, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer peer.Close()
		time.Sleep(100 * time.Millisecond)
		peer.Write([]byte("hello"))
		buf := make([]byte, 4)
		_, err = io.ReadFull(peer, buf)
		got <- string(buf) + errString(err)
	}()
	var d net.Dialer
	c, err := dialPolling(d.DialContext)(context.Background(), "unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*pollConn); !ok {
		t.Fatalf("dialPolling made a %T", c)
	}
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

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " " + err.Error()
}
