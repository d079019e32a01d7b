package prefork

import "syscall"

func supported() error { return nil }

// socketpair makes the parent's and the child's ends, both close-on-exec
// from the start (the pool passes the child's end through ExtraFiles).
func socketpair() ([2]int, error) {
	return syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
}

// setPdeathsig has the kernel kill the child when the thread that started
// it ends (see starter), the parent's kill -9 included.
func setPdeathsig(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
