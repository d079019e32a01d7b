package dashboard

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/snappea/snappea"
)

// point is one minute of a chart.
type point struct {
	Minute time.Time
	N      int64
}

// perMinute is the finished and the failed tasks of each minute of the
// window ending at now, every minute present, oldest first.
func perMinute(rows []snappea.StatsRow, now time.Time, window time.Duration) (finished, failed []point) {
	end := now.Truncate(time.Minute)
	n := int(window / time.Minute)
	start := end.Add(-time.Duration(n-1) * time.Minute)
	finished, failed = make([]point, n), make([]point, n)
	for i := range n {
		m := start.Add(time.Duration(i) * time.Minute)
		finished[i].Minute, failed[i].Minute = m, m
	}
	for _, r := range rows {
		i := int(r.Minute.Sub(start) / time.Minute)
		if i < 0 || i >= n {
			continue
		}
		finished[i].N += r.Count
		failed[i].N += r.Failures
	}
	return finished, failed
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 720, 120
	chartTop       = 16 // above the bars, for the scale
	chartPad       = 20 // below, for the time labels
)

// chartSVG draws points as an inline SVG bar chart. Everything written is
// a number, a time or title, the latter escaped.
func chartSVG(title string, ps []point, class string) template.HTML {
	var top int64 = 1
	var total int64
	for _, p := range ps {
		top = max(top, p.N)
		total += p.N
	}
	var b strings.Builder
	esc := template.HTMLEscapeString
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 -%d %d %d" role="img" aria-label="%s">`, chartTop, chartW, chartTop+chartH+chartPad, esc(title))
	fmt.Fprintf(&b, `<title>%s: %d in %d minutes, at most %d in one</title>`, esc(title), total, len(ps), top)
	fmt.Fprintf(&b, `<line class="axis" x1="0" y1="%d" x2="%d" y2="%d"/>`, chartH, chartW, chartH)
	if len(ps) > 0 {
		w := float64(chartW) / float64(len(ps))
		for i, p := range ps {
			if p.N == 0 {
				continue
			}
			h := float64(p.N) / float64(top) * float64(chartH-4)
			fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %d</title></rect>`,
				esc(class), float64(i)*w, float64(chartH)-h, max(w-1, 0.5), h, p.Minute.Format("15:04"), p.N)
		}
		for _, i := range []int{0, len(ps) / 2, len(ps) - 1} {
			anchor := "middle"
			switch i {
			case 0:
				anchor = "start"
			case len(ps) - 1:
				anchor = "end"
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="%s">%s</text>`, float64(i)*w+w/2, chartH+15, anchor, ps[i].Minute.Format("15:04"))
		}
	}
	fmt.Fprintf(&b, `<text class="top" x="2" y="-4">%d/min</text></svg>`, top)
	return template.HTML(b.String())
}
