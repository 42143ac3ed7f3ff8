//go:build linux

package main

import "syscall"

// childSysProcAttr makes the kernel SIGKILL a child if the benchmark dies
// without running its cleanup (e.g. SIGKILL), so no server is left behind.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
