package bench

import (
	"math"
	"slices"
	"time"
)

// percentile returns the p-th percentile (0 < p <= 100) of sorted, which
// must be in ascending order, by the nearest-rank method: the smallest
// value at least p% of the values are less than or equal to. Zero for no
// values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// summarize returns the percentiles of lat, in milliseconds. It sorts lat.
func summarize(lat []time.Duration) Percentiles {
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Percentiles{
		P50:     ms(percentile(lat, 50)),
		P95:     ms(percentile(lat, 95)),
		P99:     ms(percentile(lat, 99)),
		Max:     ms(percentile(lat, 100)),
		Samples: len(lat),
	}
}

// median returns the median of xs (the mean of the middle two for an even
// count), or zero for none. It does not change xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianOf returns the median of f over items.
func medianOf[T any](items []T, f func(T) float64) float64 {
	xs := make([]float64, len(items))
	for i, it := range items {
		xs[i] = f(it)
	}
	return median(xs)
}

// medianPercentiles takes the median of each percentile separately.
func medianPercentiles(ps []Percentiles) Percentiles {
	return Percentiles{
		P50:     medianOf(ps, func(p Percentiles) float64 { return p.P50 }),
		P95:     medianOf(ps, func(p Percentiles) float64 { return p.P95 }),
		P99:     medianOf(ps, func(p Percentiles) float64 { return p.P99 }),
		Max:     medianOf(ps, func(p Percentiles) float64 { return p.Max }),
		Samples: int(medianOf(ps, func(p Percentiles) float64 { return float64(p.Samples) })),
	}
}

// Stamp is one task a producer enqueued: its id, the wall-clock time (Unix
// nanoseconds) just before Enqueue was called, and how long the call took
// (the insert, the commit, any checkpoint the commit ran, and the wakeup).
type Stamp struct {
	ID     int64 `json:"id"`
	SentNS int64 `json:"sent_ns"`
	CallNS int64 `json:"call_ns"`
}

// join pairs each sent task with its start time (Unix nanoseconds, by task
// id) and returns the latencies, in the order of sent, and how many sent
// tasks have no start time.
func join(sent []Stamp, started map[int64]int64) (lat []time.Duration, missing int) {
	lat = make([]time.Duration, 0, len(sent))
	for _, s := range sent {
		t, ok := started[s.ID]
		if !ok {
			missing++
			continue
		}
		lat = append(lat, time.Duration(t-s.SentNS))
	}
	return lat, missing
}

// runResult is what one run measured.
type runResult struct {
	enqSingle, enqSingleMulti, enqBatch, enqBatchMulti float64

	burnDown             map[int]float64 // workers → tasks/s
	burnDownCPU          float64         // seconds, at Config.Workers
	idle, loaded         Percentiles
	idleCall, loadedCall Percentiles // the producer's Enqueue calls
	loadedAchieved       float64
	sweep                []ratePoint
	maxSustained         float64
	sustainLimit         string
	rssPeak              float64 // MiB, the highest of the run's daemons
	idleCPU, idleSeconds float64

	sustainedCall     Percentiles // the producer's Enqueue calls
	sustainedAchieved float64
	sustainedWALMax   int64 // bytes
}

// ratePoint is one rate of one run's sweep.
type ratePoint struct {
	rate, achieved float64
	lat            Percentiles
	keptUp         bool
}

// aggregate turns the runs into a Result of medians.
func aggregate(cfg *Config, runs []runResult) *Result {
	res := &Result{
		Modes: cfg.Modes, Tasks: cfg.Tasks, Workers: cfg.Workers, Producers: cfg.Producers,
		BatchSize: cfg.BatchSize, Runs: len(runs),
		LoadedRatePerS:    cfg.Rate,
		SweepP99MS:        float64(cfg.SweepP99) / float64(time.Millisecond),
		IdlePeriodSeconds: cfg.IdlePeriod.Seconds(),
		BurnDownByWorkers: []WorkerPoint{},
		LatencySweep:      []RatePoint{},
	}
	if len(runs) == 0 {
		return res
	}
	res.EnqueueSinglePerS = medianOf(runs, func(r runResult) float64 { return r.enqSingle })
	res.EnqueueSingleMultiPerS = medianOf(runs, func(r runResult) float64 { return r.enqSingleMulti })
	res.EnqueueBatchPerS = medianOf(runs, func(r runResult) float64 { return r.enqBatch })
	res.EnqueueBatchMultiPerS = medianOf(runs, func(r runResult) float64 { return r.enqBatchMulti })

	for _, w := range cfg.burnDownWorkers() {
		p := WorkerPoint{Workers: w, PerS: medianOf(runs, func(r runResult) float64 { return r.burnDown[w] })}
		if w == cfg.Workers {
			res.BurnDownPerS = p.PerS
		}
		if cfg.has(BurnDown) {
			res.BurnDownByWorkers = append(res.BurnDownByWorkers, p)
		}
	}
	res.CPUSeconds = medianOf(runs, func(r runResult) float64 { return r.burnDownCPU })
	if res.CPUSeconds > 0 {
		res.CPUMicrosPerTask = res.CPUSeconds / float64(cfg.Tasks) * 1e6
	}
	res.RSSPeakMB = medianOf(runs, func(r runResult) float64 { return r.rssPeak })
	res.IdleCPUSeconds = medianOf(runs, func(r runResult) float64 { return r.idleCPU })

	if cfg.has(Sustained) {
		res.SustainedRatePerS = cfg.SustainedRate
		res.SustainedSeconds = cfg.SustainedDuration.Seconds()
		call := medianPercentiles(collect(runs, func(r runResult) Percentiles { return r.sustainedCall }))
		res.SustainedEnqueueP50MS, res.SustainedEnqueueP99MS, res.SustainedEnqueueMaxMS = call.P50, call.P99, call.Max
		res.SustainedAchievedPerS = medianOf(runs, func(r runResult) float64 { return r.sustainedAchieved })
		res.SustainedWALMaxBytes = int64(medianOf(runs, func(r runResult) float64 { return float64(r.sustainedWALMax) }))
	}
	if cfg.has(Latency) {
		res.LatencyIdleMS = medianPercentiles(collect(runs, func(r runResult) Percentiles { return r.idle }))
		res.LatencyLoadedMS = medianPercentiles(collect(runs, func(r runResult) Percentiles { return r.loaded }))
		res.EnqueueCallIdleMS = medianPercentiles(collect(runs, func(r runResult) Percentiles { return r.idleCall }))
		res.EnqueueCallLoadedMS = medianPercentiles(collect(runs, func(r runResult) Percentiles { return r.loadedCall }))
		res.LoadedAchievedPerS = medianOf(runs, func(r runResult) float64 { return r.loadedAchieved })
		res.MaxSustainedRatePerS = medianOf(runs, func(r runResult) float64 { return r.maxSustained })
		res.SustainLimit = mostCommon(collect(runs, func(r runResult) string { return r.sustainLimit }))
		for _, rate := range cfg.sweepRates() {
			var pts []ratePoint
			for _, r := range runs {
				for _, p := range r.sweep {
					if p.rate == rate {
						pts = append(pts, p)
					}
				}
			}
			if len(pts) == 0 {
				continue
			}
			kept := 0
			for _, p := range pts {
				if p.keptUp {
					kept++
				}
			}
			res.LatencySweep = append(res.LatencySweep, RatePoint{
				RatePerS:     rate,
				AchievedPerS: medianOf(pts, func(p ratePoint) float64 { return p.achieved }),
				LatencyMS:    medianPercentiles(collect(pts, func(p ratePoint) Percentiles { return p.lat })),
				KeptUp:       2*kept > len(pts),
				Runs:         len(pts),
			})
		}
	}
	return res
}

func collect[T, U any](items []T, f func(T) U) []U {
	out := make([]U, len(items))
	for i, it := range items {
		out[i] = f(it)
	}
	return out
}

// mostCommon returns the most frequent of ss, the earliest on a tie.
func mostCommon(ss []string) string {
	best, bestN := "", 0
	for _, s := range ss {
		n := 0
		for _, t := range ss {
			if t == s {
				n++
			}
		}
		if n > bestN {
			best, bestN = s, n
		}
	}
	return best
}
