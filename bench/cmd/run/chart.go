package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// palette gives each server a fixed colour by its position in the results.
var palette = []string{"#4c4c4c", "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"}

// chart draws the headline comparison as SVG: for each throughput workload,
// in the results' order, one bar per server of its kind, its height the
// median relative to the kind's baseline (see baseline: gnet, gnet-http,
// gonet-tls or fasthttp-https), a whisker from the slowest to the fastest
// round, and the absolute median written above. The title names the
// baselines of the kinds drawn. Written by hand so the bench module needs no
// plotting library.
func chart(res *results) string {
	type group struct {
		w    workload
		srvs []serverInfo
	}
	var groups []group
	var kinds []string // of the groups, in their order
	for _, w := range res.Workloads {
		if w.Type == typeIdle {
			continue
		}
		if srvs := serversOf(res, w.kind()); len(srvs) > 0 {
			groups = append(groups, group{w, srvs})
			if !slices.Contains(kinds, w.kind()) {
				kinds = append(kinds, w.kind())
			}
		}
	}
	cs := cells(res)

	const (
		barW, barGap, groupGap = 26.0, 4.0, 36.0
		left, top, plotH       = 60.0, 70.0, 300.0
		bottom                 = 70.0
	)
	// Normalise each group by its baseline's median, or by its best median
	// when the baseline has no figure; find the axis range.
	norm := make([]float64, len(groups))
	note := make([]string, len(groups))
	maxR := 1.25
	for i, g := range groups {
		norm[i] = math.NaN()
		if c := cs[[2]string{g.w.Name, baseline(g.w.kind())}]; c != nil && len(c.ok) > 0 {
			norm[i] = c.stat(value).Median
		} else {
			best := 0.0
			for _, s := range g.srvs {
				if c := cs[[2]string{g.w.Name, s.Name}]; c != nil && len(c.ok) > 0 {
					best = math.Max(best, c.stat(value).Median)
				}
			}
			if best > 0 {
				norm[i], note[i] = best, "relative to the fastest"
			}
		}
		for _, s := range g.srvs {
			if c := cs[[2]string{g.w.Name, s.Name}]; c != nil && len(c.ok) > 0 && norm[i] > 0 {
				maxR = math.Max(maxR, c.stat(value).Max/norm[i])
			}
		}
	}
	maxR = math.Ceil(maxR*4) / 4

	width := left + 20
	for _, g := range groups {
		width += float64(len(g.srvs))*(barW+barGap) + groupGap
	}
	width = math.Max(width, 640)
	height := top + plotH + bottom
	y := func(r float64) float64 { return top + plotH - r/maxR*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14" font-weight="bold">Throughput%s (median of %d round(s); whiskers: min–max)</text>`+"\n",
		left, relativeTo(kinds), res.Meta.Rounds)
	fmt.Fprintf(&b, `<text x="%.0f" y="36" fill="#555">%s</text>`+"\n", left, html.EscapeString(machineLine(res.Meta)))

	// Axis and grid.
	for r := 0.0; r <= maxR+1e-9; r += 0.25 {
		stroke := "#e5e5e5"
		if math.Abs(r-1) < 1e-9 {
			stroke = "#888"
		}
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="%s"/>`+"\n", left, width-10, y(r), y(r), stroke)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%.2f×</text>`+"\n", left-6, y(r)+4, r)
	}

	// Legend: every server, in results order.
	legend(&b, res, slices.DeleteFunc(slices.Clone(res.Servers), func(s serverInfo) bool { return s.Kind == "" }), left, 46)

	x := left + 10
	for gi, g := range groups {
		gx := x
		for _, s := range g.srvs {
			colour := serverColour(res, s.Name)
			c := cs[[2]string{g.w.Name, s.Name}]
			cx := x + barW/2
			switch {
			case c == nil || len(c.ok) == 0 || !(norm[gi] > 0):
				label := "–"
				if s.BuildError != "" || (c != nil && len(c.failed) > 0) {
					label = "failed"
				}
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#b00" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
					cx, y(0)-6, cx, y(0)-6, label)
			default:
				v := c.stat(value)
				r := v.Median / norm[gi]
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s (%s–%s)</title></rect>`+"\n",
					x, y(r), barW, y(0)-y(r), colour, html.EscapeString(s.Name), g.w.Name, count(v.Median), count(v.Min), count(v.Max))
				lo, hi := v.Min/norm[gi], v.Max/norm[gi]
				fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black"/>`, cx, cx, y(lo), y(hi))
				fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black"/>`, cx-4, cx+4, y(lo), y(lo))
				fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black"/>`+"\n", cx-4, cx+4, y(hi), y(hi))
				ty := math.Min(y(hi), y(r)) - 4
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="start" font-size="9" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
					cx+3, ty, cx+3, ty, compact(v.Median))
			}
			x += barW + barGap
		}
		mid := (gx + x - barGap) / 2
		unit := "msg/s"
		if g.w.Type == typeHTTP {
			unit = "req/s"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" font-weight="bold">%s</text>`+"\n", mid, top+plotH+18, g.w.Name)
		sub := unit
		if note[gi] != "" {
			sub += ", " + note[gi]
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%s</text>`+"\n", mid, top+plotH+32, sub)
		x += groupGap
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// relativeTo names the baselines of the kinds drawn, for the chart's title:
// " relative to gnet, HTTP to gnet-http", the first kind's unlabelled.
func relativeTo(kinds []string) string {
	var parts []string
	for i, k := range kinds {
		if i == 0 {
			parts = append(parts, " relative to "+baseline(k))
		} else {
			parts = append(parts, kindLabel(k)+" to "+baseline(k))
		}
	}
	return strings.Join(parts, ", ")
}

// kindLabel is how a kind of workload is named in prose.
func kindLabel(kind string) string {
	switch kind {
	case kindHTTP:
		return "HTTP"
	case kindTLSEcho:
		return "TLS echo"
	case kindHTTPS:
		return "HTTPS"
	}
	return "echo"
}

// machineLine says where and when the run was made, for a chart's subtitle.
func machineLine(m meta) string {
	return fmt.Sprintf("nproc %d, kernel %s; server CPUs %s, client CPUs %s; %s",
		m.NProc, m.Kernel, orDash(m.ServerCPUs), orDash(m.ClientCPUs), m.Started.Format("2006-01-02"))
}

// legend writes a chart's legend in one row from (x, y): each server's
// colour, then its name.
func legend(b *strings.Builder, res *results, srvs []serverInfo, x, y float64) {
	for _, s := range srvs {
		fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n",
			x, y, serverColour(res, s.Name), x+14, y+9, html.EscapeString(s.Name))
		x += 14 + 7*float64(len(s.Name)) + 14
	}
}

func serverIndex(res *results, name string) int {
	for i, s := range res.Servers {
		if s.Name == name {
			return i
		}
	}
	return 0
}

// compact writes a rate briefly: 950, 131k, 2.20M.
func compact(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
