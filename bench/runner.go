package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/snappea/snappea/queue"
)

// runOnce makes every measurement of the config once.
func (r *runner) runOnce(ctx context.Context, run int) (runResult, error) {
	cfg := &r.cfg
	rr := runResult{burnDown: make(map[int]float64)}
	prefix := ""
	if cfg.Runs > 1 {
		prefix = fmt.Sprintf("run %d/%d: ", run+1, cfg.Runs)
	}
	name := func(s string) string { return fmt.Sprintf("run%d-%s", run+1, s) }

	if cfg.has(Enqueue) {
		for _, m := range []struct {
			what      string
			producers int
			batch     int
			into      *float64
		}{
			{"enqueue-single", 1, 1, &rr.enqSingle},
			{"enqueue-single-multi", cfg.Producers, 1, &rr.enqSingleMulti},
			{"enqueue-batch", 1, cfg.BatchSize, &rr.enqBatch},
			{"enqueue-batch-multi", cfg.Producers, cfg.BatchSize, &rr.enqBatchMulti},
		} {
			r.next(prefix + m.what)
			v, err := r.enqueue(ctx, name(m.what), m.producers, m.batch)
			if err != nil {
				return rr, err
			}
			*m.into = v
		}
	}

	for _, w := range cfg.burnDownWorkers() {
		what := fmt.Sprintf("burndown-%dw", w)
		r.next(prefix + what)
		rate, u, err := r.burnDown(ctx, name(what), w)
		if err != nil {
			return rr, err
		}
		rr.burnDown[w] = rate
		rr.rssPeak = max(rr.rssPeak, u.rssMiB)
		if w == cfg.Workers {
			rr.burnDownCPU = u.cpuSecs
		}
	}

	if cfg.has(Latency) {
		if err := r.latency(ctx, name("latency"), prefix, &rr); err != nil {
			return rr, err
		}
	}

	if cfg.has(Resources) {
		r.next(prefix + "idle-cpu")
		if err := r.idleCPU(ctx, name("idle"), &rr); err != nil {
			return rr, err
		}
	}

	if cfg.has(Sustained) {
		r.next(fmt.Sprintf("%ssustained-%.0f/s", prefix, cfg.SustainedRate))
		if err := r.sustained(ctx, name("sustained"), &rr); err != nil {
			return rr, err
		}
	}
	return rr, nil
}

// enqueue measures producers processes enqueueing cfg.Tasks between them,
// batch to a transaction, with no daemon running, and returns tasks/s.
func (r *runner) enqueue(ctx context.Context, name string, producers, batch int) (float64, error) {
	dir, err := r.dataDir(ctx, name)
	if err != nil {
		return 0, err
	}
	defer r.removeData(dir)
	cfgs := make([]ProducerConfig, producers)
	for i := range cfgs {
		n := r.cfg.Tasks / producers
		if i < r.cfg.Tasks%producers {
			n++
		}
		cfgs[i] = ProducerConfig{Dir: dir, Count: max(n, 1), BatchSize: batch}
	}
	reps, err := r.produce(ctx, name, cfgs)
	if err != nil {
		return 0, err
	}
	return aggregateRate(reps), nil
}

// aggregateRate is the producers' total count over the span from the
// first start to the last end (one producer: its own elapsed time).
func aggregateRate(reps []producerReport) float64 {
	if len(reps) == 1 {
		return float64(reps[0].Count) / time.Duration(reps[0].ElapsedNS).Seconds()
	}
	total := 0
	first, last := reps[0].StartNS, reps[0].EndNS
	for _, rep := range reps {
		total += rep.Count
		first = min(first, rep.StartNS)
		last = max(last, rep.EndNS)
	}
	return float64(total) / time.Duration(last-first).Seconds()
}

// burnDown enqueues a backlog of cfg.Tasks no-ops and a marker, starts a
// daemon with workers workers, and returns the drain rate, from "foreman
// started" to the marker's record, and the daemon's resource use.
func (r *runner) burnDown(ctx context.Context, name string, workers int) (float64, usage, error) {
	dir, err := r.dataDir(ctx, name)
	if err != nil {
		return 0, usage{}, err
	}
	defer r.removeData(dir)
	marker := "snappea-bench-end-" + name
	if _, err := r.produce(ctx, name, []ProducerConfig{{Dir: dir, Count: r.cfg.Tasks, BatchSize: r.cfg.BatchSize, Marker: marker}}); err != nil {
		return 0, usage{}, err
	}
	d, err := r.startDaemon(ctx, name, dir, workers, false)
	if err != nil {
		return 0, usage{}, err
	}
	// Generous: a thousand tasks a second.
	timeout := time.Minute + time.Duration(r.cfg.Tasks)*time.Millisecond
	end, err := d.waitFor(ctx, timeout, fmt.Sprintf("the backlog of %d tasks to drain", r.cfg.Tasks), func(rec *logRecord) bool {
		return rec.Msg == marker
	})
	if err != nil {
		d.stop()
		return 0, usage{}, err
	}
	u, err := d.stop()
	if err != nil {
		return 0, u, err
	}
	// Check the count: a rate over tasks that did not all run would be
	// wrong.
	if d.stopped == nil {
		return 0, u, fmt.Errorf("daemon (%s) logged no stopped record\n%s", name, d.tail())
	}
	if want := int64(r.cfg.Tasks + 1); d.stopped.Done != want {
		return 0, u, fmt.Errorf("daemon (%s) ran %d tasks successfully, want %d\n%s", name, d.stopped.Done, want, d.tail())
	}
	elapsed := end.Time.Sub(d.startedAt)
	if elapsed <= 0 {
		return 0, u, fmt.Errorf("daemon (%s): the burn-down took %v by its log's clock", name, elapsed)
	}
	return float64(r.cfg.Tasks) / elapsed.Seconds(), u, nil
}

// pacedResult is one paced latency measurement.
type pacedResult struct {
	lat, call Percentiles
	achieved  float64
}

// latency runs one daemon with debug logs and measures the idle latency,
// then each rate of the sweep.
func (r *runner) latency(ctx context.Context, name, prefix string, rr *runResult) error {
	cfg := &r.cfg
	r.next(prefix + "latency-idle")
	return r.withDaemon(ctx, name, cfg.Workers, true, rr, func(d *daemon, dir string) error {
		n := max(10, int(cfg.Duration/idleGap))
		idle, err := r.paced(ctx, d, name+"-idle", dir, float64(time.Second/idleGap), n)
		if err != nil {
			return err
		}
		rr.idle, rr.idleCall = idle.lat, idle.call

		rates := cfg.sweepRates()
		rr.sustainLimit = "max_rate"
		for i, rate := range rates {
			r.next(fmt.Sprintf("%slatency-%.0f/s", prefix, rate))
			dur := cfg.SweepStep
			if rate == cfg.Rate {
				dur = cfg.Duration
			}
			p, err := r.paced(ctx, d, fmt.Sprintf("%s-%.0f", name, rate), dir, rate, max(1, int(rate*dur.Seconds())))
			if err != nil {
				return err
			}
			latOK := p.lat.P99 <= float64(cfg.SweepP99)/float64(time.Millisecond)
			rateOK := p.achieved >= 0.9*rate
			kept := latOK && rateOK
			rr.sweep = append(rr.sweep, ratePoint{rate: rate, achieved: p.achieved, lat: p.lat, keptUp: kept})
			if rate == cfg.Rate {
				rr.loaded, rr.loadedCall, rr.loadedAchieved = p.lat, p.call, p.achieved
			}
			if kept {
				rr.maxSustained = max(rr.maxSustained, rate)
			} else if rr.sustainLimit == "max_rate" {
				rr.sustainLimit = "rate"
				if !latOK {
					rr.sustainLimit = "latency"
				}
			}
			if !kept && rate > cfg.Rate {
				r.step += len(rates) - 1 - i // the rates not tried
				break
			}
		}
		return nil
	})
}

// paced has one producer enqueue n tasks at rate per second, one per
// transaction, and joins its send times with the daemon's "task started"
// records.
func (r *runner) paced(ctx context.Context, d *daemon, name, dir string, rate float64, n int) (pacedResult, error) {
	reps, err := r.produce(ctx, name, []ProducerConfig{{
		Dir: dir, Count: n, Rate: rate, Stamps: true, CPUProfile: r.profilePath(name, "producer"),
	}})
	if err != nil {
		return pacedResult{}, err
	}
	rep := reps[0]
	pending := make(map[int64]bool, len(rep.Sent))
	for _, s := range rep.Sent {
		pending[s.ID] = true
	}
	started := make(map[int64]int64, len(rep.Sent))
	timeout := time.Minute + time.Duration(n)*time.Millisecond
	_, err = d.waitFor(ctx, timeout, fmt.Sprintf("the %d tasks sent at %.0f/s to start", n, rate), func(rec *logRecord) bool {
		if rec.Msg == "task started" && pending[rec.TaskID] {
			delete(pending, rec.TaskID)
			started[rec.TaskID] = rec.Time.UnixNano()
		}
		return len(pending) == 0
	})
	if err != nil {
		return pacedResult{}, err
	}
	lat, missing := join(rep.Sent, started)
	if missing > 0 {
		return pacedResult{}, fmt.Errorf("daemon (%s): %d of %d tasks have no start record", name, missing, n)
	}
	calls := make([]time.Duration, len(rep.Sent))
	for i, s := range rep.Sent {
		calls[i] = time.Duration(s.CallNS)
	}
	return pacedResult{
		lat:      summarize(lat),
		call:     summarize(calls),
		achieved: float64(rep.Count) / time.Duration(rep.ElapsedNS).Seconds(),
	}, nil
}

// withDaemon runs fn with a daemon started on a fresh data directory
// dir, then stops the daemon, its peak RSS counted in rr, and removes the
// directory.
func (r *runner) withDaemon(ctx context.Context, name string, workers int, debug bool, rr *runResult,
	fn func(d *daemon, dir string) error) (err error) {
	dir, err := r.dataDir(ctx, name)
	if err != nil {
		return err
	}
	defer r.removeData(dir)
	d, err := r.startDaemon(ctx, name, dir, workers, debug)
	if err != nil {
		return err
	}
	defer func() {
		u, serr := d.stop()
		rr.rssPeak = max(rr.rssPeak, u.rssMiB)
		if err == nil {
			err = serr
		}
	}()
	return fn(d, dir)
}

// idleCPU starts a daemon on an empty queue, lets it settle, and measures
// its CPU time over cfg.IdlePeriod.
func (r *runner) idleCPU(ctx context.Context, name string, rr *runResult) error {
	return r.withDaemon(ctx, name, r.cfg.Workers, false, rr, func(d *daemon, dir string) error {
		// Start-up work (migrations, the first claim, the runtime's own
		// start) is not idling.
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
		c0, err := cpuTime(d.pid())
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := sleep(ctx, r.cfg.IdlePeriod); err != nil {
			return err
		}
		c1, err := cpuTime(d.pid())
		if err != nil {
			return err
		}
		rr.idleCPU = (c1 - c0).Seconds()
		rr.idleSeconds = time.Since(t0).Seconds()
		return nil
	})
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sustained starts a daemon, has one producer enqueue single tasks at
// cfg.SustainedRate for cfg.SustainedDuration, and records the producer's
// Enqueue call times and the largest size of the write-ahead log meanwhile.
func (r *runner) sustained(ctx context.Context, name string, rr *runResult) error {
	cfg := &r.cfg
	return r.withDaemon(ctx, name, cfg.Workers, false, rr, func(d *daemon, dir string) error {
		// The log's size is sampled from this process, which otherwise only
		// waits: a stat every 10ms costs the measured processes nothing.
		walPath := filepath.Join(dir, queue.DBFile) + "-wal"
		stop := make(chan struct{})
		sampled := make(chan int64, 1)
		go func() {
			var largest int64
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for {
				if fi, err := os.Stat(walPath); err == nil {
					largest = max(largest, fi.Size())
				}
				select {
				case <-stop:
					sampled <- largest
					return
				case <-t.C:
				}
			}
		}()
		n := max(1, int(cfg.SustainedRate*cfg.SustainedDuration.Seconds()))
		reps, err := r.produce(ctx, name, []ProducerConfig{{
			Dir: dir, Count: n, Rate: cfg.SustainedRate, Stamps: true, CPUProfile: r.profilePath(name, "producer"),
		}})
		close(stop)
		walMax := <-sampled
		if err != nil {
			return err
		}
		rep := reps[0]
		calls := make([]time.Duration, len(rep.Sent))
		for i, s := range rep.Sent {
			calls[i] = time.Duration(s.CallNS)
		}
		rr.sustainedCall = summarize(calls)
		rr.sustainedAchieved = float64(rep.Count) / time.Duration(rep.ElapsedNS).Seconds()
		rr.sustainedWALMax = walMax
		return nil
	})
}
