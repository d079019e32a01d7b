package control

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A request read after its sender's deadline is answered 408 and not
// carried out: a daemon continued after SIGSTOP must not act on commands
// whose senders gave up.
func TestServer_ExpiredRequestIsNotCarriedOut(t *testing.T) {
	h := &fakeHandler{}
	_, path := mustListen(t, h)
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer hc.CloseIdleConnections()
	for _, tt := range []struct {
		name     string
		deadline time.Time
		want     int
		calls    int
	}{
		{"passed", time.Now().Add(-time.Second), http.StatusRequestTimeout, 0},
		{"ahead", time.Now().Add(time.Minute), http.StatusOK, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.Calls())
			req, err := http.NewRequestWithContext(testContext(t), http.MethodPost, "http://snappea/pause", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(DeadlineHeader, strconv.FormatInt(tt.deadline.UnixNano(), 10))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want || len(h.Calls())-before != tt.calls {
				t.Errorf("POST /pause with the deadline %s: status %d, %d handler calls; want %d, %d",
					tt.name, resp.StatusCode, len(h.Calls())-before, tt.want, tt.calls)
			}
		})
	}
}

// The client gives up when its context ends, also on a daemon that
// accepted the connection and never answers, such as a stopped one.
func TestClient_DeadlineOnSilentDaemon(t *testing.T) {
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Connections queue in the backlog and are never read.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = Dial(path).Pause(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Pause = %v, want it to match context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > deadline {
		t.Errorf("Pause returned after %v", d)
	}
}

// A server whose socket file was removed and replaced (its data directory
// deleted and made again by another daemon) reports it, and leaves the
// other daemon's socket alone when it closes.
func TestServer_StillAtPath(t *testing.T) {
	s, path := mustListen(t, &fakeHandler{})
	if err := s.StillAtPath(); err != nil {
		t.Fatalf("StillAtPath = %v on a fresh socket", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := s.StillAtPath(); err == nil {
		t.Error("StillAtPath = nil after the socket file was removed")
	}
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := s.StillAtPath(); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("StillAtPath = %v, want it to say the socket was replaced", err)
	}
	s.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("closing the first server removed the other's socket: %v", err)
	}
}
