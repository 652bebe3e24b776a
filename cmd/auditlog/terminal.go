package main

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// takeTerminal moves this process into a process group of its own and makes
// that the terminal's foreground group, when it shares its group with a
// parent such as make. A Ctrl-C then reaches auditlog alone, which stops
// cleanly and exits 0, and make reports that status: hit by the signal
// itself, make fails whatever its child does. A Ctrl-Z is ignored: stopped,
// this process would keep the terminal while make, not stopped, keeps the
// shell waiting, and nothing typed would reach either. The func returned
// hands the terminal back to the parent's group.
func takeTerminal() (restore func()) {
	fd := int(os.Stdin.Fd())
	parent := unix.Getpgrp()
	fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || fg != parent || parent == os.Getpid() {
		// Not a terminal, in the background, or already a group of our own
		// (a shell with job control started us).
		return func() {}
	}
	// A process outside the foreground group may change it only with SIGTTOU
	// ignored.
	signal.Ignore(syscall.SIGTTOU)
	if err := unix.Setpgid(0, 0); err != nil {
		return func() {}
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, os.Getpid()); err != nil {
		unix.Setpgid(0, parent)
		return func() {}
	}
	signal.Ignore(syscall.SIGTSTP)
	return func() { unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, parent) }
}
