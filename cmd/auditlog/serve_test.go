package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestServeRefusesABadTrustedProxy: a value that is not an address or a
// CIDR prefix, by flag or by environment, stops serve before it starts.
func TestServeRefusesABadTrustedProxy(t *testing.T) {
	serveWith := func(args ...string) error {
		return run(context.Background(), append([]string{"serve", "--database-url", "postgres://nobody@127.0.0.1:1/none"}, args...), io.Discard, io.Discard)
	}
	if err := serveWith("--trusted-proxies", "10.0.0.0/8,proxy.internal"); err == nil || !strings.Contains(err.Error(), "proxy.internal") {
		t.Errorf("--trusted-proxies proxy.internal: %v", err)
	}
	t.Setenv("AUDITLOG_TRUSTED_PROXIES", "10.0.0.300")
	if err := serveWith(); err == nil || !strings.Contains(err.Error(), "--trusted-proxies") {
		t.Errorf("AUDITLOG_TRUSTED_PROXIES=10.0.0.300: %v", err)
	}
}
