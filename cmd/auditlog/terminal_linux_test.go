package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/auditlog/auditlog/internal/fixture"
)

// Under make, on a terminal, a process that takes the terminal as dev does
// gets a Ctrl-C typed there alone: it stops, and make exits 0 with no
// "Error" (make, hit by the signal itself, fails whatever its child does).
func TestCtrlCUnderMakeExitsZero(t *testing.T) {
	if os.Getenv("AUDITLOG_TERMINAL_HELPER") != "" {
		terminalHelper()
	}
	t.Parallel()
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	master, slave := openPTY(t)
	makefile := filepath.Join(t.TempDir(), "Makefile")
	if err := os.WriteFile(makefile, []byte("run:\n\t@exec \"$(BIN)\" -test.run='^TestCtrlCUnderMakeExitsZero$$'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mk, "-f", makefile, "run", "BIN="+os.Args[0])
	cmd.Env = append(os.Environ(), "AUDITLOG_TERMINAL_HELPER=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out fixture.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil { // EIO once make and its child have exited
				return
			}
		}
	}()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(out.String(), "ready"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the helper never got ready:\n%s", out.String())
		}
	}
	if _, err := master.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	err = cmd.Wait()
	<-read
	if err != nil || !strings.Contains(out.String(), "stopped") || strings.Contains(out.String(), "***") {
		t.Fatalf("make: %v, printed:\n%s", err, out.String())
	}
}

// terminalHelper is the process make runs: it takes the terminal, waits for
// a Ctrl-C, hands the terminal back and exits 0.
func terminalHelper() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	restore := takeTerminal()
	fmt.Println("ready")
	<-ctx.Done()
	stop()
	fmt.Println("stopped")
	restore()
	os.Exit(0)
}

// openPTY opens a pseudo-terminal: its master side, and the slave side the
// child gets as its terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return master, slave
}
