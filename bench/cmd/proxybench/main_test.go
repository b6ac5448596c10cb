package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTables(t *testing.T) {
	res := &results{Records: []record{
		{Round: 1, Workload: "redis-d1", Test: "GET", Proxy: "reactor", RPS: 100, CPUPerOp: 2, ProxyPct: 90},
		{Round: 2, Workload: "redis-d1", Test: "GET", Proxy: "reactor", RPS: 120, CPUPerOp: 2, ProxyPct: 90},
		{Round: 3, Workload: "redis-d1", Test: "GET", Proxy: "reactor", RPS: 110, CPUPerOp: 2, ProxyPct: 90},
		{Round: 3, Workload: "redis-d1", Test: "GET", Proxy: "reactor", RPS: 5, Replaced: true},
		{Round: 1, Workload: "redis-d1", Test: "GET", Proxy: "haproxy", RPS: 100},
		{Round: 1, Workload: "redis-d1", Test: "GET", Proxy: "gonet", RPS: 50},
		{Round: 2, Workload: "redis-d1", Test: "GET", Proxy: "gonet", Error: "boom"},
		{Round: 1, Workload: "idle-3k", Proxy: "reactor", KiB: 0.9},
		{Round: 1, Workload: "dial", Proxy: "net", RPS: 1000},
		{Round: 1, Workload: "dial", Proxy: "loop", RPS: 1500},
	}}
	out := tables(res)
	assert.Contains(t, out, "Medians of 3 interleaved rounds.")
	assert.Contains(t, out, "| redis-d1 | GET | reactor | 110 | 100–120 |", "the median, the replaced run left out")
	assert.Contains(t, out, "| 1.10 | 2.20 | 0 |", "ratios to haproxy and gonet")
	assert.Contains(t, out, "| redis-d1 | GET | gonet | 50 | 50–50 |")
	gonet := out[strings.Index(out, "| redis-d1 | GET | gonet"):]
	assert.Contains(t, gonet[:strings.Index(gonet, "\n")], "| 1 |", "one failed run")
	assert.Contains(t, out, "| idle-3k | reactor | 0.90 | 0 |")
	assert.Contains(t, out, "| loop | 1500 | 1500–1500 | 0.0 | 1.50 |")
}
