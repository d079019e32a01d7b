package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"time"
)

// Checkpoint copies what the write-ahead log holds into the database file,
// without waiting for readers or writers (a PASSIVE checkpoint), and returns
// how many pages the log held and how many of them are now in the file.
func (b *Backend) Checkpoint(ctx context.Context) (logPages, checkpointed int, err error) {
	var busy int
	err = b.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logPages, &checkpointed)
	if err != nil {
		return 0, 0, fmt.Errorf("checkpoint: %w", dbError(err))
	}
	return logPages, checkpointed, nil
}

// TruncateLogBytes is the size of the write-ahead log file past which the
// daemon's checkpoint service rewinds the log in the writers' turn (see
// RunCheckpoints): 4 MiB, under a tenth of a second of single-task
// enqueues at 5,000/s (each commit adds three pages or so). The file itself
// is cut to zero bytes only past half of JournalSizeLimit or after a
// failure; otherwise the next commits reuse its space.
const TruncateLogBytes = 4 << 20

// truncateWait bounds how long a truncating checkpoint, which holds the
// writers' turn, waits for readers of the log to finish. A reader is done
// in well under a millisecond; one that is not makes the checkpoint give
// up for this time and try again at the next interval.
const truncateWait = 20 * time.Millisecond

// TruncateCheckpoint checkpoints the whole write-ahead log and truncates
// the log file to zero bytes, giving its disk space back. It takes the
// writers' turn for the while, so that it neither waits in SQLite's busy
// handler for a writer nor lets one add to the log meanwhile: producers
// wait for it as for any other write. After a PASSIVE Checkpoint has
// copied most of the log that is a millisecond or so; on a large log not
// checkpointed yet it is as long as copying it takes. It waits at most
// truncateWait for readers, then reports false: the log was not emptied
// this time (nothing is lost; try again later).
func (b *Backend) TruncateCheckpoint(ctx context.Context) (truncated bool, err error) {
	return b.lockedCheckpoint(ctx, "TRUNCATE")
}

// lockedCheckpoint runs a RESTART or TRUNCATE checkpoint in the writers'
// turn, waiting at most truncateWait for readers, and reports whether the
// log was emptied.
func (b *Backend) lockedCheckpoint(ctx context.Context, mode string) (bool, error) {
	conn, err := b.db.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", dbError(err))
	}
	defer conn.Close()
	// The pool's connections wait BusyTimeout; this one, for this
	// statement, only truncateWait.
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", truncateWait.Milliseconds())); err != nil {
		return false, fmt.Errorf("checkpoint: %w", dbError(err))
	}
	defer func() {
		_, rerr := conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA busy_timeout = %d", b.cfg.BusyTimeout.Milliseconds()))
		if rerr != nil {
			// Never hand a connection with the short timeout back to
			// the pool.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	var busy, logPages, checkpointed int
	if err := b.writeMu.Lock(ctx); err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	start := time.Now()
	err = conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(`+mode+`)`).Scan(&busy, &logPages, &checkpointed)
	b.writeMu.Unlock()
	b.log.Debug("write-ahead log checkpointed in the writers' turn", "mode", mode, "held", time.Since(start),
		"emptied", busy == 0)
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", dbError(err))
	}
	return busy == 0, nil
}

// ReclaimSpace gives back the disk space the write-ahead log takes, with a
// TruncateCheckpoint, and fails if it could not: the daemon calls it
// after a write failed with snappea.ErrFull, before it writes again, so that its
// own writes do not use up space just freed before the log is truncated.
func (b *Backend) ReclaimSpace(ctx context.Context) error {
	ok, err := b.TruncateCheckpoint(ctx)
	if err != nil {
		return fmt.Errorf("reclaim disk space: %w", err)
	}
	if !ok {
		return errors.New("reclaim disk space: the write-ahead log is in use by a reader; will try again")
	}
	return nil
}

// RunCheckpoints checkpoints every interval until ctx ends, keeping the
// write-ahead log short and checkpoints out of producers' commits; the
// daemon runs it as a service. Failures are logged and retried at the next
// interval. It returns nil when ctx ends.
//
// Each look is a PASSIVE checkpoint, which waits for no one; once the log
// file has grown past TruncateLogBytes, or after a checkpoint failed, a
// TruncateCheckpoint follows it. PASSIVE alone does not bound the log
// under sustained writes: it copies the log up to the last commit before
// it started, but SQLite only rewinds the log to its start when a writer
// begins while every frame has been copied and no reader is using the log.
// At thousands of commits a second one always lands while the checkpoint
// runs (the daemon's own claims are commits too), so the next writer finds
// the log not fully copied and appends to it; the log grows without end,
// each checkpoint takes longer as it does, making a commit during it ever
// more certain, until it reaches AutoCheckpointPages and producers' commits
// checkpoint it themselves (100-340 ms each, over and over), and the first
// commit after the log is finally rewound pays for cutting the file back to
// JournalSizeLimit (about 60 ms). Readers holding an old snapshot would
// stop it too, but the daemon's reads are single statements, done in well
// under a millisecond: the writers are what PASSIVE cannot get ahead of.
//
// Truncating also gives the log's disk space back, which is how a daemon
// on a file system that filled up recovers once a little space is freed:
// the checkpoint needs room only for the pages it adds to the database
// file, and then the whole log file is free again. A checkpoint that
// failed is therefore retried at every interval, whether or not anything
// was written since (on a full disk, nothing can be).
func (b *Backend) RunCheckpoints(ctx context.Context, interval time.Duration) error {
	t := time.NewTimer(interval)
	defer t.Stop()
	failing := false
	// An idle database is left alone: the log file's size and time only
	// change when something was written. While nothing is, the look is
	// made less and less often, up to once a second, so that an idle daemon
	// costs nothing; the first write brings it back to interval. Only a
	// look that left the log fully checkpointed counts as the last.
	var last os.FileInfo
	wait := interval
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fi, err := os.Stat(b.cfg.Path + "-wal")
		if err == nil && !failing && last != nil && fi.Size() == last.Size() && fi.ModTime().Equal(last.ModTime()) {
			wait = min(2*wait, max(interval, time.Second))
			t.Reset(wait)
			continue
		}
		wait = interval
		t.Reset(wait)
		last = nil
		done, err := b.checkpointOnce(ctx, fi, failing)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				b.log.Warn("checkpointing the write-ahead log failed; will retry", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			b.log.Info("checkpointing the write-ahead log works again")
		}
		failing = false
		if done {
			// Stat again: a truncation changed the file.
			if fi, err := os.Stat(b.cfg.Path + "-wal"); err == nil {
				last = fi
			}
		}
	}
}

// checkpointOnce is one look of RunCheckpoints at the log, whose file fi
// describes (nil if it could not be read). It reports whether the log is
// now fully checkpointed. A RESTART checkpoint, in the writers' turn, is
// the cheap way to rewind the log: it lets the next commit write from the
// file's start, reusing its space. The file is truncated instead after a
// failure (to give the space back) or when it is so large that the next
// commit would pay for cutting it back to JournalSizeLimit.
func (b *Backend) checkpointOnce(ctx context.Context, fi os.FileInfo, failed bool) (done bool, err error) {
	logPages, checkpointed, err := b.Checkpoint(ctx)
	if err != nil {
		return false, err
	}
	if failed {
		return b.lockedCheckpoint(ctx, "TRUNCATE")
	}
	if fi == nil || fi.Size() < TruncateLogBytes {
		return checkpointed == logPages, nil
	}
	// Commits made while the first pass ran are copied by a second, so
	// that the pass in the writers' turn has only a few to copy.
	if _, _, err := b.Checkpoint(ctx); err != nil {
		return false, err
	}
	mode := "RESTART"
	if fi.Size() > JournalSizeLimit/2 {
		mode = "TRUNCATE"
	}
	return b.lockedCheckpoint(ctx, mode)
}
