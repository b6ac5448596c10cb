package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// stat summarises one figure over the rounds that produced it.
type stat struct {
	Median, Min, Max float64
	N                int
}

func summarize(v []float64) stat {
	if len(v) == 0 {
		return stat{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{Median: m, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// baseline names the server every ratio of a kind is taken against.
func baseline(kind string) string {
	switch kind {
	case kindHTTP:
		return "gnet-http"
	case kindTLSEcho:
		return "gonet-tls" // Go's net with crypto/tls: what TLS is measured against
	case kindHTTPS:
		return "fasthttp-https"
	}
	return "gnet"
}

// cell gathers the records of one server on one workload.
type cell struct {
	ok     []record // runs that produced a figure
	failed []record
}

func (c cell) stat(f func(record) float64) stat {
	v := make([]float64, 0, len(c.ok))
	for _, r := range c.ok {
		v = append(v, f(r))
	}
	return summarize(v)
}

// latency summarises a latency column, leaving out unknown values (negative:
// wrk could not say) so that they neither pull the median down nor show as
// a latency of zero.
func (c cell) latency(f func(record) float64) stat {
	v := make([]float64, 0, len(c.ok))
	for _, r := range c.ok {
		if x := f(r); x >= 0 {
			v = append(v, x)
		}
	}
	return summarize(v)
}

func (c cell) clientErrors() int64 {
	var n int64
	for _, r := range c.ok {
		n += r.ClientErrors
	}
	return n
}

func cells(res *results) map[[2]string]*cell {
	m := map[[2]string]*cell{}
	for _, r := range res.Records {
		k := [2]string{r.Workload, r.Server}
		c := m[k]
		if c == nil {
			c = &cell{}
			m[k] = c
		}
		if r.Error != "" {
			c.failed = append(c.failed, r)
		} else {
			c.ok = append(c.ok, r)
		}
	}
	return m
}

// serversOf lists the servers of a kind in the results' order.
func serversOf(res *results, kind string) []serverInfo {
	var out []serverInfo
	for _, s := range res.Servers {
		if s.Kind == kind {
			out = append(out, s)
		}
	}
	return out
}

func value(r record) float64 { return r.Value }

// tables renders the markdown report: the run's conditions, a headline
// table, then one table per workload and the failures.
func tables(res *results) string {
	var b strings.Builder
	m := res.Meta
	cs := cells(res)
	fmt.Fprintf(&b, "# Benchmark results\n\n")
	fmt.Fprintf(&b, "- command: `%s`\n", m.Command)
	fmt.Fprintf(&b, "- started %s, finished %s; %d round(s), warm-up %s, measured %s per run\n",
		m.Started.Format("2006-01-02 15:04:05Z"), m.Finished.Format("15:04:05Z"), m.Rounds, m.Warmup, m.Duration)
	fmt.Fprintf(&b, "- machine: nproc %d, %s, kernel %s\n", m.NProc, m.CPU, m.Kernel)
	fmt.Fprintf(&b, "- %s; %s; %s\n", m.Go, m.GCC, orDash(m.Wrk))
	fmt.Fprintf(&b, "- server pinned to CPUs `%s`, client to `%s` (%d client thread(s)); servers run with -loops %d\n",
		orDash(m.ServerCPUs), orDash(m.ClientCPUs), m.ClientThread, m.Loops)
	fmt.Fprintf(&b, "- load average at start %s, at end %s\n", m.LoadAvgStart, m.LoadAvgEnd)
	if n := len(res.Replaced); n > 0 {
		fmt.Fprintf(&b, "- %d noisy run(s) (bg CPU above %.0f%%) were run again; they are kept in results.json under \"replaced\"\n",
			n, m.MaxBgPct)
	}
	b.WriteString("\n")
	b.WriteString("Figures are medians over the rounds; min–max is the run-to-run spread; " +
		"×gnet is the median divided by gnet's (gnet-http's for HTTP); for TLS, ×gonet-tls by Go net + crypto/tls's, " +
		"×fasthttp-https by fasthttp's over crypto/tls. " +
		"CPU columns are percent of one core over the measured window; bg is everything else the machine ran meanwhile " +
		"(other processes, interrupts, hypervisor steal): a high bg means a noisy run.\n\n")

	// Headline: one row per server, one column per workload.
	for _, kind := range []string{kindEcho, kindHTTP, kindTLSEcho, kindHTTPS} {
		var ws []workload
		for _, w := range res.Workloads {
			if w.kind() == kind {
				ws = append(ws, w)
			}
		}
		srvs := serversOf(res, kind)
		if len(ws) == 0 || len(srvs) == 0 {
			continue
		}
		switch kind {
		case kindEcho:
			b.WriteString("## Summary: echo (messages/s; idle: KiB per connection, lower is better)\n\n| server |")
		case kindHTTP:
			b.WriteString("## Summary: HTTP plaintext (requests/s)\n\n| server |")
		case kindTLSEcho:
			b.WriteString("## Summary: TLS echo (messages/s; idle: KiB per connection, lower is better)\n\n| server |")
		case kindHTTPS:
			b.WriteString("## Summary: HTTPS (requests/s)\n\n| server |")
		}
		for _, w := range ws {
			fmt.Fprintf(&b, " %s |", w.Name)
		}
		b.WriteString("\n|---|")
		b.WriteString(strings.Repeat("---:|", len(ws)))
		b.WriteString("\n")
		for _, s := range srvs {
			fmt.Fprintf(&b, "| %s |", s.Name)
			for _, w := range ws {
				b.WriteString(" " + headline(cs, w, s) + " |")
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}

	cpuSummary(&b, res, cs)

	for _, w := range res.Workloads {
		srvs := serversOf(res, w.kind())
		if len(srvs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n%s.\n\n", w.Name, w.Desc)
		base := cs[[2]string{w.Name, baseline(w.kind())}]
		var baseMed float64 = math.NaN()
		if base != nil {
			baseMed = base.stat(value).Median
		}
		bl := baseline(w.kind())
		switch w.Type {
		case typeEcho:
			b.WriteString("| server | msg/s | min–max | ×" + bl + " | MiB/s | p50 µs | p99 µs | p99.9 µs | server µs/msg | server CPU | client CPU | bg CPU | runs |\n")
			b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		case typeIdle:
			b.WriteString("| server | KiB/conn | min–max | ×" + bl + " | RSS before KiB | RSS after KiB | runs |\n")
			b.WriteString("|---|---:|---:|---:|---:|---:|---|\n")
		case typeHTTP:
			b.WriteString("| server | req/s | min–max | ×" + bl + " | p50 µs | p99 µs | p99.9 µs | server µs/req | server CPU | client CPU | bg CPU | runs |\n")
			b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		}
		for _, s := range srvs {
			c := cs[[2]string{w.Name, s.Name}]
			if c == nil {
				c = &cell{}
			}
			runs := fmt.Sprintf("%d/%d", len(c.ok), len(c.ok)+len(c.failed))
			if s.BuildError != "" {
				runs = "build failed"
			}
			if n := c.clientErrors(); n > 0 {
				runs += fmt.Sprintf(", %d client errors", n)
			}
			if len(c.ok) == 0 {
				cols := 11
				if w.Type == typeIdle {
					cols = 5
				} else if w.Type == typeHTTP {
					cols = 10
				}
				fmt.Fprintf(&b, "| %s |%s %s |\n", s.Name, strings.Repeat(" – |", cols), runs)
				continue
			}
			v := c.stat(value)
			spread := fmt.Sprintf("%s–%s", num(w, v.Min), num(w, v.Max))
			ratio := ratioStr(v.Median, baseMed)
			pct := func(f func(record) float64) string { return fmt.Sprintf("%.0f%%", c.stat(f).Median) }
			switch w.Type {
			case typeEcho:
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
					s.Name, num(w, v.Median), spread, ratio,
					fixed(c.stat(func(r record) float64 { return r.MiBps }).Median),
					fixed(c.latency(func(r record) float64 { return r.P50 }).Median),
					fixed(c.latency(func(r record) float64 { return r.P99 }).Median),
					fixed(c.latency(func(r record) float64 { return r.P999 }).Median),
					fmt.Sprintf("%.2f", c.stat(usPerOp).Median),
					pct(func(r record) float64 { return r.ServerCPUPct }),
					pct(func(r record) float64 { return r.ClientCPUPct }),
					pct(func(r record) float64 { return r.BgCPUPct }),
					runs)
			case typeIdle:
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %.0f | %.0f | %s |\n",
					s.Name, num(w, v.Median), spread, ratio,
					c.stat(func(r record) float64 { return float64(r.RSSBeforeKiB) }).Median,
					c.stat(func(r record) float64 { return float64(r.RSSAfterKiB) }).Median,
					runs)
			case typeHTTP:
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
					s.Name, num(w, v.Median), spread, ratio,
					fixed(c.latency(func(r record) float64 { return r.P50 }).Median),
					fixed(c.latency(func(r record) float64 { return r.P99 }).Median),
					fixed(c.latency(func(r record) float64 { return r.P999 }).Median),
					fmt.Sprintf("%.2f", c.stat(usPerOp).Median),
					pct(func(r record) float64 { return r.ServerCPUPct }),
					pct(func(r record) float64 { return r.ClientCPUPct }),
					pct(func(r record) float64 { return r.BgCPUPct }),
					runs)
			}
		}
		b.WriteString("\n")
	}

	var fails []string
	for _, s := range res.Servers {
		if s.BuildError != "" {
			fails = append(fails, fmt.Sprintf("- %s does not build:\n\n```\n%s\n```", s.Name, s.BuildError))
		}
	}
	for _, r := range res.Records {
		if r.Error != "" && r.Error != "build failed" {
			fails = append(fails, fmt.Sprintf("- round %d, %s, %s: %s", r.Round, r.Workload, r.Server,
				strings.ReplaceAll(strings.TrimSpace(r.Error), "\n", " ")))
		}
	}
	if len(fails) > 0 {
		b.WriteString("## Failures\n\n" + strings.Join(fails, "\n") + "\n")
	}
	return b.String()
}

func usPerOp(r record) float64 { return r.ServerUsPerOp }

// cpuSummary writes the echo servers' CPU time per message on every plain
// echo workload (the TLS ones have servers of their own and no C server),
// each with its ratio to the C server's: with client and server
// on one core each, throughput is often a joint limit of the two, while
// this is the server's own cost (see README.md, Reading the tables).
func cpuSummary(b *strings.Builder, res *results, cs map[[2]string]*cell) {
	var ws []workload
	for _, w := range res.Workloads {
		if w.Type == typeEcho && !w.TLS {
			ws = append(ws, w)
		}
	}
	srvs := serversOf(res, kindEcho)
	if len(ws) == 0 || len(srvs) == 0 {
		return
	}
	b.WriteString("## Summary: echo server CPU per message (µs, lower is better; ÷ " + cServer + " in brackets)\n\n| server |")
	for _, w := range ws {
		fmt.Fprintf(b, " %s |", w.Name)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(ws)) + "\n")
	for _, s := range srvs {
		fmt.Fprintf(b, "| %s |", s.Name)
		for _, w := range ws {
			c := cs[[2]string{w.Name, s.Name}]
			if c == nil || len(c.ok) == 0 {
				b.WriteString(" – |")
				continue
			}
			med := c.stat(usPerOp).Median
			out := fmt.Sprintf("%.2f", med)
			if base := cs[[2]string{w.Name, cServer}]; base != nil && len(base.ok) > 0 {
				out += " (" + ratioStr(med, base.stat(usPerOp).Median) + ")"
			}
			b.WriteString(" " + out + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// headline is one summary cell: the median and its ratio to the baseline.
func headline(cs map[[2]string]*cell, w workload, s serverInfo) string {
	if s.BuildError != "" {
		return "build failed"
	}
	c := cs[[2]string{w.Name, s.Name}]
	if c == nil || len(c.ok) == 0 {
		if c != nil && len(c.failed) > 0 {
			return "failed"
		}
		return "–"
	}
	med := c.stat(value).Median
	out := num(w, med)
	if base := cs[[2]string{w.Name, baseline(w.kind())}]; base != nil && len(base.ok) > 0 {
		out += " (" + ratioStr(med, base.stat(value).Median) + ")"
	}
	if c.clientErrors() > 0 {
		out += " ⚠"
	}
	return out
}

func ratioStr(v, base float64) string {
	if math.IsNaN(base) || base == 0 || math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v/base)
}

// num formats a workload's headline figure.
func num(w workload, v float64) string {
	if w.Type == typeIdle {
		return fmt.Sprintf("%.2f", v)
	}
	return count(v)
}

// count formats a rate with thousands separators: 1,234,567.
func count(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// fixed formats a latency or bandwidth with sensible precision; a negative
// value means unknown.
func fixed(v float64) string {
	switch {
	case math.IsNaN(v) || v < 0:
		return "–"
	case v >= 100:
		return count(v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}
