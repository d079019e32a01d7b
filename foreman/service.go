package foreman

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Service is a long-running function the foreman manages beside its
// workers: a scheduler, a metrics server, a cache warmer. Run should block
// until ctx ends and then return promptly. A Run that returns an error or
// panics is restarted after a backoff (1s, doubling to 1m, back to 1s once a
// run lasted a minute); one that returns nil before the stop has finished
// its work and is not restarted.
type Service struct {
	Name string
	Run  func(ctx context.Context) error
}

// ServiceState is where a managed service is in its life.
type ServiceState int

// The states of a service, after supervisord's.
const (
	ServiceStarting ServiceState = iota // not started yet
	ServiceRunning                      // Run is running
	ServiceBackoff                      // Run failed; waiting to restart it
	ServiceExited                       // Run returned nil; not restarted
	ServiceStopped                      // stopped with the foreman
)

func (s ServiceState) String() string {
	switch s {
	case ServiceStarting:
		return "starting"
	case ServiceRunning:
		return "running"
	case ServiceBackoff:
		return "backoff"
	case ServiceExited:
		return "exited"
	case ServiceStopped:
		return "stopped"
	}
	return fmt.Sprintf("ServiceState(%d)", int(s))
}

// ServiceStatus is a service's state for status pages.
type ServiceStatus struct {
	Name      string
	State     ServiceState
	Since     time.Time // when it entered State
	Restarts  int       // how many times it was restarted after failing
	LastError string    // the last failure, if any
}

// Service restart backoff.
const (
	serviceBackoffMin = time.Second
	serviceBackoffMax = time.Minute
)

type supervised struct {
	Service
	mu       sync.Mutex
	state    ServiceState
	since    time.Time
	restarts int
	lastErr  string
}

func (s *supervised) set(state ServiceState, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.since = state, time.Now()
	if err != nil {
		s.lastErr = err.Error()
	}
}

func (f *Foreman) serviceStatus() []ServiceStatus {
	out := make([]ServiceStatus, 0, len(f.services))
	for _, s := range f.services {
		s.mu.Lock()
		out = append(out, ServiceStatus{Name: s.Name, State: s.state, Since: s.since,
			Restarts: s.restarts, LastError: s.lastErr})
		s.mu.Unlock()
	}
	return out
}

// startServices starts every service under supervision and returns a
// channel closed once all have returned after ctx ended (nil when there are
// none, so that the loop does not wait on it).
func (f *Foreman) startServices(ctx context.Context) <-chan struct{} {
	if len(f.services) == 0 {
		return nil
	}
	var wg sync.WaitGroup
	for _, s := range f.services {
		wg.Go(func() { f.supervise(ctx, s) })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

func (f *Foreman) supervise(ctx context.Context, s *supervised) {
	log := f.log.With("service", s.Name)
	backoff := serviceBackoffMin
	for {
		s.set(ServiceRunning, nil)
		start := time.Now()
		err := callService(ctx, s.Run)
		if ctx.Err() != nil {
			s.set(ServiceStopped, nil)
			return
		}
		if err == nil {
			log.Info("service finished")
			s.set(ServiceExited, nil)
			return
		}
		if time.Since(start) >= serviceBackoffMax {
			backoff = serviceBackoffMin
		}
		var pe *PanicError
		if errors.As(err, &pe) {
			log.Error("service panicked; restarting it", "err", err, "restart_in", backoff, "stack", string(pe.Stack))
		} else {
			log.Error("service failed; restarting it", "err", err, "restart_in", backoff)
		}
		f.report(fmt.Errorf("service %s: %w", s.Name, err), nil)
		s.set(ServiceBackoff, err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			s.set(ServiceStopped, nil)
			return
		case <-t.C:
		}
		s.mu.Lock()
		s.restarts++
		s.mu.Unlock()
		backoff = min(2*backoff, serviceBackoffMax)
	}
}

// callService runs a service, turning a panic into a *PanicError.
func callService(ctx context.Context, run func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	return run(ctx)
}
