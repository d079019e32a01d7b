package cli

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/snappea/snappea/foreman"
)

// The environment of systemd's notify protocol (sd_notify(3)). A reload
// re-executes the daemon with the same environment, so the new program
// speaks to the same socket; the processes the daemon starts for itself,
// such as the reload's check, get the environment without them (see
// childEnv). A handler's own child processes inherit them unless the
// handler sets their environment; the unit's NotifyAccess=main makes
// systemd ignore anything they send.
const (
	envNotifySocket  = "NOTIFY_SOCKET"
	envWatchdogUSec  = "WATCHDOG_USEC"
	envWatchdogPID   = "WATCHDOG_PID"
	notifyRetryPause = 10 * time.Millisecond
)

// notifier tells systemd where the daemon is in its life when it runs as
// a Type=notify service: READY=1 once the foreman's loop is claiming
// (again after a reload's re-execution), RELOADING=1 when a reload starts
// to drain, STOPPING=1 on stop, and WATCHDOG=1 every half watchdog
// interval while the loop answers a ping. Without NOTIFY_SOCKET it does
// nothing. A failed send is logged once: systemd's supervision is
// advisory for the daemon, never a reason to stop.
type notifier struct {
	log      *slog.Logger
	enabled  bool
	watchdog time.Duration // WATCHDOG_USEC; 0: no watchdog

	warnOnce sync.Once
	stopOnce sync.Once
}

func newNotifier(getenv func(string) string, log *slog.Logger) *notifier {
	n := &notifier{log: log, enabled: getenv(envNotifySocket) != ""}
	if !n.enabled {
		return n
	}
	wd, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog: ignoring a bad "+envWatchdogUSec+" or "+envWatchdogPID, "err", err)
	}
	n.watchdog = wd
	return n
}

func (n *notifier) send(state string) {
	if !n.enabled {
		return
	}
	if _, err := sd.SdNotify(false, state); err != nil {
		n.warnOnce.Do(func() {
			n.log.Warn("could not notify systemd through "+envNotifySocket, "err", err)
		})
	}
}

// reloading says a reload has begun: systemd (253 and later) wants the
// monotonic time with it, to match the READY=1 that ends it.
func (n *notifier) reloading() {
	n.send(sd.SdNotifyReloading + "\n" + strings.TrimSuffix(sd.SdNotifyMonotonicUsec(), "\n"))
}

// stopping says the daemon is stopping; only the first call sends.
func (n *notifier) stopping() {
	n.stopOnce.Do(func() { n.send(sd.SdNotifyStopping) })
}

// run sends READY=1 once fm's loop answers, then WATCHDOG=1 every half
// watchdog interval for as long as it answers within that half, until ctx
// ends. A loop that stops answering gets no pings, and systemd restarts
// the service when the interval runs out.
func (n *notifier) run(ctx context.Context, fm *foreman.Foreman) {
	if !n.enabled {
		return
	}
	// Ping fails with ErrNotRunning until Run has started.
	for {
		err := fm.Ping(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, foreman.ErrNotRunning) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(notifyRetryPause):
		}
	}
	n.send(sd.SdNotifyReady)
	if n.watchdog <= 0 {
		return
	}
	half := n.watchdog / 2
	t := time.NewTicker(half)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, half)
		err := fm.Ping(pctx)
		cancel()
		switch {
		case err == nil:
			n.send(sd.SdNotifyWatchdog)
		case errors.Is(err, foreman.ErrNotRunning):
			return // the loop has stopped: the daemon is finishing its stop
		case ctx.Err() == nil:
			n.log.Warn("systemd watchdog: the foreman's loop did not answer; no keep-alive sent", "err", err)
		}
	}
}

// childEnv drops the notify protocol's variables from env, for the
// processes the daemon starts other than its own re-execution: they are
// not the service's main process, and must not speak for it.
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name == envNotifySocket || name == envWatchdogUSec || name == envWatchdogPID {
			continue
		}
		out = append(out, kv)
	}
	return out
}
