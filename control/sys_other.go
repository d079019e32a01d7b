//go:build !linux && !darwin && !freebsd

package control

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
)

// peerOf fails: this system's peer credentials are not wired up, so every
// connection is refused rather than trusted.
func peerOf(c *net.UnixConn) (peer, error) {
	return peer{}, fmt.Errorf("peer credentials are not supported on %s", runtime.GOOS)
}

// restrictBeforeBind is nil: see sys_bsd.go.
var restrictBeforeBind func(network, address string, c syscall.RawConn) error
