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
	typeUnderMake(t, "^TestCtrlCUnderMakeExitsZero$", 3) // Ctrl-C
}

// A Ctrl-Z typed at a process that took the terminal is ignored: stopped, it
// would hold the terminal with make still waiting for it, and neither the
// shell nor a Ctrl-C could reach it again. A Ctrl-C after it still stops it.
func TestCtrlZUnderMakeLeavesTheTerminalUsable(t *testing.T) {
	if os.Getenv("AUDITLOG_TERMINAL_HELPER") != "" {
		terminalHelper()
	}
	t.Parallel()
	typeUnderMake(t, "^TestCtrlZUnderMakeLeavesTheTerminalUsable$", 26, 3) // Ctrl-Z, Ctrl-C
}

// typeUnderMake runs the test named by run as terminalHelper under a real
// make on a pseudo-terminal, types keys there once it is ready, a second
// apart, and fails unless make then exits 0, printing no "Error", within
// 20 s.
func typeUnderMake(t *testing.T, run string, keys ...byte) {
	t.Helper()
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	master, slave := openPTY(t)
	makefile := filepath.Join(t.TempDir(), "Makefile")
	if err := os.WriteFile(makefile, []byte("run:\n\t@exec \"$(BIN)\" -test.run='$(RUN)'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mk, "-f", makefile, "run", "BIN="+os.Args[0], "RUN="+strings.ReplaceAll(run, "$", "$$"))
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
	// The helper, in a process group of its own, outlives a killed make:
	// kill its group too.
	killAll := func() {
		cmd.Process.Kill()
		if _, pid, ok := strings.Cut(out.String(), "ready "); ok {
			var n int
			if _, err := fmt.Sscan(pid, &n); err == nil {
				syscall.Kill(-n, syscall.SIGKILL)
			}
		}
	}
	for deadline := time.Now().Add(time.Minute); !strings.Contains(out.String(), "ready"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			killAll()
			t.Fatalf("the helper never got ready:\n%s", out.String())
		}
	}
	for i, k := range keys {
		if i > 0 {
			time.Sleep(time.Second)
		}
		if _, err := master.Write([]byte{k}); err != nil {
			t.Fatal(err)
		}
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-time.After(20 * time.Second):
		killAll()
		<-waited
		<-read
		t.Fatalf("make still running 20 s after the keys %v:\n%s", keys, out.String())
	}
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
	fmt.Println("ready", os.Getpid())
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
