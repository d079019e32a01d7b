// Package chart draws the chart of a 'snappea bench' result with
// gonum.org/v1/plot. It is a package of its own because that library parses
// its fonts when the program starts, which costs every process of a binary
// that links it about 4 MiB: the stock snappea binary links it, a daemon
// built on package cli for its own tasks does not.
package chart

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/snappea/snappea/bench"
)

// Write writes a chart of res to path, a PNG or an SVG by its extension
// (.png or .svg): two panels side by side, the burn-down throughput against
// the number of workers, and the pickup latency percentiles (p50, p95,
// p99) against the paced rate, both rate axes logarithmic. A panel whose
// measurements were not made says so.
func Write(res *bench.Result, path string) error {
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".png" && ext != ".svg" {
		return fmt.Errorf("plot %s: want a .png or .svg file name", path)
	}
	left, err := throughputPlot(res)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	right, err := latencyPlot(res)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}

	const w, h = 12 * vg.Inch, 4.5 * vg.Inch
	var (
		c  vg.CanvasWriterTo
		dc draw.Canvas
	)
	if ext == ".svg" {
		s := vgsvg.New(w, h)
		c, dc = s, draw.New(s)
	} else {
		img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96))
		c, dc = vgimg.PngCanvas{Canvas: img}, draw.New(img)
	}
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 2, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8,
		PadLeft: vg.Inch / 8, PadRight: vg.Inch / 4}
	plots := [][]*plot.Plot{{left, right}}
	canvases := plot.Align(plots, tiles, dc)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])
	return writeFile(path, c)
}

func writeFile(path string, c io.WriterTo) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// caption is the machine line under each title.
func caption(res *bench.Result) string {
	runs := "1 run"
	if res.Runs != 1 {
		runs = fmt.Sprintf("median of %d runs", res.Runs)
	}
	return fmt.Sprintf("%s, %d CPUs, %s", runs, res.CPUs, res.GoVersion)
}

func throughputPlot(res *bench.Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Burn-down of %s no-ops\n%s", bench.Thousands(float64(res.Tasks)), caption(res))
	p.X.Label.Text = "workers"
	p.Y.Label.Text = "tasks/s"
	p.Y.Min = 0
	pts := res.BurnDownByWorkers
	if len(pts) == 0 && res.BurnDownPerS > 0 {
		pts = []bench.WorkerPoint{{Workers: res.Workers, PerS: res.BurnDownPerS}}
	}
	if len(pts) == 0 {
		notMeasured(p)
		return p, nil
	}
	xys := make(plotter.XYs, len(pts))
	var ticks plot.ConstantTicks
	for i, pt := range pts {
		xys[i] = plotter.XY{X: float64(pt.Workers), Y: pt.PerS}
		ticks = append(ticks, plot.Tick{Value: float64(pt.Workers), Label: strconv.Itoa(pt.Workers)})
	}
	if err := plotutil.AddLinePoints(p, xys); err != nil {
		return nil, err
	}
	if len(pts) > 1 {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = ticks
	}
	p.Y.Tick.Marker = thousandsTicks{}
	p.Add(plotter.NewGrid())
	return p, nil
}

func latencyPlot(res *bench.Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Pickup latency across processes\n%s", caption(res))
	p.X.Label.Text = "paced rate (tasks/s)"
	p.Y.Label.Text = "latency (ms)"
	if len(res.LatencySweep) == 0 {
		notMeasured(p)
		return p, nil
	}
	series := []struct {
		name string
		f    func(bench.Percentiles) float64
	}{
		{"p50", func(q bench.Percentiles) float64 { return q.P50 }},
		{"p95", func(q bench.Percentiles) float64 { return q.P95 }},
		{"p99", func(q bench.Percentiles) float64 { return q.P99 }},
	}
	var args []any
	var ticks plot.ConstantTicks
	for _, pt := range res.LatencySweep {
		ticks = append(ticks, plot.Tick{Value: pt.RatePerS, Label: bench.Thousands(pt.RatePerS)})
	}
	for _, s := range series {
		xys := make(plotter.XYs, len(res.LatencySweep))
		for i, pt := range res.LatencySweep {
			// A log axis cannot show zero; a microsecond is below anything
			// measured across processes.
			xys[i] = plotter.XY{X: pt.RatePerS, Y: max(s.f(pt.LatencyMS), 0.001)}
		}
		args = append(args, s.name, xys)
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, err
	}
	if res.SweepP99MS > 0 {
		bound, err := plotter.NewLine(plotter.XYs{
			{X: res.LatencySweep[0].RatePerS, Y: res.SweepP99MS},
			{X: res.LatencySweep[len(res.LatencySweep)-1].RatePerS, Y: res.SweepP99MS},
		})
		if err != nil {
			return nil, err
		}
		bound.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
		p.Add(bound)
		p.Legend.Add(fmt.Sprintf("p99 bound (%gms)", res.SweepP99MS), bound)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	if len(res.LatencySweep) > 1 {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = ticks
	}
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())
	return p, nil
}

// notMeasured marks an empty panel.
func notMeasured(p *plot.Plot) {
	p.Title.Text += "\n(not measured)"
	p.HideAxes()
}

// thousandsTicks are the default ticks labelled with thousands separators.
type thousandsTicks struct{}

func (thousandsTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = bench.Thousands(ticks[i].Value)
		}
	}
	return ticks
}
