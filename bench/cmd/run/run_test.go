package main

import (
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor/bench/internal/proc"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		in   []float64
		want stat
	}{
		{[]float64{3}, stat{Median: 3, Min: 3, Max: 3, N: 1}},
		{[]float64{5, 1, 3}, stat{Median: 3, Min: 1, Max: 5, N: 3}},
		{[]float64{4, 1, 3, 2}, stat{Median: 2.5, Min: 1, Max: 4, N: 4}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, summarize(tt.in), "%v", tt.in)
	}
	empty := summarize(nil)
	assert.True(t, math.IsNaN(empty.Median))
	assert.Zero(t, empty.N)
}

func TestFormatting(t *testing.T) {
	tests := []struct{ got, want string }{
		{count(0), "0"},
		{count(999.6), "1,000"},
		{count(1234567), "1,234,567"},
		{count(math.NaN()), "–"},
		{fixed(3.14159), "3.14"},
		{fixed(31.4159), "31.4"},
		{fixed(3141.59), "3,142"},
		{fixed(-1), "–"},
		{compact(950), "950"},
		{compact(131529), "132k"},
		{compact(2196965), "2.20M"},
		{ratioStr(1, 0), "–"},
		{ratioStr(3, 2), "1.50"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.got)
	}
}

func TestCPUCount(t *testing.T) {
	tests := []struct {
		list string
		want int
	}{
		{"0", 1}, {"1", 1}, {"0,2", 2}, {"2-3", 2}, {"0,2-5", 5},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, cpuCount(tt.list), tt.list)
	}
}

func TestLastJSONLine(t *testing.T) {
	out := "Running 2s test\n{\"a\":1}\nnoise {\n{\"b\":2}\n{broken\n"
	assert.JSONEq(t, `{"b":2}`, string(proc.LastJSONLine([]byte(out))))
	assert.Nil(t, proc.LastJSONLine([]byte("no json here\n")))
}

func TestSelectWorkloads(t *testing.T) {
	ws, err := selectWorkloads("http, echo-64B-d1,http")
	require.NoError(t, err)
	require.Len(t, ws, 2)
	assert.Equal(t, "echo-64B-d1", ws[0].Name, "canonical order is kept")
	assert.Equal(t, "http", ws[1].Name)
	_, err = selectWorkloads("nope")
	assert.Error(t, err)
}

func TestQuickWorkloads(t *testing.T) {
	ws, err := selectWorkloads(strings.Join(quickWorkloads, ","))
	require.NoError(t, err)
	assert.Len(t, ws, len(quickWorkloads))
	// bench/README.md says the same under -quick.
	assert.Equal(t, "echo-64B-c1000, echo-64B-c19k, idle-19k, tls-echo-64B-d1, tls-echo-4KiB-d1, tls-idle-5k, https-pipe16",
		quickLeavesOut())
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"zeta", "gnet", "reactor", "reactor-http", "nethttp", "empty"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "servers", d), 0o755))
		if d != "empty" {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "servers", d, "main.go"), []byte("package main\n"), 0o644))
		}
	}
	got, err := discover(dir)
	require.NoError(t, err)
	var names, kinds []string
	for _, s := range got {
		names = append(names, s.Name)
		kinds = append(kinds, s.Kind)
	}
	assert.Equal(t, []string{cServer, "gnet", "reactor", "reactor-http", "nethttp", "zeta"}, names)
	assert.Equal(t, []string{kindEcho, kindEcho, kindEcho, kindHTTP, kindHTTP, kindEcho}, kinds)
}

func TestOrder(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{cServer, "0"}, {"gnet", "1"}, {"gnet-http", "1"}, {"gonet-tls", "1"}, {"fasthttp-https", "1"},
		{"reactor", "2"}, {"reactor-http", "2"}, {"reactor-tls", "2"}, {"reactor-https", "2"},
		{"gonet", "3gonet"}, {"fasthttp", "3fasthttp"}, {"nbio-tls", "3nbio-tls"}, {"reactor-base", "3reactor-base"},
	} {
		assert.Equal(t, tt.want, order(tt.name), tt.name)
	}
}

// workloadNamed returns the workload of that name from allWorkloads.
func workloadNamed(name string) workload {
	for _, w := range allWorkloads {
		if w.Name == name {
			return w
		}
	}
	panic("no workload " + name) // a typo in a test
}

// sample builds results with a baseline, a second server with one failed
// round, a server that did not build, and an HTTP server.
func sample() *results {
	res := &results{
		Meta:      meta{Rounds: 2, Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		Workloads: []workload{workloadNamed("echo-64B-d1"), workloadNamed("idle-10k"), workloadNamed("http")},
		Servers: []serverInfo{
			{Name: "gnet", Kind: kindEcho},
			{Name: "other", Kind: kindEcho},
			{Name: "reactor", Kind: kindEcho, BuildError: "syntax error"},
			{Name: "gnet-http", Kind: kindHTTP},
		},
	}
	add := func(round int, w, s string, v float64, errText string) {
		res.Records = append(res.Records, record{Round: round, Workload: w, Server: s, Value: v, Error: errText})
	}
	for round := 1; round <= 2; round++ {
		add(round, "echo-64B-d1", "gnet", 100*float64(round), "")
		add(round, "idle-10k", "gnet", 1, "")
		add(round, "http", "gnet-http", 1000, "")
		add(round, "echo-64B-d1", "reactor", 0, "build failed")
	}
	add(1, "echo-64B-d1", "other", 300, "")
	add(2, "echo-64B-d1", "other", 0, "server exited during the run")
	return res
}

func TestTables(t *testing.T) {
	md := tables(sample())
	assert.Contains(t, md, "| gnet | 150 (1.00) |", "median of 100 and 200, its own baseline")
	assert.Contains(t, md, "| other | 300 (2.00) |")
	assert.Contains(t, md, "| reactor | build failed |")
	assert.Contains(t, md, "| other | 300 | 300–300 | 2.00 |")
	assert.Contains(t, md, "1/2", "a failed round is counted")
	assert.Contains(t, md, "- reactor does not build:")
	assert.Contains(t, md, "round 2, echo-64B-d1, other: server exited during the run")
	assert.NotContains(t, md, "noisy run(s)")

	res := sample()
	res.Meta.MaxBgPct = 50
	res.Replaced = []record{{Round: 1, Workload: "echo-64B-d1", Server: "gnet", Value: 1e9, BgCPUPct: 150}}
	md = tables(res)
	assert.Contains(t, md, "1 noisy run(s) (bg CPU above 50%) were run again")
	assert.NotContains(t, md, "1,000,000,000", "a replaced run is not in the figures")
}

// svgElements parses svg as XML, failing the test if it is not well
// formed, and counts its elements by name.
func svgElements(t *testing.T, svg string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return counts
		}
		require.NoError(t, err)
		if e, ok := tok.(xml.StartElement); ok {
			counts[e.Name.Local]++
		}
	}
}

func TestChartIsWellFormedSVG(t *testing.T) {
	svg := chart(sample())
	elements := 0
	for _, n := range svgElements(t, svg) {
		elements += n
	}
	assert.Greater(t, elements, 10)
	assert.Contains(t, svg, "echo-64B-d1")
	assert.Contains(t, svg, "failed", "the server that did not build is marked")
	assert.NotContains(t, svg, "idle-10k", "idle is not a throughput workload")
	assert.Contains(t, svg, ">Throughput relative to gnet, HTTP to gnet-http (median of 2 round(s)")

	// The title names the baselines of the kinds drawn, and only those.
	res := &results{
		Meta:      meta{Rounds: 1},
		Workloads: []workload{workloadNamed("tls-echo-64B-d1"), workloadNamed("https-pipe16")},
		Servers: []serverInfo{{Name: "gnet", Kind: kindEcho}, {Name: "gonet-tls", Kind: kindTLSEcho},
			{Name: "fasthttp-https", Kind: kindHTTPS}},
	}
	svg = chart(res)
	svgElements(t, svg)
	assert.Contains(t, svg, ">Throughput relative to gonet-tls, HTTPS to fasthttp-https (median of 1 round(s)")
	assert.Equal(t, "", relativeTo(nil))
}

func TestSelectServers(t *testing.T) {
	all := []server{{Name: cServer}, {Name: "gnet"}, {Name: "nbio"}}
	got, err := selectServers(all, "nbio, c-epoll")
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, cServer, got[0].Name, "discovery order is kept")
	assert.Equal(t, "nbio", got[1].Name)
	_, err = selectServers(all, "missing")
	assert.Error(t, err)
	got, err = selectServers(all, "")
	require.NoError(t, err)
	assert.Len(t, got, 3)
}

func TestUnknownLatencyIsLeftOut(t *testing.T) {
	c := cell{ok: []record{{P99: 100}, {P99: -1}, {P99: 300}}}
	assert.Equal(t, 200.0, c.latency(func(r record) float64 { return r.P99 }).Median)
	c = cell{ok: []record{{P99: -1}}}
	assert.Equal(t, "–", fixed(c.latency(func(r record) float64 { return r.P99 }).Median))
}

func TestManyConnectionWorkloads(t *testing.T) {
	for _, tt := range []struct {
		name  string
		conns int
	}{
		{"echo-64B-d1", 100}, {"echo-64B-c1000", 1000}, {"echo-64B-c10k", 10000}, {"echo-64B-c19k", 19000},
	} {
		w := workloadNamed(tt.name)
		assert.Equal(t, typeEcho, w.Type, tt.name)
		assert.Equal(t, tt.conns, w.Conns, tt.name)
		assert.Equal(t, 64, w.Size, tt.name)
		assert.Equal(t, 1, w.Depth, tt.name)
		// Server and client each hold one descriptor per connection and
		// must stay under the 20 000 the benchmark machine allows.
		assert.Less(t, w.Conns+16, 20000, tt.name)
	}
	series := cpuSeries(&results{Workloads: allWorkloads})
	var names []string
	for _, w := range series {
		names = append(names, w.Name)
	}
	assert.Equal(t, []string{"echo-64B-d1", "echo-64B-c1000", "echo-64B-c10k", "echo-64B-c19k"}, names)
}

// cpuSample builds results for the CPU chart and summary: the C server and
// gnet on three connection counts, reactor missing the middle one.
func cpuSample() *results {
	res := &results{
		Meta: meta{Rounds: 2},
		Workloads: []workload{workloadNamed("echo-64B-d1"), workloadNamed("echo-64B-c10k"),
			workloadNamed("echo-64B-c19k"), workloadNamed("idle-10k"), workloadNamed("tls-echo-64B-d1")},
		Servers: []serverInfo{{Name: cServer, Kind: kindEcho}, {Name: "gnet", Kind: kindEcho}, {Name: "reactor", Kind: kindEcho}},
	}
	add := func(w, s string, us ...float64) {
		for i, u := range us {
			res.Records = append(res.Records, record{Round: i + 1, Workload: w, Server: s, Value: 1000, ServerUsPerOp: u})
		}
	}
	add("echo-64B-d1", cServer, 3, 4)
	add("echo-64B-c10k", cServer, 4, 6)
	add("echo-64B-c19k", cServer, 5, 5)
	add("echo-64B-d1", "gnet", 4, 4)
	add("echo-64B-c10k", "gnet", 8, 8)
	add("echo-64B-c19k", "gnet", 9, 11)
	add("echo-64B-d1", "reactor", 3.5, 3.5)
	add("echo-64B-c19k", "reactor", 6, 6)
	return res
}

func TestCPUSummary(t *testing.T) {
	md := tables(cpuSample())
	assert.Contains(t, md, "## Summary: echo server CPU per message (µs, lower is better; ÷ c-epoll in brackets)")
	assert.Contains(t, md, "| server | echo-64B-d1 | echo-64B-c10k | echo-64B-c19k |\n", "idle is not an echo workload, nor is TLS echo plain echo")
	assert.Contains(t, md, "| c-epoll | 3.50 (1.00) | 5.00 (1.00) | 5.00 (1.00) |")
	assert.Contains(t, md, "| gnet | 4.00 (1.14) | 8.00 (1.60) | 10.00 (2.00) |")
	assert.Contains(t, md, "| reactor | 3.50 (1.00) | – | 6.00 (1.20) |")
}

func TestCPUChart(t *testing.T) {
	svg, ok := cpuChart(cpuSample())
	require.True(t, ok)
	counts := svgElements(t, svg)
	assert.Equal(t, 3, counts["polyline"], "one line per server")
	assert.Equal(t, 8, counts["circle"], "one point per server and workload with a figure")
	for _, label := range []string{">100<", ">10 000<", ">19 000<", "gnet, echo-64B-c19k: 10.00 µs/msg (9.00–11.00)"} {
		assert.Contains(t, svg, label)
	}

	// One connection count is not a line: no chart.
	res := cpuSample()
	res.Workloads = res.Workloads[:1]
	_, ok = cpuChart(res)
	assert.False(t, ok)
}

func TestNiceStep(t *testing.T) {
	for _, tt := range []struct{ raw, want float64 }{
		{0.7, 1}, {1, 1}, {1.2, 2}, {3, 5}, {7, 10}, {0.12, 0.2}, {0, 1},
	} {
		assert.InDelta(t, tt.want, niceStep(tt.raw), 1e-12, "%v", tt.raw)
	}
	assert.Equal(t, "2.5", trimFloat(2.5))
	assert.Equal(t, "2", trimFloat(2))
	assert.Equal(t, "19 000", spaced(19000))
}

func TestParseExtra(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "reactor-base")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755))
	plain := filepath.Join(dir, "notexec")
	require.NoError(t, os.WriteFile(plain, nil, 0o644))
	discovered := []server{{Name: cServer}, {Name: "reactor"}}

	got, err := parseExtra("reactor-base="+bin+", old-http="+bin+",old-https="+bin+",old-tls="+bin, discovered)
	require.NoError(t, err)
	require.Len(t, got, 4)
	assert.Equal(t, server{Name: "reactor-base", Kind: kindEcho, Bin: bin, Prebuilt: true}, got[0])
	assert.Equal(t, kindHTTP, got[1].Kind)
	assert.Equal(t, kindHTTPS, got[2].Kind)
	assert.Equal(t, kindTLSEcho, got[3].Kind, "named as discover names them")

	got, err = parseExtra("", discovered)
	require.NoError(t, err)
	assert.Empty(t, got)

	for _, bad := range []string{"reactor=" + bin, "x=" + bin + ",x=" + bin, "x", "=" + bin, "x=" + plain, "x=" + dir, "x=/no/such"} {
		_, err := parseExtra(bad, discovered)
		assert.Error(t, err, bad)
	}
}

// TestRotate: each round starts one server later, so that over as many
// rounds as servers every server runs in every place once.
func TestRotate(t *testing.T) {
	names := func(ss []server) string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Name)
		}
		return strings.Join(out, " ")
	}
	ss := []server{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	assert.Equal(t, "a b c", names(rotate(ss, 0)))
	assert.Equal(t, "b c a", names(rotate(ss, 1)))
	assert.Equal(t, "c a b", names(rotate(ss, 2)))
	assert.Equal(t, "a b c", names(rotate(ss, 3)))
	assert.Equal(t, "a b c", names(ss), "the list itself is left alone")
	assert.Empty(t, rotate(nil, 1))
}

// TestRoundOrderTurnsEachKind: the order turns among the servers of the
// workload's kind, not within the list of every kind, so in a mixed list
// such as discover's each server of a kind takes every place once over as
// many rounds as the kind has servers.
func TestRoundOrderTurnsEachKind(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"evio", "fasthttp", "fasthttp-https", "gnet", "gnet-http", "gonet", "gonet-tls",
		"nbio", "nbio-tls", "nethttp", "netpoll", "reactor", "reactor-http", "reactor-https", "reactor-tls"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "servers", d), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "servers", d, "main.go"), []byte("package main\n"), 0o644))
	}
	servers, err := discover(dir)
	require.NoError(t, err)
	for _, kind := range []string{kindEcho, kindHTTP, kindTLSEcho, kindHTTPS} {
		n := len(ofKind(servers, kind))
		require.Greater(t, n, 1, kind)
		places := map[string]map[int]bool{} // server -> the places it ran in
		for round := 1; round <= n; round++ {
			order := roundOrder(servers, kind, round)
			require.Len(t, order, n, "%s, round %d", kind, round)
			for place, s := range order {
				assert.Equal(t, kind, s.Kind, "%s, round %d", kind, round)
				if places[s.Name] == nil {
					places[s.Name] = map[int]bool{}
				}
				places[s.Name][place] = true
			}
		}
		require.Len(t, places, n, kind)
		for name, p := range places {
			assert.Len(t, p, n, "%s (%s) runs in every place", name, kind)
		}
	}
}
