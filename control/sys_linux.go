package control

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerOf returns the credentials the kernel recorded when the peer
// connected (SO_PEERCRED): its effective uid and its pid.
func peerOf(c *net.UnixConn) (peer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	var (
		cred *unix.Ucred
		gerr error
	)
	if err := rc.Control(func(fd uintptr) {
		cred, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{}, err
	}
	if gerr != nil {
		return peer{}, fmt.Errorf("SO_PEERCRED: %w", gerr)
	}
	return peer{uid: int(cred.Uid), pid: int(cred.Pid)}, nil
}

// restrictBeforeBind sets mode 0600 on the socket before bind creates its
// file: Linux creates the file with the socket's mode less the umask, so
// the file is never wider than 0600, not even for a moment.
func restrictBeforeBind(network, address string, c syscall.RawConn) error {
	var ferr error
	if err := c.Control(func(fd uintptr) { ferr = unix.Fchmod(int(fd), socketMode) }); err != nil {
		return err
	}
	if ferr != nil {
		return fmt.Errorf("fchmod socket: %w", ferr)
	}
	return nil
}
