package reactor

import (
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loopAllocs runs fn with every allocation sampled and returns how many
// objects were allocated on an event loop's goroutine (stacks through
// EventLoop.Run) while it ran, and where.
func loopAllocs(fn func()) (int64, map[string]int64) {
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	snapshot := func() map[string]int64 {
		runtime.GC()
		var recs []runtime.MemProfileRecord
		n, _ := runtime.MemProfile(nil, true)
		for {
			recs = make([]runtime.MemProfileRecord, n+64)
			var ok bool
			if n, ok = runtime.MemProfile(recs, true); ok {
				recs = recs[:n]
				break
			}
		}
		m := map[string]int64{}
		for _, r := range recs {
			frames := runtime.CallersFrames(r.Stack())
			var stack []string
			onLoop := false
			for {
				f, more := frames.Next()
				stack = append(stack, f.Function)
				if strings.HasSuffix(f.Function, "(*EventLoop).Run") || strings.Contains(f.Function, "iter.Pull") {
					onLoop = true
				}
				if !more {
					break
				}
			}
			if onLoop {
				m[strings.Join(stack[:min(len(stack), 6)], " < ")] += r.AllocObjects
			}
		}
		return m
	}
	before := snapshot()
	fn()
	after := snapshot()
	var total int64
	diff := map[string]int64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			diff[k] = d
			total += d
		}
	}
	return total, diff
}

// TestTLSEchoAllocations measures what the loop allocates per echoed
// message over TLS once the handshake is done: one object, the
// atLeastReader that crypto/tls's readFromUntil allocates whenever it
// reads from its net.Conn (see tls.go, fact 7). The layer itself
// allocates nothing: the test fails if anything else appears, or if the
// framing stops saving the read that would find nothing.
func TestTLSEchoAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers on purpose")
	}
	for _, size := range []int{64, 4096} {
		srv := startTLSEcho(t, nil)
		c := dialTLS(t, srv.Addr(), clientTLSConfig())
		msg := make([]byte, size)
		buf := make([]byte, size)
		rt := func() {
			require.NoError(t, c.SetDeadline(time.Now().Add(100*time.Second)))
			_, err := c.Write(msg)
			require.NoError(t, err)
			_, err = io.ReadFull(c, buf)
			require.NoError(t, err)
		}
		for range 300 {
			rt()
		}
		const n = 2000
		total, where := loopAllocs(func() {
			for range n {
				rt()
			}
		})
		t.Logf("size %d: %.3f allocations per echoed message on the loop", size, float64(total)/n)
		var others int64
		for k, v := range where {
			if !strings.Contains(k, "crypto/tls.(*Conn).readFromUntil") {
				others += v
				t.Logf("  %d  %s", v, k)
			}
		}
		// A few objects over the run are the runtime's own (a timer, a
		// grown slice), not per message.
		assert.LessOrEqual(t, float64(total)/n, 1.02, "allocations per echoed message")
		assert.Less(t, others, int64(n/100), "allocations other than crypto/tls's atLeastReader")
	}
}
