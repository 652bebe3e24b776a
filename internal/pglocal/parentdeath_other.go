//go:build !linux

package pglocal

import "syscall"

// parentDeath does nothing where the kernel cannot signal a child at its
// parent's death: a standby outlives a process that dies without Close.
func parentDeath(*syscall.SysProcAttr) {}
