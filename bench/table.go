package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteTable prints the result as a table for people, a line per figure.
func (res *Result) WriteTable(w io.Writer) error {
	runs := "1 run"
	if res.Runs != 1 {
		runs = fmt.Sprintf("medians of %d runs", res.Runs)
	}
	if res.Backend == "postgresql" {
		runs += " on PostgreSQL"
	}
	if res.Isolation == "process" {
		runs += fmt.Sprintf(", every task in one of %d child processes", res.Procs)
	}
	fmt.Fprintf(w, "snappea bench: %s, %d CPUs, %s, load average %.2f %.2f %.2f at the start, %.0fs\n\n",
		runs, res.CPUs, res.GoVersion, res.LoadAvg[0], res.LoadAvg[1], res.LoadAvg[2], res.Elapsed)
	// Rows of a label and a value; a section heading has no value.
	var rows [][2]string
	row := func(what, format string, args ...any) {
		rows = append(rows, [2]string{what, fmt.Sprintf(format, args...)})
	}
	heading := func(format string, args ...any) {
		rows = append(rows, [2]string{fmt.Sprintf(format, args...), ""})
	}
	has := func(m Mode) bool { return slices.Contains(res.Modes, m) }
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return Thousands(float64(n)) + " " + many
	}

	if has(Enqueue) {
		heading("enqueue (%s each, no daemon running)", plural(res.Tasks, "task", "tasks"))
		row("  one task per transaction, 1 producer", "%s/s", Thousands(res.EnqueueSinglePerS))
		row(fmt.Sprintf("  one task per transaction, %s", plural(res.Producers, "producer", "producers")), "%s/s", Thousands(res.EnqueueSingleMultiPerS))
		row(fmt.Sprintf("  %s per transaction, 1 producer", plural(res.BatchSize, "task", "tasks")), "%s/s", Thousands(res.EnqueueBatchPerS))
		row(fmt.Sprintf("  %s per transaction, %s", plural(res.BatchSize, "task", "tasks"), plural(res.Producers, "producer", "producers")), "%s/s", Thousands(res.EnqueueBatchMultiPerS))
	}
	if has(BurnDown) || has(Resources) {
		heading("burn-down of %s queued no-ops", Thousands(float64(res.Tasks)))
		pts := res.BurnDownByWorkers
		if len(pts) == 0 {
			pts = []WorkerPoint{{Workers: res.Workers, PerS: res.BurnDownPerS}}
		}
		for _, p := range pts {
			row(fmt.Sprintf("  %s", plural(p.Workers, "worker", "workers")), "%s tasks/s", Thousands(p.PerS))
		}
	}
	if has(Latency) {
		heading("pickup latency, enqueue call to handler start, across processes")
		row(fmt.Sprintf("  idle, one task per 5ms (%d tasks)", res.LatencyIdleMS.Samples), "%s", res.LatencyIdleMS)
		row(fmt.Sprintf("  paced at %s/s (achieved %s/s, %d tasks)", Thousands(res.LoadedRatePerS), Thousands(res.LoadedAchievedPerS), res.LatencyLoadedMS.Samples),
			"%s", res.LatencyLoadedMS)
		row("  of which the producer's Enqueue call, idle", "%s", res.EnqueueCallIdleMS)
		row(fmt.Sprintf("  of which the producer's Enqueue call, at %s/s", Thousands(res.LoadedRatePerS)), "%s", res.EnqueueCallLoadedMS)
		for _, p := range res.LatencySweep {
			if p.RatePerS == res.LoadedRatePerS {
				continue
			}
			verdict := "kept up"
			if !p.KeptUp {
				verdict = "NOT kept up"
			}
			row(fmt.Sprintf("  sweep: %s/s (achieved %s/s)", Thousands(p.RatePerS), Thousands(p.AchievedPerS)), "%s  %s", p.LatencyMS, verdict)
		}
		limit := map[string]string{
			"latency":  fmt.Sprintf("above it p99 exceeds %gms", res.SweepP99MS),
			"rate":     "above it the producer achieves less than 90% of the rate",
			"max_rate": "the highest rate tried",
		}[res.SustainLimit]
		row("  highest rate kept up", "%s/s (%s)", Thousands(res.MaxSustainedRatePerS), limit)
	}
	if has(Sustained) {
		heading("sustained single-task enqueues at %s/s for %gs, daemon running (achieved %s/s)",
			Thousands(res.SustainedRatePerS), res.SustainedSeconds, Thousands(res.SustainedAchievedPerS))
		row("  the producer's Enqueue call", "p50 %s  p99 %s  max %s ms",
			ms(res.SustainedEnqueueP50MS), ms(res.SustainedEnqueueP99MS), ms(res.SustainedEnqueueMaxMS))
		if res.Backend != "postgresql" { // the server's log is not the queue's
			row("  largest write-ahead log seen", "%.1f MiB", float64(res.SustainedWALMaxBytes)/(1<<20))
		}
	}
	if has(BurnDown) || has(Resources) || has(Latency) || has(Sustained) {
		heading("daemon resources")
		row("  peak RSS", "%.1f MiB", res.RSSPeakMB)
	}
	if has(BurnDown) || has(Resources) {
		row(fmt.Sprintf("  CPU time, burn-down with %s", plural(res.Workers, "worker", "workers")), "%.2fs (%.1fµs per task)", res.CPUSeconds, res.CPUMicrosPerTask)
	}
	if has(Resources) {
		row(fmt.Sprintf("  CPU time, idle for %gs", res.IdlePeriodSeconds), "%.4fs", res.IdleCPUSeconds)
	}
	width := 0
	for _, r := range rows {
		if r[1] != "" {
			width = max(width, utf8.RuneCountInString(r[0]))
		}
	}
	for _, r := range rows {
		var err error
		if r[1] == "" {
			_, err = fmt.Fprintln(w, r[0])
		} else {
			_, err = fmt.Fprintf(w, "%s%s  %s\n", r[0], strings.Repeat(" ", width-utf8.RuneCountInString(r[0])), r[1])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// String formats the percentiles for the table.
func (p Percentiles) String() string {
	return fmt.Sprintf("p50 %s  p95 %s  p99 %s  max %s ms", ms(p.P50), ms(p.P95), ms(p.P99), ms(p.Max))
}

// ms formats milliseconds with three significant digits or so.
func ms(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// Thousands formats v rounded to an integer, with commas between
// thousands.
func Thousands(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
