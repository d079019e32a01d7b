package dashboard

import (
	"fmt"
	"html/template"
	"strconv"
	"time"

	"github.com/snappea/snappea"
)

var funcs = template.FuncMap{
	"ago": ago,
	"dur": dur,
	"window": func(d time.Duration) string {
		if d%time.Hour == 0 {
			return fmt.Sprintf("%dh", d/time.Hour)
		}
		return d.Round(time.Minute).String()
	},
	"secs":    func(s float64) string { return dur(time.Duration(s * float64(time.Second))) },
	"when":    when,
	"num":     num,
	"overdue": func(t time.Time) bool { return !t.IsZero() && time.Now().After(t) },
	"printf":  fmt.Sprintf,
	"q":       func(s string) template.URL { return template.URL(s) },
	"mib":     mib,
	"lost":    snappea.IsLost,
}

// mib is a size in bytes as MiB to one decimal; "—" when unknown (0).
func mib(n int64) string {
	if n <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// dur is a duration rounded for reading.
func dur(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + dur(-d)
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < 48*time.Hour:
		return d.Round(time.Second).String()
	}
	return fmt.Sprintf("%dd%s", d/(24*time.Hour), (d % (24 * time.Hour)).Round(time.Minute))
}

// ago is how long ago t was; "—" for the zero time.
func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return dur(time.Since(t)) + " ago"
}

// when is t in the server's time zone, to the second; "—" for zero.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// num writes n with thousands separators.
func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
