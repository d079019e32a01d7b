package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

// ProducerRole is the hidden first argument of `snappea bench` that makes
// the process a producer for Run: `snappea bench internal-producer CONFIG`,
// CONFIG being a ProducerConfig in JSON. The command line passes it to
// Produce with the process's stdin and stdout.
const ProducerRole = "internal-producer"

// ProducerConfig is the work of one producer process.
type ProducerConfig struct {
	// Dir is the data directory; the database must exist.
	Dir string `json:"dir"`
	// Count is how many snappea.noop tasks to enqueue.
	Count int `json:"count"`
	// BatchSize is how many tasks each transaction holds; 0 or 1 means one
	// Enqueue (one transaction) per task.
	BatchSize int `json:"batch_size,omitempty"`
	// Rate paces one-per-transaction enqueues at this many per second, on
	// a fixed schedule from the start (a late task is sent at once, not
	// skipped); 0 means as fast as possible.
	Rate float64 `json:"rate,omitempty"`
	// Marker, if set, is the message of a snappea.echo task enqueued after
	// the others, outside the timing: its log record marks the end of a
	// burn-down.
	Marker string `json:"marker,omitempty"`
	// Stamps asks for each task's id and send time in the report.
	Stamps bool `json:"stamps,omitempty"`
	// DatabaseURL and Schema, if set, are the PostgreSQL database to
	// enqueue into. They are not in the JSON, which is a command line: the
	// command line fills them from its environment (DatabaseURLEnv,
	// SchemaEnv), which Run sets.
	DatabaseURL string `json:"-"`
	Schema      string `json:"-"`
	// CPUProfile, if set, is where the command line writes a CPU profile
	// of the producer; Produce ignores it.
	CPUProfile string `json:"cpu_profile,omitempty"`
}

// producerReport is what a producer prints on stdout when done, as JSON.
type producerReport struct {
	Count     int     `json:"count"`
	StartNS   int64   `json:"start_ns"` // wall clock, Unix nanoseconds, before the first enqueue
	EndNS     int64   `json:"end_ns"`   // after the last
	ElapsedNS int64   `json:"elapsed_ns"`
	Sent      []Stamp `json:"sent,omitempty"`
}

// readyLine is what a producer prints once it is ready to start.
const readyLine = "ready"

// Produce is the producer role of a snappea binary. It opens the queue in
// cfg.Dir, prints "ready" and a newline on out, waits for start to reach
// EOF (so that several producers start together; nil: at once), enqueues
// as cfg says, and prints a JSON report of its own timing, which covers
// the enqueues only. log receives the queue's warnings; nil discards them.
func Produce(ctx context.Context, cfg ProducerConfig, start io.Reader, out io.Writer, log *slog.Logger) error {
	if cfg.Dir == "" || cfg.Count < 1 {
		return fmt.Errorf("producer: want a data directory and a count of at least 1, have %q and %d", cfg.Dir, cfg.Count)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q, err := queue.Open(ctx, queue.Config{Dir: cfg.Dir, DatabaseURL: cfg.DatabaseURL, Schema: cfg.Schema, Logger: log})
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer q.Close()
	var stamps []Stamp
	if cfg.Stamps {
		stamps = make([]Stamp, 0, cfg.Count)
	}
	if _, err := fmt.Fprintln(out, readyLine); err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	if start != nil {
		if _, err := io.Copy(io.Discard, start); err != nil {
			return fmt.Errorf("producer: wait for the start: %w", err)
		}
	}

	t0 := time.Now()
	if cfg.BatchSize > 1 {
		err = enqueueBatches(ctx, q, cfg.Count, cfg.BatchSize)
	} else {
		for i := range cfg.Count {
			if cfg.Rate > 0 {
				due := t0.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
			}
			sent := time.Now()
			var id int64
			id, err = q.Enqueue(ctx, registry.NoopTask, nil)
			if err != nil {
				break
			}
			if cfg.Stamps {
				stamps = append(stamps, Stamp{ID: id, SentNS: sent.UnixNano(), CallNS: time.Since(sent).Nanoseconds()})
			}
		}
	}
	t1 := time.Now()
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	if cfg.Marker != "" {
		if _, err := q.Enqueue(ctx, registry.EchoTask, registry.MsgArgs{Msg: cfg.Marker}); err != nil {
			return fmt.Errorf("producer: enqueue the end marker: %w", err)
		}
	}
	rep := producerReport{
		Count: cfg.Count, StartNS: t0.UnixNano(), EndNS: t1.UnixNano(), ElapsedNS: t1.Sub(t0).Nanoseconds(),
		Sent: stamps,
	}
	if err := json.NewEncoder(out).Encode(rep); err != nil {
		return fmt.Errorf("producer: write the report: %w", err)
	}
	return nil
}

// enqueueBatches enqueues count no-ops, size to a transaction.
func enqueueBatches(ctx context.Context, q *queue.Queue, count, size int) error {
	jobs := make([]queue.Job, size)
	for i := range jobs {
		jobs[i] = queue.Job{Task: registry.NoopTask}
	}
	for left := count; left > 0; left -= size {
		if _, err := q.EnqueueMany(ctx, jobs[:min(left, size)]); err != nil {
			return err
		}
	}
	return nil
}
