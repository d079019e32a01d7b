package chart

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// canvas is what a panel draws on, in pixels with y downwards: a raster
// for PNG, or an SVG document.
type canvas interface {
	// line strokes the polyline through pts.
	line(pts []xy, c color.RGBA, width float64, dashed bool)
	disc(center xy, r float64, c color.RGBA)
	// fill paints the rectangle from (x0, y0) to (x1, y1).
	fill(x0, y0, x1, y1 float64, c color.RGBA)
	// text writes s with its baseline at y, anchored at x.
	text(x, y float64, s string, a anchor, c color.RGBA)
	encode(w io.Writer) error
}

type anchor int

const (
	left anchor = iota
	center
	right
)

// The text metrics of basicfont's 7x13 face, which the SVG's monospace
// text approximates.
const (
	charWidth  = 7
	lineHeight = 13
	svgFont    = `font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="11.5"`
)

// A dash is dashOn pixels drawn, then dashOff skipped.
const dashOn, dashOff = 6, 4

func textWidth(s string) int { return charWidth * len([]rune(s)) }

func anchorX(x float64, s string, a anchor) float64 {
	switch a {
	case center:
		return x - float64(textWidth(s))/2
	case right:
		return x - float64(textWidth(s))
	}
	return x
}

// raster draws anti-aliased lines and discs and bitmap text on an RGBA
// image with a white background.
type raster struct{ img *image.RGBA }

func newRaster(w, h int) *raster {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	return &raster{img: img}
}

// blend paints c over pixel (x, y) with coverage a in [0, 1].
func (r *raster) blend(x, y int, c color.RGBA, a float64) {
	if !(image.Point{x, y}.In(r.img.Rect)) || a <= 0 {
		return
	}
	a = min(a, 1)
	i := r.img.PixOffset(x, y)
	p := r.img.Pix[i : i+3 : i+3]
	for k, v := range []uint8{c.R, c.G, c.B} {
		p[k] = uint8(math.Round(float64(p[k])*(1-a) + float64(v)*a))
	}
}

func (r *raster) line(pts []xy, c color.RGBA, width float64, dashed bool) {
	half := width / 2
	// Each pixel near the line takes the coverage of the nearest segment,
	// so that joints are not painted twice.
	cover := map[image.Point]float64{}
	dist := 0.0 // along the polyline, for the dashes
	for i := 1; i < len(pts); i++ {
		a, b := pts[i-1], pts[i]
		dx, dy := b.x-a.x, b.y-a.y
		l2 := dx*dx + dy*dy
		x0, x1 := int(math.Floor(min(a.x, b.x)-half-1)), int(math.Ceil(max(a.x, b.x)+half+1))
		y0, y1 := int(math.Floor(min(a.y, b.y)-half-1)), int(math.Ceil(max(a.y, b.y)+half+1))
		for y := y0; y <= y1; y++ {
			for x := x0; x <= x1; x++ {
				px, py := float64(x)+0.5, float64(y)+0.5
				t := 0.0
				if l2 > 0 {
					t = min(max(((px-a.x)*dx+(py-a.y)*dy)/l2, 0), 1)
				}
				if dashed && math.Mod(dist+t*math.Sqrt(l2), dashOn+dashOff) > dashOn {
					continue
				}
				d := math.Hypot(px-(a.x+t*dx), py-(a.y+t*dy))
				if cv := half + 0.5 - d; cv > cover[image.Point{x, y}] {
					cover[image.Point{x, y}] = cv
				}
			}
		}
		dist += math.Sqrt(l2)
	}
	for p, cv := range cover {
		r.blend(p.X, p.Y, c, cv)
	}
}

func (r *raster) disc(o xy, rad float64, c color.RGBA) {
	for y := int(o.y - rad - 1); y <= int(o.y+rad+1); y++ {
		for x := int(o.x - rad - 1); x <= int(o.x+rad+1); x++ {
			d := math.Hypot(float64(x)+0.5-o.x, float64(y)+0.5-o.y)
			r.blend(x, y, c, rad+0.5-d)
		}
	}
}

func (r *raster) fill(x0, y0, x1, y1 float64, c color.RGBA) {
	for y := int(math.Round(y0)); y < int(math.Round(y1)); y++ {
		for x := int(math.Round(x0)); x < int(math.Round(x1)); x++ {
			r.blend(x, y, c, 1)
		}
	}
}

func (r *raster) text(x, y float64, s string, a anchor, c color.RGBA) {
	d := font.Drawer{Dst: r.img, Src: image.NewUniform(c), Face: basicfont.Face7x13,
		Dot: fixed.P(int(math.Round(anchorX(x, s, a))), int(math.Round(y)))}
	d.DrawString(s)
}

func (r *raster) encode(w io.Writer) error { return png.Encode(w, r.img) }

// svg collects the elements of an SVG document.
type svg struct {
	w, h int
	body strings.Builder
}

func newSVG(w, h int) *svg { return &svg{w: w, h: h} }

func hex(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

func (s *svg) line(pts []xy, c color.RGBA, width float64, dashed bool) {
	var ps []string
	for _, p := range pts {
		ps = append(ps, fmt.Sprintf("%.1f,%.1f", p.x, p.y))
	}
	dash := ""
	if dashed {
		dash = fmt.Sprintf(` stroke-dasharray="%d %d"`, dashOn, dashOff)
	}
	fmt.Fprintf(&s.body, `<polyline points="%s" fill="none" stroke="%s" stroke-width="%g" stroke-linejoin="round"%s/>`+"\n",
		strings.Join(ps, " "), hex(c), width, dash)
}

func (s *svg) disc(o xy, r float64, c color.RGBA) {
	fmt.Fprintf(&s.body, `<circle cx="%.1f" cy="%.1f" r="%g" fill="%s"/>`+"\n", o.x, o.y, r, hex(c))
}

func (s *svg) fill(x0, y0, x1, y1 float64, c color.RGBA) {
	fmt.Fprintf(&s.body, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x0, y0, x1-x0, y1-y0, hex(c))
}

func (s *svg) text(x, y float64, str string, a anchor, c color.RGBA) {
	ta := map[anchor]string{left: "start", center: "middle", right: "end"}[a]
	fmt.Fprintf(&s.body, `<text x="%.1f" y="%.1f" text-anchor="%s" fill="%s">`, x, y, ta, hex(c))
	xml.EscapeText(&s.body, []byte(str))
	s.body.WriteString("</text>\n")
}

func (s *svg) encode(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>`+"\n"+
		`<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n", s.w, s.h, s.w, s.h, svgFont)
	bw.WriteString(s.body.String())
	bw.WriteString("</svg>\n")
	return bw.Flush()
}
