package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

const (
	simUpstream = "10.0.0.2:6379"
	simListen   = "127.0.0.1:7000"
	simHWM      = 16 << 10
	simReadBuf  = 4 << 10
	simWindow   = 8 << 10
	simSndBuf   = 4 << 10
)

// simProxy starts the proxy over a new Sim with an upstream listener the
// test holds.
func simProxy(t *testing.T, seed int64) (*reactor.Sim, *reactor.SimListener, func() error) {
	t.Helper()
	s := reactor.NewSim(seed, reactor.SimReceiveWindow(simWindow), reactor.SimSendBuffer(simSndBuf), reactor.SimTrace(false))
	up, err := s.Listen(simUpstream)
	require.NoError(t, err)
	srv, err := newServer(simListen, &Proxy{Upstream: simUpstream, DialTimeout: time.Second},
		reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(2),
		reactor.WithHighWaterMark(simHWM), reactor.WithReadBufferSize(simReadBuf),
		reactor.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	stop := s.Start(srv)
	t.Cleanup(func() { _ = stop() })
	return s, up, stop
}

// flow is one proxied connection as the test sees it: the client's end,
// the upstream's end, and what each has sent and received.
type flow struct {
	client, server *reactor.SimConn
	c2s, s2c       []byte // to send, in full
	sentC, sentS   int    // how much of each has been written
	gotS, gotC     []byte // received by the server (after the header) and by the client
	resetByTest    bool
	closedC        bool // the client half-closed
	closedS        bool // the server half-closed
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// readBoth takes what has arrived at both ends of f.
func (f *flow) readBoth() {
	f.gotC = append(f.gotC, f.client.ReadAll()...)
	if f.server != nil {
		f.gotS = append(f.gotS, f.server.ReadAll()...)
	}
}

const headerLen = 8 // "%07d\n": the flow's number, sent first by each client

func TestProxyOverSim(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { proxySimRun(t, int64(seed)) })
	}
}

// proxySimRun runs a random script over the proxy: several pairs send both
// ways in random chunks, the proxy's reads and writes come up short at
// random, readers open and close their windows, and some connections are
// reset, by either peer or by an injected fault. Then every flow must have
// carried each byte once, in order: in full where nothing was reset, a
// prefix otherwise, and every end must have ended.
func proxySimRun(t *testing.T, seed int64) {
	s, up, stop := simProxy(t, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 99))
	s.Inject(reactor.Fault{Op: reactor.FaultRead, Short: true, Probability: 0.3})
	s.Inject(reactor.Fault{Op: reactor.FaultWrite, Short: true, Probability: 0.3})

	const pairs = 6
	flows := make([]*flow, pairs)
	for i := range flows {
		c, err := s.Dial(simListen)
		require.NoError(t, err)
		f := &flow{client: c, c2s: randomBytes(rng, rng.IntN(200<<10)), s2c: randomBytes(rng, rng.IntN(200<<10))}
		_, _ = c.WriteString(fmt.Sprintf("%07d\n", i))
		flows[i] = f
	}
	s.RunUntilIdle()
	for range pairs {
		sc, err := up.Accept()
		require.NoError(t, err, "every pair dialled its upstream")
		var hdr []byte
		for len(hdr) < headerLen {
			s.RunUntilIdle()
			b := sc.ReadAll()
			require.NotEmpty(t, b, "the header arrives")
			hdr = append(hdr, b...)
		}
		i, err := strconv.Atoi(string(hdr[:headerLen-1]))
		require.NoError(t, err)
		flows[i].server = sc
		flows[i].gotS = append(flows[i].gotS, hdr[headerLen:]...)
	}
	// From now on, now and then a read of the proxy's finds its connection
	// reset.
	s.Inject(reactor.Fault{Op: reactor.FaultRead, Err: syscall.ECONNRESET, Probability: 0.002})

	for step := 0; step < 400; step++ {
		f := flows[rng.IntN(pairs)]
		switch r := rng.IntN(100); {
		case r < 35 && f.sentC < len(f.c2s) && !f.closedC:
			n := min(len(f.c2s)-f.sentC, 1+rng.IntN(16<<10))
			if _, err := f.client.Write(f.c2s[f.sentC : f.sentC+n]); err == nil {
				f.sentC += n
			}
		case r < 70 && f.sentS < len(f.s2c) && !f.closedS:
			n := min(len(f.s2c)-f.sentS, 1+rng.IntN(16<<10))
			if _, err := f.server.Write(f.s2c[f.sentS : f.sentS+n]); err == nil {
				f.sentS += n
			}
		case r < 80:
			f.client.SetReceiveWindow(rng.IntN(2 * simWindow))
			f.server.SetReceiveWindow(rng.IntN(2 * simWindow))
		case r < 95:
			f.readBoth()
		case r < 96 && !f.resetByTest:
			f.resetByTest = true
			if rng.IntN(2) == 0 {
				_ = f.client.Reset()
			} else {
				_ = f.server.Reset()
			}
		}
		if rng.IntN(4) == 0 {
			s.RunUntilIdle()
		} else {
			s.Step()
		}
	}

	// Finish: open every window, send the rest, half-close both ways, and
	// read everything.
	for _, f := range flows {
		f.client.SetReceiveWindow(1 << 20)
		f.server.SetReceiveWindow(1 << 20)
		if f.resetByTest {
			continue
		}
		if _, err := f.client.Write(f.c2s[f.sentC:]); err == nil {
			f.sentC = len(f.c2s)
		}
		if _, err := f.server.Write(f.s2c[f.sentS:]); err == nil {
			f.sentS = len(f.s2c)
		}
		_ = f.client.CloseWrite()
		_ = f.server.CloseWrite()
	}
	for range 100 {
		s.RunUntilIdle()
		for _, f := range flows {
			f.readBoth()
		}
	}
	s.Advance(10 * time.Second) // lingering closes end
	for _, f := range flows {
		f.readBoth()
	}

	for i, f := range flows {
		clean := !f.resetByTest && !f.client.WasReset() && !f.server.WasReset()
		if clean {
			assert.True(t, bytes.Equal(f.c2s[:f.sentC], f.gotS), "flow %d: client to server: sent %d, received %d", i, f.sentC, len(f.gotS))
			assert.True(t, bytes.Equal(f.s2c[:f.sentS], f.gotC), "flow %d: server to client: sent %d, received %d", i, f.sentS, len(f.gotC))
			assert.Equal(t, len(f.c2s), f.sentC, "flow %d", i)
			assert.True(t, f.client.EOF(), "flow %d: the client saw the end", i)
			assert.True(t, f.server.EOF(), "flow %d: the server saw the end", i)
		} else {
			assert.True(t, bytes.HasPrefix(f.c2s[:f.sentC], f.gotS), "flow %d: client to server is a prefix, once, in order", i)
			assert.True(t, bytes.HasPrefix(f.s2c[:f.sentS], f.gotC), "flow %d: server to client is a prefix, once, in order", i)
			assert.True(t, f.client.EOF() || f.client.WasReset(), "flow %d: the client's end ended", i)
			assert.True(t, f.server.EOF() || f.server.WasReset(), "flow %d: the server's end ended", i)
		}
		_ = f.client.Close()
		_ = f.server.Close()
	}
	require.NoError(t, stop())
	assert.Empty(t, s.OpenFDs(), "descriptors left open")
}

// TestProxySlowReaderPausesTheOtherSide checks the cross-pair backpressure:
// with one side not reading, the proxy stops reading the other, so the
// bytes inside the proxy stay bounded (its high-water mark, a read, and
// the socket buffers) while the sender's bytes wait at the sender; once the
// reader reads, everything arrives, once, in order.
func TestProxySlowReaderPausesTheOtherSide(t *testing.T) {
	for _, dir := range []string{"upstream to client", "client to upstream"} {
		t.Run(dir, func(t *testing.T) {
			s, up, stop := simProxy(t, 1)
			c, err := s.Dial(simListen)
			require.NoError(t, err)
			s.RunUntilIdle()
			sc, err := up.Accept()
			require.NoError(t, err)
			sender, reader := sc, c
			if dir == "client to upstream" {
				sender, reader = c, sc
			}
			reader.SetReceiveWindow(0)
			payload := randomBytes(rand.New(rand.NewPCG(1, 2)), 1<<20)
			_, err = sender.Write(payload)
			require.NoError(t, err)
			s.RunUntilIdle()

			inProxy := len(payload) - sender.Pending() - reader.Buffered()
			bound := simHWM + simReadBuf + 2*simWindow + 2*simSndBuf
			assert.Greater(t, sender.Pending(), len(payload)-bound, "the sender's bytes wait at the sender")
			assert.LessOrEqual(t, inProxy, bound, "bytes held by the proxy and its sockets")

			reader.SetReceiveWindow(simWindow)
			var got []byte
			for len(got) < len(payload) {
				s.RunUntilIdle()
				b := reader.ReadAll()
				require.NotEmpty(t, b, "progress once the reader reads (%d of %d)", len(got), len(payload))
				got = append(got, b...)
			}
			assert.True(t, bytes.Equal(payload, got))
			require.NoError(t, c.CloseWrite())
			require.NoError(t, sc.CloseWrite())
			s.RunUntilIdle()
			assert.True(t, c.EOF())
			assert.True(t, sc.EOF())
			require.NoError(t, stop())
			assert.Empty(t, s.OpenFDs())
		})
	}
}

func TestProxyUpstreamDownOverSim(t *testing.T) {
	s, up, stop := simProxy(t, 1)
	require.NoError(t, up.Close()) // nothing listens: every dial is refused
	c, err := s.Dial(simListen)
	require.NoError(t, err)
	_, _ = c.WriteString("anyone?")
	s.RunUntilIdle()
	assert.True(t, c.EOF(), "the client's connection is closed")
	assert.Empty(t, c.ReadAll())

	// An upstream that never answers the SYN: the dial times out.
	up2, err := s.Listen("10.0.0.3:1")
	require.NoError(t, err)
	_ = up2
	s.Inject(reactor.Fault{Op: reactor.FaultConnect, Err: syscall.ETIMEDOUT, Times: 1})
	c2, err := s.Dial(simListen)
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.False(t, c2.EOF())
	s.Advance(time.Second)
	assert.True(t, c2.EOF(), "closed when the dial timed out")
	require.NoError(t, c.Close())
	require.NoError(t, c2.Close())
	require.NoError(t, stop())
	assert.Empty(t, s.OpenFDs())
}
