package dashboard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/foreman"
)

// Local is the Daemon of a foreman running in this process, for a
// dashboard mounted beside an embedded daemon (daemon.Daemon.Foreman).
// generation is shown as the daemon's generation (0 without reloads).
func Local(fm *foreman.Foreman, generation int) Daemon {
	return &local{fm: fm, generation: generation}
}

type local struct {
	fm         *foreman.Foreman
	generation int
}

func (l *local) Status(ctx context.Context) (*control.Status, error) {
	s := l.fm.Snapshot()
	st := &control.Status{Running: true, PID: os.Getpid(), DaemonPID: os.Getpid(), StartedAt: s.StartedAt,
		State: s.State.String(), Generation: l.generation, WorkersTotal: s.Workers, WorkersBusy: s.Busy,
		Counters: control.Counters{Done: s.Counters.Done, Failed: s.Counters.Failed, Panicked: s.Counters.Panicked,
			Discarded: s.Counters.Discarded, Interrupted: s.Counters.Interrupted, Cancelled: s.Counters.Cancelled,
			Retried: s.Counters.Retried, Overdue: s.Counters.Overdue}}
	now := time.Now()
	for _, a := range s.Active {
		st.Active = append(st.Active, control.Active{TaskID: a.ID, Task: a.Name, StartedAt: a.StartedAt,
			ElapsedSeconds: now.Sub(a.StartedAt).Seconds(), Deadline: a.Deadline, Overdue: a.Overdue,
			Attempt: a.Attempt, PID: a.PID})
	}
	return st, nil
}

func (l *local) Pause(ctx context.Context) error {
	if l.fm.State() == foreman.Stopping {
		return errors.New("the daemon is stopping")
	}
	l.fm.Pause()
	return nil
}

func (l *local) Resume(ctx context.Context) error {
	if l.fm.State() == foreman.Stopping {
		return errors.New("the daemon is stopping")
	}
	l.fm.Resume()
	return nil
}

func (l *local) SetWorkers(ctx context.Context, n int) error {
	if err := l.fm.SetWorkers(n); err != nil {
		return fmt.Errorf("%w: %w", control.ErrInvalid, err)
	}
	return nil
}

func (l *local) Cancel(ctx context.Context, id int64) (bool, error) { return l.fm.Cancel(id), nil }
