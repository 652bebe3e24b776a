package database_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/auditlog/auditlog/internal/database"
)

// The tests open connections to servers that never answer: none may be left
// behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A server that does not answer gives an error naming where we tried, not a
// hang or a stack trace.
func TestUnreachableServerNamesTheHost(t *testing.T) {
	t.Parallel()
	// A listener that never accepts: the TCP connection opens, PostgreSQL never speaks.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	ctx := context.Background()

	start := time.Now()
	_, err = database.Connect(ctx, "postgres://nobody@"+addr+"/auditlog?connect_timeout=1")
	if err == nil {
		t.Fatal("connected to a server that does not exist")
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), `database "auditlog"`) {
		t.Errorf("error does not name the server: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %v to give up", time.Since(start))
	}

	// Nothing listening at all.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln2.Addr().String()
	ln2.Close()
	_, err = database.Pool(ctx, "postgres://nobody@"+closed+"/auditlog", nil)
	if err == nil || !strings.Contains(err.Error(), closed) {
		t.Errorf("pool error does not name the server: %v", err)
	}
}

func TestNoURL(t *testing.T) {
	t.Parallel()
	if _, err := database.Connect(context.Background(), ""); !errors.Is(err, database.ErrNoURL) {
		t.Fatalf("got %v", err)
	}
}
