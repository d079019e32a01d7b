package bench

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value, p50", ms(7), 50, 7 * time.Millisecond},
		{"one value, max", ms(7), 100, 7 * time.Millisecond},
		{"two values, p50 is the lower", ms(1, 2), 50, time.Millisecond},
		{"two values, p51 is the upper", ms(1, 2), 51, 2 * time.Millisecond},
		{"four values, p50", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"four values, p75", ms(1, 2, 3, 4), 75, 3 * time.Millisecond},
		{"four values, p99", ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{"1..100, p50", hundred, 50, 50 * time.Millisecond},
		{"1..100, p95", hundred, 95, 95 * time.Millisecond},
		{"1..100, p99", hundred, 99, 99 * time.Millisecond},
		{"1..100, p100", hundred, 100, 100 * time.Millisecond},
		{"tiny p is the minimum", ms(1, 2, 3), 0.001, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %g) = %v, want %v", tc.sorted, tc.p, got, tc.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	lat := []time.Duration{5 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	got := summarize(lat)
	want := Percentiles{P50: 3, P95: 5, P99: 5, Max: 5, Samples: 5}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{4}, 4},
		{[]float64{3, 1}, 2},
		{[]float64{9, 1, 5}, 5},
		{[]float64{100, 1, 2, 3}, 2.5},
		{[]float64{1, 1000, 2, 1001, 3}, 3},
	} {
		in := slices.Clone(tc.xs)
		if got := median(in); got != tc.want {
			t.Errorf("median(%v) = %g, want %g", tc.xs, got, tc.want)
		}
		if !slices.Equal(in, tc.xs) {
			t.Errorf("median(%v) reordered its argument to %v", tc.xs, in)
		}
	}
}

func TestJoin(t *testing.T) {
	sent := []Stamp{{ID: 1, SentNS: 1000}, {ID: 2, SentNS: 2000}, {ID: 3, SentNS: 3000}, {ID: 4, SentNS: 4000}}
	started := map[int64]int64{
		1:  1500,    // 500ns
		2:  2000,    // same instant
		4:  4000000, // late
		99: 5,       // not sent by this producer: ignored
	}
	lat, missing := join(sent, started)
	want := []time.Duration{500, 0, 4000000 - 4000}
	if !slices.Equal(lat, want) {
		t.Errorf("latencies = %v, want %v", lat, want)
	}
	if missing != 1 {
		t.Errorf("missing = %d, want 1 (task 3 never started)", missing)
	}
}

func TestAggregate(t *testing.T) {
	cfg := Config{Executable: "snappea", Runs: 3, WorkerSweep: []int{1, 16}, MaxRate: 4000}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	lat := func(p50, p99 float64) Percentiles {
		return Percentiles{P50: p50, P95: p50, P99: p99, Max: p99, Samples: 10}
	}
	runs := []runResult{
		{enqSingle: 100, burnDown: map[int]float64{1: 10, 16: 300}, rssPeak: 20, idle: lat(1, 9),
			maxSustained: 2000, sustainLimit: "latency",
			sweep: []ratePoint{{rate: 500, achieved: 500, lat: lat(1, 2), keptUp: true}, {rate: 4000, achieved: 3000, lat: lat(9, 90)}}},
		{enqSingle: 300, burnDown: map[int]float64{1: 30, 16: 100}, rssPeak: 22, idle: lat(3, 1),
			maxSustained: 4000, sustainLimit: "max_rate",
			sweep: []ratePoint{{rate: 500, achieved: 510, lat: lat(3, 4), keptUp: true}, {rate: 4000, achieved: 3900, lat: lat(1, 3), keptUp: true}}},
		{enqSingle: 200, burnDown: map[int]float64{1: 20, 16: 200}, rssPeak: 90, idle: lat(2, 5),
			maxSustained: 2000, sustainLimit: "latency",
			sweep: []ratePoint{{rate: 500, achieved: 490, lat: lat(2, 3), keptUp: true}}},
	}
	res := aggregate(&cfg, runs)
	if res.EnqueueSinglePerS != 200 {
		t.Errorf("EnqueueSinglePerS = %g, want the median 200", res.EnqueueSinglePerS)
	}
	if res.BurnDownPerS != 200 {
		t.Errorf("BurnDownPerS = %g, want the median at 16 workers, 200", res.BurnDownPerS)
	}
	wantW := []WorkerPoint{{1, 20}, {16, 200}}
	if !slices.Equal(res.BurnDownByWorkers, wantW) {
		t.Errorf("BurnDownByWorkers = %v, want %v", res.BurnDownByWorkers, wantW)
	}
	if res.RSSPeakMB != 22 {
		t.Errorf("RSSPeakMB = %g, want the median 22", res.RSSPeakMB)
	}
	// Each percentile is a median of its own.
	if want := (Percentiles{P50: 2, P95: 2, P99: 5, Max: 5, Samples: 10}); res.LatencyIdleMS != want {
		t.Errorf("LatencyIdleMS = %+v, want %+v", res.LatencyIdleMS, want)
	}
	if res.MaxSustainedRatePerS != 2000 || res.SustainLimit != "latency" {
		t.Errorf("sustained = %g (%s), want 2000 (latency)", res.MaxSustainedRatePerS, res.SustainLimit)
	}
	if len(res.LatencySweep) != 2 {
		t.Fatalf("LatencySweep = %+v, want the two rates measured", res.LatencySweep)
	}
	if p := res.LatencySweep[0]; p.RatePerS != 500 || p.AchievedPerS != 500 || p.LatencyMS.P99 != 3 || !p.KeptUp || p.Runs != 3 {
		t.Errorf("sweep at 500/s = %+v, want achieved 500, p99 3, kept up, 3 runs", p)
	}
	// Two runs reached 4000/s and one of them kept up: not a majority.
	if p := res.LatencySweep[1]; p.Runs != 2 || p.KeptUp || p.AchievedPerS != 3450 {
		t.Errorf("sweep at 4000/s = %+v, want 2 runs, not kept up, achieved 3450", p)
	}
}

func TestConfig_setDefaults(t *testing.T) {
	c := Config{Executable: "snappea"}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.Tasks != 20000 || c.Workers != 16 || c.Runs != 3 || c.Rate != 2000 || c.Duration != 3*time.Second ||
		!slices.Equal(c.WorkerSweep, []int{1, 2, 4, 8, 16, 32}) || !slices.Equal(c.Modes, AllModes) {
		t.Errorf("defaults = %+v", c)
	}
	if got, want := c.sweepRates(), []float64{500, 1000, 2000, 4000, 8000, 16000, 32000, 64000}; !slices.Equal(got, want) {
		t.Errorf("sweepRates = %v, want %v", got, want)
	}
	if got, want := c.burnDownWorkers(), []int{1, 2, 4, 8, 16, 32}; !slices.Equal(got, want) {
		t.Errorf("burnDownWorkers = %v, want %v", got, want)
	}

	none := Config{Executable: "snappea", WorkerSweep: []int{}, MaxRate: -1, Modes: []Mode{Resources, Latency}, Workers: 3}
	if err := none.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if got := none.burnDownWorkers(); !slices.Equal(got, []int{3}) {
		t.Errorf("burnDownWorkers without a sweep = %v, want [3]", got)
	}
	if got := none.sweepRates(); !slices.Equal(got, []float64{2000}) {
		t.Errorf("sweepRates without a sweep = %v, want [2000]", got)
	}

	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Executable"},
		{Config{Executable: "x", Tasks: -1}, "Tasks"},
		{Config{Executable: "x", WorkerSweep: []int{0}}, "WorkerSweep"},
		{Config{Executable: "x", Modes: []Mode{"fast"}}, "Modes"},
		{Config{Executable: "x", Duration: -time.Second}, "Duration"},
		{Config{Executable: "x", Rate: -1}, "Rate"},
	} {
		err := tc.cfg.setDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("setDefaults(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestParseModes(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []Mode
		wantErr bool
	}{
		{"", AllModes, false},
		{"all", AllModes, false},
		{"latency", []Mode{Latency}, false},
		{"burndown, resources,burndown", []Mode{BurnDown, Resources}, false},
		{"latency,speed", nil, true},
	} {
		got, err := ParseModes(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("ParseModes(%q) = %v, %v; want %v (error: %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0", 999: "999", 1000: "1,000", 19999.6: "20,000", 1234567: "1,234,567", -4500: "-4,500",
	} {
		if got := Thousands(in); got != want {
			t.Errorf("Thousands(%g) = %q, want %q", in, got, want)
		}
	}
}

func TestAggregateRate(t *testing.T) {
	one := []producerReport{{Count: 1000, ElapsedNS: int64(time.Second / 2), StartNS: 0, EndNS: 1e12}}
	if got := aggregateRate(one); got != 2000 {
		t.Errorf("one producer: %g/s, want 2000 from its own elapsed time", got)
	}
	// Two producers overlapping: the span is from the first start to the
	// last end.
	two := []producerReport{
		{Count: 1000, StartNS: 0, EndNS: int64(time.Second)},
		{Count: 1000, StartNS: int64(time.Second / 2), EndNS: int64(2 * time.Second)},
	}
	if got := aggregateRate(two); got != 1000 {
		t.Errorf("two producers: %g/s, want 1000", got)
	}
}
