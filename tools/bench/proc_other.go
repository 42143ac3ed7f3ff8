//go:build !linux

package main

import "syscall"

// childSysProcAttr: outside Linux, children are only stopped by the
// benchmark's own cleanup.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
