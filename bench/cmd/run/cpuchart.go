package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// cpuChartFile is where writeReport puts the chart cpuChart draws.
const cpuChartFile = "cpu-per-msg.svg"

// cpuSeries picks the workloads the CPU chart draws: the plain (not TLS)
// echo workloads of 64 B messages with one in flight per connection, which
// differ only in their connection count (echo-64B-d1, -c1000, -c10k,
// -c19k), in order of that count. With one message in flight every event carries one message, so
// the server's CPU per message shows what each connection costs as there
// come to be more of them.
func cpuSeries(res *results) []workload {
	var ws []workload
	for _, w := range res.Workloads {
		if w.Type == typeEcho && !w.TLS && w.Size == 64 && w.Depth == 1 {
			ws = append(ws, w)
		}
	}
	slices.SortStableFunc(ws, func(a, b workload) int { return a.Conns - b.Conns })
	return ws
}

// cpuChart draws the server CPU per message against the connection count as
// an SVG line chart: one line per echo server through the medians, a
// whisker from the lowest to the highest round at each point, connection
// counts evenly spaced (they are categories, 100 to 19 000, not a scale). It
// reports false when the run has fewer than two such workloads, or no
// figure for them. Written by hand, like chart.
func cpuChart(res *results) (string, bool) {
	ws := cpuSeries(res)
	srvs := serversOf(res, kindEcho)
	cs := cells(res)
	maxV := 0.0
	for _, w := range ws {
		for _, s := range srvs {
			if c := cs[[2]string{w.Name, s.Name}]; c != nil && len(c.ok) > 0 {
				maxV = math.Max(maxV, c.stat(usPerOp).Max)
			}
		}
	}
	if len(ws) < 2 || maxV <= 0 {
		return "", false
	}

	const (
		left, top, plotW, plotH = 60.0, 80.0, 520.0, 300.0
		right, bottom           = 20.0, 60.0
	)
	step := niceStep(maxV / 6)
	maxY := math.Ceil(maxV*1.05/step) * step
	width, height := left+plotW+right, top+plotH+bottom
	x := func(i int) float64 { return left + 40 + float64(i)*(plotW-80)/float64(len(ws)-1) }
	y := func(v float64) float64 { return top + plotH - v/maxY*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n",
		width, height, width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14" font-weight="bold">Server CPU per message, µs (lower is better): echo 64 B, 1 in flight per connection</text>`+"\n", left)
	fmt.Fprintf(&b, `<text x="%.0f" y="36" fill="#555">%s</text>`+"\n", left,
		html.EscapeString(fmt.Sprintf("median of %d round(s), whiskers min–max; %s", res.Meta.Rounds, machineLine(res.Meta))))

	// Grid, y labels, x labels.
	for v := 0.0; v <= maxY+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", left, left+plotW, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, trimFloat(v))
	}
	for i, w := range ws {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x(i), top+plotH+18, spaced(w.Conns))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">connections</text>`+"\n", left+plotW/2, top+plotH+36)

	// Legend, then one line per server that has a figure.
	legend(&b, res, srvs, left, 50)
	for _, s := range srvs {
		colour := serverColour(res, s.Name)
		var pts []string
		for i, w := range ws {
			c := cs[[2]string{w.Name, s.Name}]
			if c == nil || len(c.ok) == 0 {
				continue // a gap: the line joins the points it has
			}
			v := c.stat(usPerOp)
			px, py := x(i), y(v.Median)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>`+"\n",
				px, px, y(v.Min), y(v.Max), colour)
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s, %s: %.2f µs/msg (%.2f–%.2f)</title></circle>`+"\n",
				px, py, colour, html.EscapeString(s.Name), w.Name, v.Median, v.Min, v.Max)
		}
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), colour)
		}
	}
	b.WriteString("</svg>\n")
	return b.String(), true
}

// serverColour is a server's colour in both charts: by its place in the
// results.
func serverColour(res *results, name string) string {
	return palette[serverIndex(res, name)%len(palette)]
}

// niceStep rounds a raw axis step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// trimFloat writes an axis value without trailing zeros: 2, 2.5, 0.25.
func trimFloat(v float64) string {
	s := strings.TrimRight(fmt.Sprintf("%.3f", v), "0")
	return strings.TrimSuffix(s, ".")
}

// spaced writes a count with a space between thousands: 19 000.
func spaced(n int) string {
	return strings.ReplaceAll(count(float64(n)), ",", " ")
}
