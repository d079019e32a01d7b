//go:build !linux

package prefork

import (
	"errors"
	"syscall"
)

// supported: without PR_SET_PDEATHSIG the children would outlive a parent
// killed with -9, and /proc gives no RSS, so the pool refuses to start.
func supported() error {
	return errors.New("prefork: child processes need Linux (PR_SET_PDEATHSIG, /proc)")
}

func socketpair() ([2]int, error) {
	return syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
}

func setPdeathsig(*syscall.SysProcAttr) {}
