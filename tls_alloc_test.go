package reactor

import (
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loopSite is what the heap profile says of one allocation site.
type loopSite struct{ allocs, inUse int64 }

// loopProfile returns, per allocation site (the first frames of its
// stack), what was allocated on an event loop's goroutine or in a TLS
// handshake's coroutine (stacks through EventLoop.Run or iter.Pull): the
// objects allocated so far and the bytes still in use. Sampling must be
// on for every allocation (runtime.MemProfileRate = 1) before what is
// measured happens.
func loopProfile() map[string]loopSite {
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
	m := map[string]loopSite{}
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
			k := strings.Join(stack[:min(len(stack), 6)], " < ")
			s := m[k]
			s.allocs += r.AllocObjects
			s.inUse += r.InUseBytes()
			m[k] = s
		}
	}
	return m
}

// loopAllocs runs fn with every allocation sampled and returns how many
// objects were allocated on an event loop's goroutine while it ran, and
// where.
func loopAllocs(fn func()) (int64, map[string]int64) {
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	before := loopProfile()
	fn()
	after := loopProfile()
	var total int64
	diff := map[string]int64{}
	for k, v := range after {
		if d := v.allocs - before[k].allocs; d > 0 {
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
		// Some objects over the run are not per message: pools refilled
		// after a garbage collection emptied them, the runtime's type
		// caches. A new allocation per message would add n.
		assert.LessOrEqual(t, float64(total)/n, 1.05, "allocations per echoed message")
		assert.Less(t, others, int64(n/10), "allocations other than crypto/tls's atLeastReader")
	}
}

// TestTLSIdleMemory measures the heap an idle TLS connection holds on the
// server once its handshake is done and a byte has been echoed, by
// allocation site, and bounds it: crypto/tls's state (its Conn, two
// AES-GCM states, its input and handshake buffers) and the reactor's
// Conn, connExt and TLS layer. The bound fails if the layer kept a buffer
// or the handshake's coroutine past the handshake.
func TestTLSIdleMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector adds to every allocation")
	}
	srv := startTLSEcho(t, nil)
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	before := loopProfile()
	const n = 200
	cfg := clientTLSConfig()
	for range n {
		c := dialTLS(t, srv.Addr(), cfg) // closed when the test ends
		echoLoopback(t, c, "x")
	}
	syncLoops(t, srv)
	after := loopProfile()
	var total int64
	type site struct {
		where string
		bytes int64
	}
	var sites []site
	for k, v := range after {
		if d := v.inUse - before[k].inUse; d > 0 {
			total += d
			sites = append(sites, site{k, d})
		}
	}
	slices.SortFunc(sites, func(a, b site) int { return int(b.bytes - a.bytes) })
	perConn := float64(total) / n
	t.Logf("heap held on the server per idle TLS connection: %.0f B", perConn)
	for _, s := range sites[:min(len(sites), 10)] {
		t.Logf("  %6.0f B  %s", float64(s.bytes)/n, s.where)
	}
	assert.Less(t, perConn, 10240.0, "bytes held per idle TLS connection")
}
