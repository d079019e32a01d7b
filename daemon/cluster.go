package daemon

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/storage"
)

// HeartbeatInterval is how often a daemon on a shared database
// (PostgreSQL) updates its row in the table of live daemons; the backend
// shows it gone after three missed heartbeats.
const HeartbeatInterval = 5 * time.Second

// clusterCallTimeout bounds each registration, heartbeat and
// unregistration.
const clusterCallTimeout = 5 * time.Second

// cluster is the daemon's membership of the daemons sharing its database:
// its row in the table of live daemons, kept fresh by heartbeats, and the
// cancel requests other processes send it. It runs from just before the
// foreman starts until just after it stopped, so that a draining daemon is
// still listed and still cancels its tasks on request.
type cluster struct {
	d      *Daemon
	b      storage.Backend
	cancel context.CancelFunc
	done   chan struct{}

	regMu sync.Mutex // one registration at a time: a second would give the daemon two ids
	mu    sync.Mutex
	id    int64 // 0 until registered
}

// startCluster registers the daemon and starts its heartbeats and the
// delivery of cancel requests (cancels may be nil); stop ends them and
// unregisters it.
func (d *Daemon) startCluster(cancels <-chan int64) *cluster {
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{d: d, b: d.q.Backend(), cancel: cancel, done: make(chan struct{})}
	c.register(ctx)
	go c.run(ctx, cancels)
	return c
}

// row is the daemon as the table of live daemons shows it now.
func (c *cluster) row() storage.Daemon {
	s := c.d.fm.Snapshot()
	host, _ := os.Hostname()
	c.mu.Lock()
	id := c.id
	c.mu.Unlock()
	return storage.Daemon{ID: id, Host: host, PID: os.Getpid(), Workers: s.Workers, Busy: s.Busy,
		Paused:     s.State == foreman.Paused,
		Generation: int64(c.d.cfg.Reloads)}
}

// register adds the daemon's row; a failure is logged, and the next
// heartbeat tries again.
func (c *cluster) register(ctx context.Context) {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	c.mu.Lock()
	done := c.id != 0
	c.mu.Unlock()
	if done {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, clusterCallTimeout)
	defer cancel()
	r := c.row()
	id, err := c.b.RegisterDaemon(ctx, r)
	if err != nil {
		if ctx.Err() == nil {
			c.d.log.Warn("could not register in the table of daemons; will retry", "err", err)
		}
		return
	}
	c.mu.Lock()
	c.id = id
	c.mu.Unlock()
	c.d.log.Info("registered in the table of daemons", "daemon_id", id, "host", r.Host)
}

func (c *cluster) run(ctx context.Context, cancels <-chan int64) {
	defer close(c.done)
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-cancels:
			if c.d.fm.Cancel(id) {
				c.d.log.Info("cancelled a running task on request", "task_id", id)
			}
		case <-t.C:
			c.heartbeat(ctx)
		}
	}
}

// ownerID is the daemon's id in the table of daemons, the owner of its
// in-flight records; it registers first if it has not yet.
func (c *cluster) ownerID(ctx context.Context) (int64, error) {
	c.mu.Lock()
	id := c.id
	c.mu.Unlock()
	if id == 0 {
		c.register(ctx)
		c.mu.Lock()
		id = c.id
		c.mu.Unlock()
	}
	if id == 0 {
		return 0, errNotRegistered
	}
	return id, nil
}

func (c *cluster) heartbeat(ctx context.Context) {
	c.mu.Lock()
	registered := c.id != 0
	c.mu.Unlock()
	if !registered {
		c.register(ctx)
		return
	}
	hctx, cancel := context.WithTimeout(ctx, clusterCallTimeout)
	defer cancel()
	if err := c.b.Heartbeat(hctx, c.row()); err != nil && ctx.Err() == nil {
		c.d.log.Warn("heartbeat failed; will retry", "err", err)
		return
	}
	// The tasks of daemons whose heartbeats stopped meanwhile.
	c.d.led.recoverDead(ctx)
}

// stop ends the heartbeats and removes the daemon's row.
func (c *cluster) stop() {
	c.cancel()
	<-c.done
	c.mu.Lock()
	id := c.id
	c.mu.Unlock()
	if id == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
	defer cancel()
	if err := c.b.UnregisterDaemon(ctx, id); err != nil {
		c.d.log.Warn("could not unregister from the table of daemons; it will show as gone", "err", err)
	}
}
