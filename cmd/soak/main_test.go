package main

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunShort runs a short soak over each backend: it must verify bytes,
// lose none, and leave the process as it found it.
func TestRunShort(t *testing.T) {
	for _, backend := range []string{"epoll", "poll"} {
		t.Run(backend, func(t *testing.T) {
			var out bytes.Buffer
			rep, err := run(config{conns: 20, duration: 500 * time.Millisecond, loops: 2, backend: backend, maxSize: 64 << 10, seed: 7}, &out)
			require.NoError(t, err)
			assert.True(t, rep.ok(), "soak failed:\n%s", out.String())
			c := rep.counters
			assert.Positive(t, c.verified.Load())
			assert.Zero(t, c.lost.Load())
			assert.GreaterOrEqual(t, c.connections.Load(), int64(20))
			assert.Equal(t, c.connections.Load(), rep.stats.Accepted)
			assert.Contains(t, out.String(), "bytes lost       0\n")
			assert.True(t, strings.HasSuffix(out.String(), "OK\n"), out.String())
		})
	}
}

func TestRunRejectsNonsense(t *testing.T) {
	_, err := run(config{conns: 1, duration: time.Second, backend: "kqueue", maxSize: 1}, io.Discard)
	assert.ErrorContains(t, err, "kqueue")
	_, err = run(config{conns: 0, duration: time.Second, backend: "epoll", maxSize: 1}, io.Discard)
	assert.Error(t, err)
}

// TestFillPatternAnyChunking: the writer and the reader generate a round's
// bytes in different chunks; they must agree.
func TestFillPatternAnyChunking(t *testing.T) {
	const size, seed = 10_000, 42
	whole := make([]byte, size)
	fillPattern(whole, seed, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		pieces := make([]byte, 0, size)
		for off := 0; off < size; {
			n := min(size-off, 1+rng.IntN(100))
			p := make([]byte, n)
			fillPattern(p, seed, off)
			pieces = append(pieces, p...)
			off += n
		}
		require.Equal(t, whole, pieces)
	}
	other := make([]byte, size)
	fillPattern(other, seed+1, 0)
	assert.Greater(t, mismatches(whole, other), size*9/10, "another seed gives other bytes")
}

// TestCheckReportsEveryProblem: each kind of failure alone makes the run
// fail.
func TestCheckReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(r *report)
		want  string
	}{
		{"nothing wrong", func(*report) {}, ""},
		{"lost", func(r *report) { r.counters.lost.Add(3) }, "3 bytes lost"},
		{"corrupted", func(r *report) { r.counters.mismatched.Add(1) }, "corrupted"},
		{"client error", func(r *report) { r.counters.clientErrs.Add(1) }, "client errors"},
		{"server error", func(r *report) { r.counters.serverErrs.Add(1) }, "server-side"},
		{"unpaired", func(r *report) { r.counters.closed.Add(-1) }, "OnOpen ran"},
		{"goroutine leak", func(r *report) { r.goroutinesAfter++ }, "goroutines"},
		{"descriptor leak", func(r *report) { r.fdsAfter++ }, "descriptors"},
		{"still open", func(r *report) { r.stats.Open = 1 }, "Stats.Open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &report{counters: &counters{}, goroutinesBefore: 3, goroutinesAfter: 3, fdsBefore: 9, fdsAfter: 9}
			c := r.counters
			c.connections.Add(5)
			c.opened.Add(5)
			c.closed.Add(5)
			c.verified.Add(100)
			tt.spoil(r)
			r.check()
			if tt.want == "" {
				assert.Empty(t, r.problems)
				return
			}
			require.Len(t, r.problems, 1)
			assert.Contains(t, r.problems[0], tt.want)
		})
	}
}
