package bench

import "syscall"

// procAttr puts a subprocess in its own process group, so that a Ctrl-C
// in the terminal reaches only the benchmarking process, which stops its
// subprocesses in order, and has the kernel kill it if the benchmarking
// process dies first.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
