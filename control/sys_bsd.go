//go:build darwin || freebsd

package control

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerOf returns the peer's effective uid as the kernel recorded it when
// the peer connected (LOCAL_PEERCRED). The pid is not reported: 0.
func peerOf(c *net.UnixConn) (peer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	var (
		cred *unix.Xucred
		gerr error
	)
	if err := rc.Control(func(fd uintptr) {
		cred, gerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	}); err != nil {
		return peer{}, err
	}
	if gerr != nil {
		return peer{}, fmt.Errorf("LOCAL_PEERCRED: %w", gerr)
	}
	return peer{uid: int(cred.Uid)}, nil
}

// restrictBeforeBind is nil here: these systems take the socket file's mode
// from the umask alone. Listen narrows it with chmod before serving; a
// client of another user that connects in between is refused by the peer
// check.
var restrictBeforeBind func(network, address string, c syscall.RawConn) error
