//go:build !linux

package bench

import "syscall"

// procAttr puts a subprocess in its own process group, so that a Ctrl-C
// in the terminal reaches only the benchmarking process.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
