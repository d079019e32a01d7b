package chart

import (
	"encoding/xml"
	"errors"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snappea/snappea/bench"
)

func sample() *bench.Result {
	res := &bench.Result{Tasks: 20000, Workers: 16, Runs: 3, CPUs: 2, GoVersion: "go1.26", SweepP99MS: 10}
	for i, w := range []int{1, 2, 4, 8, 16, 32} {
		res.BurnDownByWorkers = append(res.BurnDownByWorkers, bench.WorkerPoint{Workers: w, PerS: float64(12000 + 9000*i)})
	}
	for i, r := range []float64{500, 1000, 2000, 4000, 8000, 16000} {
		f := float64(i + 1)
		res.LatencySweep = append(res.LatencySweep, bench.RatePoint{RatePerS: r,
			LatencyMS: bench.Percentiles{P50: 0.3 * f, P95: 0.9 * f, P99: 2 * f * f}})
	}
	return res
}

func TestWrite(t *testing.T) {
	for name, res := range map[string]*bench.Result{
		"full":         sample(),
		"not measured": {Tasks: 100, Runs: 1},
		"one point":    {Tasks: 100, Runs: 1, Workers: 16, BurnDownPerS: 5000},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			pngPath := filepath.Join(dir, "bench.png")
			if err := Write(res, pngPath); err != nil {
				t.Fatalf("Write(%s): %v", pngPath, err)
			}
			f, err := os.Open(pngPath)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatalf("decode %s: %v", pngPath, err)
			}
			if b := img.Bounds(); b.Dx() != width || b.Dy() != height {
				t.Errorf("PNG is %dx%d, want %dx%d", b.Dx(), b.Dy(), width, height)
			}

			svgPath := filepath.Join(dir, "bench.SVG")
			if err := Write(res, svgPath); err != nil {
				t.Fatalf("Write(%s): %v", svgPath, err)
			}
			b, err := os.ReadFile(svgPath)
			if err != nil {
				t.Fatal(err)
			}
			dec := xml.NewDecoder(strings.NewReader(string(b)))
			var texts []string
			for {
				tok, err := dec.Token()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("%s is not well-formed XML: %v", svgPath, err)
				}
				if cd, ok := tok.(xml.CharData); ok && strings.TrimSpace(string(cd)) != "" {
					texts = append(texts, string(cd))
				}
			}
			all := strings.Join(texts, "|")
			for _, want := range []string{"Burn-down of " + bench.Thousands(float64(res.Tasks)) + " no-ops", "Pickup latency across processes"} {
				if !strings.Contains(all, want) {
					t.Errorf("SVG text %q lacks %q", all, want)
				}
			}
		})
	}
}

func TestWrite_BadExtension(t *testing.T) {
	err := Write(sample(), filepath.Join(t.TempDir(), "bench.jpg"))
	if err == nil || !strings.Contains(err.Error(), "want a .png or .svg") {
		t.Errorf("Write(bench.jpg) = %v, want an error asking for .png or .svg", err)
	}
}

func TestLinearTicks(t *testing.T) {
	ts := linearTicks(0, 70000, bench.Thousands)
	var got []string
	for _, tk := range ts {
		got = append(got, tk.label)
	}
	if want := "0 20,000 40,000 60,000"; strings.Join(got, " ") != want {
		t.Errorf("linearTicks(0, 70000) = %q, want %q", strings.Join(got, " "), want)
	}
}

func TestLogTicks(t *testing.T) {
	var got []string
	for _, tk := range logTicks(0.2, 120) {
		got = append(got, tk.label)
	}
	if want := "1 10 100"; strings.Join(got, " ") != want {
		t.Errorf("logTicks(0.2, 120) = %q, want %q", strings.Join(got, " "), want)
	}
}
