//go:build linux

package dnsmasq

import "syscall"

// childAttr makes the kernel send SIGTERM to dnsmasq when imds dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
