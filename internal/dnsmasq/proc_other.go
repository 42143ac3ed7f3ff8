//go:build !linux

package dnsmasq

import "syscall"

func childAttr() *syscall.SysProcAttr { return nil }
