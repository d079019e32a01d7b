package postgres

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/snappea/snappea/storage"
)

// Reconnect backoff of the Waker's connection.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Waker listens for the notifications of inserts and cancel requests on a
// connection of its own, outside the pool.
type Waker struct {
	b       *Backend
	wakes   chan struct{}
	cancels chan int64
	stop    context.CancelFunc
	done    chan struct{}
	once    sync.Once

	mu        sync.Mutex
	connected chan struct{} // closed once LISTEN holds, renewed when it is lost
	listening bool
}

var _ storage.Waker = (*Waker)(nil)

// Waker connects and listens, and keeps listening until Close: when the
// connection or the server goes away it reconnects with a backoff from
// 100ms doubling up to 5s, and wakes the daemon once it listens again,
// since notifications sent meanwhile are lost. It fails only if the first
// connection cannot be made, or ctx ends first.
func (b *Backend) Waker(ctx context.Context) (storage.Waker, error) {
	conn, err := b.listen(ctx)
	if err != nil {
		return nil, err
	}
	lctx, stop := context.WithCancel(context.Background())
	w := &Waker{b: b, wakes: make(chan struct{}, 1), cancels: make(chan int64, 64), stop: stop,
		done: make(chan struct{}), connected: make(chan struct{})}
	w.setListening(true)
	go w.run(lctx, conn)
	return w, nil
}

// listen opens a connection and LISTENs on both channels.
func (b *Backend) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, b.conn.Copy())
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s to listen for tasks: %w", b.server, b.err(err))
	}
	for _, ch := range []string{b.wakeChan, b.cancChan} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			conn.Close(context.Background())
			return nil, fmt.Errorf("listen on %s at %s: %w", ch, b.server, b.err(err))
		}
	}
	return conn, nil
}

// Wakes receives when tasks may have been queued. Never closed.
func (w *Waker) Wakes() <-chan struct{} { return w.wakes }

// Cancels receives the task ids of cancel requests. Never closed.
func (w *Waker) Cancels() <-chan int64 { return w.cancels }

// Listening reports whether the Waker holds its LISTEN now, and a channel
// closed once it does (already closed when it does now).
func (w *Waker) Listening() (bool, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.listening, w.connected
}

func (w *Waker) setListening(on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on == w.listening {
		return
	}
	w.listening = on
	if on {
		close(w.connected)
	} else {
		w.connected = make(chan struct{})
	}
}

// Close stops listening and closes the connection. It is idempotent.
func (w *Waker) Close() error {
	w.once.Do(w.stop)
	<-w.done
	return nil
}

func (w *Waker) wake() {
	select {
	case w.wakes <- struct{}{}:
	default: // one pending wake is enough
	}
}

func (w *Waker) run(ctx context.Context, conn *pgx.Conn) {
	defer close(w.done)
	backoff := minBackoff
	for {
		err := w.receive(ctx, conn)
		conn.Close(context.Background())
		w.setListening(false)
		if ctx.Err() != nil {
			return
		}
		w.b.log.Warn("lost the PostgreSQL connection listening for tasks; reconnecting", "server", w.b.server, "err", err)
		for {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
			cctx, cancel := context.WithTimeout(ctx, w.b.cfg.ConnectTimeout)
			conn, err = w.b.listen(cctx)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			w.b.log.Debug("reconnecting to listen for tasks failed", "server", w.b.server, "err", err,
				"retry_in", backoff)
		}
		w.b.log.Info("listening for tasks again", "server", w.b.server)
		backoff = minBackoff
		w.setListening(true)
		// Notifications sent while we were away are lost: look anyway.
		w.wake()
	}
}

// receive delivers notifications until the connection fails or ctx ends.
func (w *Waker) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return w.b.err(err)
		}
		switch n.Channel {
		case w.b.wakeChan:
			w.wake()
		case w.b.cancChan:
			id, err := strconv.ParseInt(n.Payload, 10, 64)
			if err != nil {
				w.b.log.Warn("ignoring a cancel request that is not a task id", "channel", n.Channel)
				continue
			}
			select {
			case w.cancels <- id:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}
