package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/queue"
)

// pingTimeout is how long the health check waits for the foreman's loop.
const pingTimeout = 2 * time.Second

// The daemon answers the control socket: these methods implement
// control.Handler.
var _ control.Handler = (*daemon)(nil)

// Status reports the daemon and the queue.
func (d *daemon) Status(ctx context.Context) (*control.Status, error) {
	return d.status(ctx, !control.WithoutQueue(ctx))
}

// status is the daemon's status. With counts it also reads the
// database: the queue's counts (every pending row; the dashboard bounds
// its own), the schedules, the lost tasks and the table of daemons, which
// the dashboard reads itself, so that its pages do not read them twice.
func (d *daemon) status(ctx context.Context, counts bool) (*control.Status, error) {
	s := d.fm.Snapshot()
	var st queue.Stats
	var err error
	if counts {
		if st, err = d.q.Stats(ctx); err != nil {
			return nil, err
		}
	}
	out := &control.Status{
		Running: true, PID: os.Getpid(), DaemonPID: os.Getpid(),
		StartedAt: d.startedAt, State: d.state(s.State), Generation: d.generation,
		WorkersTotal: s.Workers, WorkersBusy: s.Busy,
		Active: make([]control.Active, 0, len(s.Active)),
		Counters: control.Counters{Done: s.Counters.Done, Failed: s.Counters.Failed,
			Panicked: s.Counters.Panicked, Discarded: s.Counters.Discarded,
			Interrupted: s.Counters.Interrupted, Cancelled: s.Counters.Cancelled,
			Retried: s.Counters.Retried, Overdue: s.Counters.Overdue},
		Pending: st.Pending, Ready: st.Ready, Delayed: st.Delayed,
		OldestAgeSeconds: st.OldestAge.Seconds(), SchemaVersion: st.SchemaVersion,
		Services:  make([]control.Service, 0, len(s.Services)),
		Schedules: make([]control.Schedule, 0),
	}
	if !s.IdleSince.IsZero() {
		out.IdleSeconds = time.Since(s.IdleSince).Seconds()
	}
	now := time.Now()
	for _, a := range s.Active {
		out.Active = append(out.Active, control.Active{TaskID: a.ID, Task: a.Name, StartedAt: a.StartedAt,
			ElapsedSeconds: now.Sub(a.StartedAt).Seconds(), Deadline: a.Deadline, Overdue: a.Overdue,
			Attempt: a.Attempt, PID: a.PID})
	}
	for _, sv := range s.Services {
		out.Services = append(out.Services, control.Service{Name: sv.Name, State: sv.State.String(),
			Restarts: sv.Restarts, LastError: sv.LastError, Since: sv.Since})
	}
	procStatus(d.dm, out)
	out.MaxRunning, out.RetryLost = d.dm.Limits()
	out.Database = d.f.data.where()
	if !counts {
		return out, nil
	}
	sched, err := d.scheduleStatus(ctx)
	if err != nil {
		return nil, err
	}
	out.Schedules = append(out.Schedules, sched...)
	if out.Lost, err = d.q.Backend().CountLost(ctx); err != nil {
		return nil, err
	}
	if d.f.data.postgres() {
		// The cluster, so that 'snappea status' on the data directory
		// lists it without being given the URL.
		ds, err := d.q.Backend().Daemons(ctx)
		if err != nil {
			d.log.Warn("status: could not read the table of daemons", "err", err)
		} else {
			out.Daemons = controlDaemons(ds)
		}
	}
	return out, nil
}

// state names the daemon's state: the foreman's, except that a stop on
// the way to a reload is "draining".
func (d *daemon) state(s foreman.State) string {
	if s == foreman.Stopping {
		d.mu.Lock()
		reloading := d.reloading && !d.stopping
		d.mu.Unlock()
		if reloading {
			return "draining"
		}
	}
	return s.String()
}

// Health is nil when the loop answers and the queue is not stuck.
func (d *daemon) Health(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := d.fm.Ping(pctx); err != nil {
		return fmt.Errorf("the main loop is not answering: %w", err)
	}
	st, err := d.Status(ctx)
	if err != nil {
		return fmt.Errorf("cannot read the queue: %w", err)
	}
	return stuck(st, d.f.stuckAfter)
}

// stuck returns why the queue looks stuck: ready tasks waiting longer than
// after while no worker is busy and the daemon is not paused or stopping.
// This is the failure that looks healthy from outside: the process is up,
// the loop answers, and nothing runs.
func stuck(st *control.Status, after time.Duration) error {
	if st.State != "running" || st.Ready == 0 || st.WorkersBusy > 0 {
		return nil
	}
	waited := time.Duration(st.OldestAgeSeconds * float64(time.Second))
	idle := time.Duration(st.IdleSeconds * float64(time.Second))
	if waited < after || idle < after {
		return nil
	}
	return fmt.Errorf("stuck: %d tasks ready, the oldest waiting %s, and no worker busy for %s",
		st.Ready, formatDuration(waited), formatDuration(idle))
}

// Pause stops claiming; running tasks go on.
func (d *daemon) Pause(ctx context.Context) error {
	if d.fm.State() == foreman.Stopping {
		return fmt.Errorf("%w: the daemon is stopping", control.ErrConflict)
	}
	d.fm.Pause()
	return nil
}

// Resume undoes Pause.
func (d *daemon) Resume(ctx context.Context) error {
	if d.fm.State() == foreman.Stopping {
		return fmt.Errorf("%w: the daemon is stopping", control.ErrConflict)
	}
	d.fm.Resume()
	return nil
}

// Stop starts a graceful stop, or with now cancels running tasks at once.
func (d *daemon) Stop(ctx context.Context, now bool) error {
	d.stop(now, "control socket")
	return nil
}

// SetWorkers resizes the pool. A size out of range is the request's
// fault: the control socket answers 400 with the limit.
func (d *daemon) SetWorkers(ctx context.Context, n int) error {
	if err := d.fm.SetWorkers(n); err != nil {
		return fmt.Errorf("%w: %w", control.ErrInvalid, err)
	}
	return nil
}

// Cancel cancels a running task's context.
func (d *daemon) Cancel(ctx context.Context, id int64) (bool, error) {
	if id <= 0 {
		return false, errors.New("task ids are positive")
	}
	return d.fm.Cancel(id), nil
}
