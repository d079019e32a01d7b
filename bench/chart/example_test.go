package chart_test

import (
	"log"

	"github.com/snappea/snappea/bench"
	"github.com/snappea/snappea/bench/chart"
)

// Write draws the two panels of a result: burn-down throughput against
// workers, and pickup latency against the paced rate.
func ExampleWrite() {
	res := &bench.Result{
		Tasks: 20000, Workers: 16, Runs: 3, CPUs: 2, GoVersion: "go1.26",
		BurnDownByWorkers: []bench.WorkerPoint{{Workers: 1, PerS: 12000}, {Workers: 16, PerS: 62000}},
	}
	if err := chart.Write(res, "bench.svg"); err != nil {
		log.Fatal(err)
	}
}
