// Package chart draws the chart of a 'snappea bench' result, as a PNG or
// an SVG. It draws with the standard library and a bitmap font
// (golang.org/x/image/font/basicfont), and nothing that works at start-up:
// every process of the stock snappea binary links it, the daemon too. (A
// charting library that parsed its fonts when the program started cost
// each daemon about 3 MiB of its peak RSS.)
package chart

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/snappea/snappea/bench"
)

// The chart's size in pixels: two panels side by side.
const (
	width, height = 1152, 432
	panelGap      = 24
)

var (
	black   = color.RGBA{0, 0, 0, 255}
	white   = color.RGBA{255, 255, 255, 255}
	gray    = color.RGBA{120, 120, 120, 255}
	light   = color.RGBA{225, 225, 225, 255}
	palette = []color.RGBA{{31, 119, 180, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}}
)

// Write writes a chart of res to path, a PNG or an SVG by its extension
// (.png or .svg): two panels side by side, the burn-down throughput against
// the number of workers, and the pickup latency percentiles (p50, p95,
// p99) against the paced rate, both rate axes logarithmic. A panel whose
// measurements were not made says so.
func Write(res *bench.Result, path string) error {
	ext := strings.ToLower(filepath.Ext(path))
	var c canvas
	switch ext {
	case ".png":
		c = newRaster(width, height)
	case ".svg":
		c = newSVG(width, height)
	default:
		return fmt.Errorf("plot %s: want a .png or .svg file name", path)
	}
	w := (width - panelGap) / 2
	throughputPanel(res).draw(c, rect{0, 0, w, height})
	latencyPanel(res).draw(c, rect{w + panelGap, 0, width, height})

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := c.encode(f); err != nil {
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

func throughputPanel(res *bench.Result) *panel {
	p := &panel{
		title: []string{"Burn-down of " + bench.Thousands(float64(res.Tasks)) + " no-ops", caption(res)},
		x:     axis{label: "workers", log: true},
		y:     axis{label: "tasks/s"},
	}
	pts := res.BurnDownByWorkers
	if len(pts) == 0 && res.BurnDownPerS > 0 {
		pts = []bench.WorkerPoint{{Workers: res.Workers, PerS: res.BurnDownPerS}}
	}
	if len(pts) == 0 {
		p.empty = true
		return p
	}
	s := series{color: palette[0], markers: true}
	for _, pt := range pts {
		s.pts = append(s.pts, xy{float64(pt.Workers), pt.PerS})
		p.x.ticks = append(p.x.ticks, tick{float64(pt.Workers), strconv.Itoa(pt.Workers)})
	}
	p.series = []series{s}
	p.x.min, p.x.max = logRange(s.pts, func(v xy) float64 { return v.x })
	p.y.min, p.y.max = 0, maxOf(s.pts, func(v xy) float64 { return v.y })*1.1
	p.y.ticks = linearTicks(p.y.min, p.y.max, bench.Thousands)
	return p
}

func latencyPanel(res *bench.Result) *panel {
	p := &panel{
		title:  []string{"Pickup latency across processes", caption(res)},
		x:      axis{label: "paced rate (tasks/s)", log: true},
		y:      axis{label: "latency (ms)", log: true},
		legend: true,
	}
	if len(res.LatencySweep) == 0 {
		p.empty = true
		return p
	}
	percentiles := []struct {
		name string
		f    func(bench.Percentiles) float64
	}{
		{"p50", func(q bench.Percentiles) float64 { return q.P50 }},
		{"p95", func(q bench.Percentiles) float64 { return q.P95 }},
		{"p99", func(q bench.Percentiles) float64 { return q.P99 }},
	}
	var all []xy
	for i, q := range percentiles {
		s := series{name: q.name, color: palette[i], markers: true}
		for _, pt := range res.LatencySweep {
			// A log axis cannot show zero; a microsecond is below anything
			// measured across processes.
			s.pts = append(s.pts, xy{pt.RatePerS, max(q.f(pt.LatencyMS), 0.001)})
		}
		all = append(all, s.pts...)
		p.series = append(p.series, s)
	}
	for _, pt := range res.LatencySweep {
		p.x.ticks = append(p.x.ticks, tick{pt.RatePerS, bench.Thousands(pt.RatePerS)})
	}
	p.x.min, p.x.max = logRange(all, func(v xy) float64 { return v.x })
	if res.SweepP99MS > 0 {
		first, last := res.LatencySweep[0].RatePerS, res.LatencySweep[len(res.LatencySweep)-1].RatePerS
		bound := series{name: fmt.Sprintf("p99 bound (%gms)", res.SweepP99MS), color: gray, dashed: true,
			pts: []xy{{first, res.SweepP99MS}, {last, res.SweepP99MS}}}
		all = append(all, bound.pts...)
		p.series = append(p.series, bound)
	}
	p.y.min, p.y.max = logRange(all, func(v xy) float64 { return v.y })
	p.y.ticks = logTicks(p.y.min, p.y.max)
	return p
}

type xy struct{ x, y float64 }

type tick struct {
	v     float64
	label string
}

type axis struct {
	label    string
	log      bool
	min, max float64
	ticks    []tick
}

// pos maps v to [0, 1] along the axis.
func (a axis) pos(v float64) float64 {
	if a.log {
		return (math.Log(v) - math.Log(a.min)) / (math.Log(a.max) - math.Log(a.min))
	}
	return (v - a.min) / (a.max - a.min)
}

type series struct {
	name    string
	pts     []xy
	color   color.RGBA
	dashed  bool
	markers bool
}

type panel struct {
	title  []string
	x, y   axis
	series []series
	legend bool
	empty  bool // nothing measured
}

type rect struct{ x0, y0, x1, y1 int }

// draw lays the panel out in r: the title lines on top, the y axis's
// label above its tick labels, the x axis's label under its own.
func (p *panel) draw(c canvas, r rect) {
	for i, line := range p.title {
		c.text(float64(r.x0+r.x1)/2, float64(r.y0+lineHeight*(i+1)+4), line, center, black)
	}
	if p.empty {
		c.text(float64(r.x0+r.x1)/2, float64(r.y0+r.y1)/2, "(not measured)", center, gray)
		return
	}
	yLabelW := 0
	for _, t := range p.y.ticks {
		yLabelW = max(yLabelW, textWidth(t.label))
	}
	plot := rect{
		x0: r.x0 + 12 + yLabelW + 6,
		y0: r.y0 + lineHeight*len(p.title) + 16 + lineHeight + 6,
		x1: r.x1 - 16,
		y1: r.y1 - 2*lineHeight - 18,
	}
	px := func(v float64) float64 { return float64(plot.x0) + p.x.pos(v)*float64(plot.x1-plot.x0) }
	py := func(v float64) float64 { return float64(plot.y1) - p.y.pos(v)*float64(plot.y1-plot.y0) }

	for _, t := range p.x.ticks {
		x := px(t.v)
		c.line([]xy{{x, float64(plot.y0)}, {x, float64(plot.y1)}}, light, 1, false)
		c.line([]xy{{x, float64(plot.y1)}, {x, float64(plot.y1 + 4)}}, black, 1, false)
		c.text(x, float64(plot.y1+6+lineHeight), t.label, center, black)
	}
	for _, t := range p.y.ticks {
		y := py(t.v)
		c.line([]xy{{float64(plot.x0), y}, {float64(plot.x1), y}}, light, 1, false)
		c.line([]xy{{float64(plot.x0 - 4), y}, {float64(plot.x0), y}}, black, 1, false)
		c.text(float64(plot.x0-6), y+4, t.label, right, black)
	}
	c.line([]xy{{float64(plot.x0), float64(plot.y0)}, {float64(plot.x0), float64(plot.y1)},
		{float64(plot.x1), float64(plot.y1)}}, black, 1, false)
	c.text(float64(plot.x0+plot.x1)/2, float64(plot.y1+10+2*lineHeight), p.x.label, center, black)
	c.text(float64(plot.x0-6-yLabelW), float64(plot.y0-8), p.y.label, left, black)

	for _, s := range p.series {
		pts := make([]xy, len(s.pts))
		for i, v := range s.pts {
			pts[i] = xy{px(v.x), py(v.y)}
		}
		c.line(pts, s.color, 2, s.dashed)
		if s.markers {
			for _, v := range pts {
				c.disc(v, 3.5, s.color)
			}
		}
	}
	if p.legend {
		x, y := float64(plot.x0+12), float64(plot.y0+12)
		// On a white box, so that the lines behind it do not cross it.
		w := 0
		for _, s := range p.series {
			w = max(w, textWidth(s.name))
		}
		c.fill(x-6, y-9, x+32+float64(w)+6, y+float64(len(p.series)*(lineHeight+4))-4, white)
		c.line([]xy{{x - 6, y - 9}, {x + 32 + float64(w) + 6, y - 9},
			{x + 32 + float64(w) + 6, y + float64(len(p.series)*(lineHeight+4)) - 4},
			{x - 6, y + float64(len(p.series)*(lineHeight+4)) - 4}, {x - 6, y - 9}}, light, 1, false)
		for _, s := range p.series {
			c.line([]xy{{x, y}, {x + 24, y}}, s.color, 2, s.dashed)
			if s.markers {
				c.disc(xy{x + 12, y}, 3.5, s.color)
			}
			c.text(x+32, y+4, s.name, left, black)
			y += lineHeight + 4
		}
	}
}

func maxOf(pts []xy, f func(xy) float64) float64 {
	m := math.Inf(-1)
	for _, v := range pts {
		m = max(m, f(v))
	}
	return m
}

// logRange is the range of f over pts, widened by a factor on each side
// for a logarithmic axis.
func logRange(pts []xy, f func(xy) float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range pts {
		lo, hi = min(lo, f(v)), max(hi, f(v))
	}
	return lo / 1.5, hi * 1.5
}

// linearTicks are round values across [lo, hi]: about five, a step of
// 1, 2 or 5 times a power of ten.
func linearTicks(lo, hi float64, label func(float64) string) []tick {
	if hi <= lo {
		return []tick{{lo, label(lo)}}
	}
	raw := (hi - lo) / 5
	step := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if step*m >= raw {
			step *= m
			break
		}
	}
	var ts []tick
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		ts = append(ts, tick{v, label(v)})
	}
	return ts
}

// logTicks are the powers of ten in [lo, hi], or lo and hi themselves if
// there are fewer than two.
func logTicks(lo, hi float64) []tick {
	var ts []tick
	for e := math.Ceil(math.Log10(lo)); e <= math.Floor(math.Log10(hi)); e++ {
		v := math.Pow(10, e)
		ts = append(ts, tick{v, strconv.FormatFloat(v, 'g', -1, 64)})
	}
	if len(ts) < 2 {
		ts = nil
		for _, v := range []float64{lo, hi} {
			ts = append(ts, tick{v, strconv.FormatFloat(v, 'g', 2, 64)})
		}
	}
	return ts
}
