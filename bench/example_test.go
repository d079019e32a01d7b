package bench_test

import (
	"context"
	"log"
	"os"

	"github.com/snappea/snappea/bench"
)

// Run measures a snappea binary (any built with cli.Main; here the one at
// ./snappea) and prints the table that `snappea bench` prints.
func ExampleRun() {
	res, err := bench.Run(context.Background(), bench.Config{
		Executable: "./snappea",
		Modes:      []bench.Mode{bench.BurnDown, bench.Latency},
		Runs:       1,
	})
	if err != nil {
		log.Fatal(err)
	}
	res.WriteTable(os.Stdout)
}

func ExampleResult_WriteTable() {
	res := &bench.Result{
		Modes: []bench.Mode{bench.BurnDown}, Tasks: 20000, Workers: 16, Runs: 3,
		GoVersion: "go1.26", CPUs: 2, LoadAvg: [3]float64{0.1, 0.2, 0.3}, Elapsed: 12,
		BurnDownPerS: 62000,
		BurnDownByWorkers: []bench.WorkerPoint{
			{Workers: 1, PerS: 12000}, {Workers: 16, PerS: 62000},
		},
		RSSPeakMB: 21.5, CPUSeconds: 0.5, CPUMicrosPerTask: 25,
	}
	res.WriteTable(os.Stdout)
	// Output:
	// snappea bench: medians of 3 runs, 2 CPUs, go1.26, load average 0.10 0.20 0.30 at the start, 12s
	//
	// burn-down of 20,000 queued no-ops
	//   1 worker                             12,000 tasks/s
	//   16 workers                           62,000 tasks/s
	// daemon resources
	//   peak RSS                             21.5 MiB
	//   CPU time, burn-down with 16 workers  0.50s (25.0µs per task)
}
