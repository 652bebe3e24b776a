package pglocal

import "syscall"

// parentDeath has the kernel end the server (an immediate shutdown) when
// this process dies, Close or not: a test cut short leaves no server behind.
func parentDeath(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGQUIT }
