package reactor

// TLS over the simulation: Go's crypto/tls client runs on the test
// goroutine over a simulated socket, and every read it makes drives the
// simulation until the server has said something. Records are cut
// anywhere: the client writes in random pieces, the server's reads and
// writes come up short (Fault Short), so a record's header, body and tag
// arrive in different reads.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor/internal/sim"
)

// errSimQuiet is what simNetConn.Read returns when the simulation is idle
// and the server has sent nothing: a blocking read would wait for ever.
var errSimQuiet = errors.New("simulation idle: the server sent nothing")

// simNetConn is a net.Conn over a simulated client for crypto/tls on the
// test goroutine. Read runs the simulation until the server has sent
// something, and hands it over in random pieces; Write cuts p at random and
// lets the server run after each piece (unless together is set), so that
// the server reads records in pieces.
type simNetConn struct {
	k        *sim.Kernel
	c        *sim.Conn
	rnd      *rand.Rand
	together bool         // write each p at once, without running the server in between
	received bytes.Buffer // every byte read: the server's records
}

func newSimNetConn(k *sim.Kernel, c *sim.Conn, seed uint64) *simNetConn {
	return &simNetConn{k: k, c: c, rnd: rand.New(rand.NewPCG(seed, 7))}
}

func (n *simNetConn) Read(p []byte) (int, error) {
	for tries := 0; ; tries++ {
		if b := n.c.Buffered(); b > 0 && len(p) > 0 {
			m, err := n.c.Read(p[:1+n.rnd.IntN(min(len(p), b))])
			n.received.Write(p[:m])
			return m, err
		}
		m, err := n.c.Read(p)
		if m > 0 || err != nil {
			return m, err
		}
		if tries > 0 {
			return 0, errSimQuiet
		}
		n.k.RunUntilIdle()
	}
}

func (n *simNetConn) Write(p []byte) (int, error) {
	if n.together {
		return n.c.Write(p)
	}
	done := 0
	for done < len(p) {
		k := 1 + n.rnd.IntN(len(p)-done)
		if _, err := n.c.Write(p[done : done+k]); err != nil {
			return done, err
		}
		done += k
		n.k.RunUntilIdle()
	}
	return done, nil
}

func (n *simNetConn) Close() error                     { return n.c.Close() }
func (n *simNetConn) LocalAddr() net.Addr              { return n.c.LocalAddr() }
func (n *simNetConn) RemoteAddr() net.Addr             { return n.c.RemoteAddr() }
func (n *simNetConn) SetDeadline(time.Time) error      { return nil }
func (n *simNetConn) SetReadDeadline(time.Time) error  { return nil }
func (n *simNetConn) SetWriteDeadline(time.Time) error { return nil }

// simClock is the fixed time both sides of a simulated handshake see, so
// that nothing in it depends on the real clock.
func simClock() time.Time { return testCert.Leaf.NotBefore.Add(time.Hour) }

// simTLSServerConfig and simTLSClientConfig are the test configurations
// with the fixed clock.
func simTLSServerConfig() *tls.Config {
	c := serverTLSConfig()
	c.Time = simClock
	return c
}

func simTLSClientConfig() *tls.Config {
	c := clientTLSConfig()
	c.Time = simClock
	return c
}

// tlsRig is a TLS server over the simulation with helpers for its clients.
type tlsRig struct {
	*simRig
	seed uint64
}

func startTLSSim(t *testing.T, seed int64, rec *recorder, opts ...Option) *tlsRig {
	t.Helper()
	opts = append([]Option{WithLoops(2), WithTLS(simTLSServerConfig())}, opts...)
	return &tlsRig{simRig: startSim(t, seed, rec, opts...), seed: uint64(seed)}
}

// client dials the server and returns the simulated client and a
// crypto/tls client over it, before its handshake.
func (r *tlsRig) client(cfg *tls.Config) (*sim.Conn, *simNetConn, *tls.Conn) {
	r.t.Helper()
	cl := r.dial()
	r.seed++
	nc := newSimNetConn(r.s.k, cl, r.seed)
	return cl, nc, tls.Client(nc, cfg)
}

// echo writes msg and reads it back through tc.
func echoTLS(t *testing.T, tc *tls.Conn, msg []byte) {
	t.Helper()
	_, err := tc.Write(msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(tc, got)
	require.NoError(t, err)
	require.True(t, bytes.Equal(msg, got), "echo differs")
}

// TestTLSOverSim runs handshakes and echoes over the simulation with
// records cut anywhere, for both TLS versions and several seeds, and
// checks the end: the client's close_notify is the server's EOF.
func TestTLSOverSim(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for seed := int64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprintf("%s/seed=%d", tls.VersionName(version), seed), func(t *testing.T) {
				rec := newRecorder()
				r := startTLSSim(t, seed, rec)
				r.s.Inject(Fault{Op: FaultRead, Short: true, Probability: 0.5})
				r.s.Inject(Fault{Op: FaultWrite, Short: true, Probability: 0.5})
				cfg := simTLSClientConfig()
				cfg.MaxVersion = version
				cl, _, tc := r.client(cfg)
				require.NoError(t, tc.Handshake())
				assert.Equal(t, version, tc.ConnectionState().Version)
				rnd := rand.New(rand.NewPCG(uint64(seed), 1))
				for _, size := range []int{1, 100, 5000, 40000} {
					msg := make([]byte, size)
					for i := range msg {
						msg[i] = byte(rnd.Uint32())
					}
					echoTLS(t, tc, msg)
				}
				sc := rec.conn(cl)
				require.NotNil(t, sc)
				require.NotNil(t, sc.TLS())
				assert.Equal(t, version, sc.TLS().Version)
				require.NoError(t, tc.Close()) // close_notify, then FIN
				r.s.k.RunUntilIdle()
				cr, ok := rec.closeOf(sc)
				require.True(t, ok, "closed")
				assert.NoError(t, cr.err, "the client's close_notify is an orderly end")
				st := r.srv.Stats()
				assert.Equal(t, int64(1), st.TLS.Handshakes)
				assert.Zero(t, st.TLS.Failed)
				assert.Zero(t, st.TLS.InProgress)
			})
		}
	}
}

// TestTLSFirstRecordsWithFinished: the client's first application data
// arrives in the same read as its Finished, so crypto/tls reads it into
// its own buffer during the handshake; it must be delivered at once, not
// wait for bytes that will never come (it did: the echo never came). TLS
// 1.3's client finishes its handshake by writing its Finished, and its
// data can follow before the server has read it.
func TestTLSFirstRecordsWithFinished(t *testing.T) {
	rec := newRecorder()
	r := startTLSSim(t, 1, rec)
	_, nc, tc := r.client(simTLSClientConfig())
	nc.together = true
	require.NoError(t, tc.Handshake())
	_, err := tc.Write([]byte("ping")) // sent with the Finished: the server has not run since
	require.NoError(t, err)
	got := make([]byte, 4)
	_, err = io.ReadFull(tc, got)
	require.NoError(t, err, "the data sent with the Finished must be echoed")
	assert.Equal(t, "ping", string(got))
}

// captureConn is a net.Conn that keeps what is written to it and fails
// every read: a crypto/tls client over it writes its ClientHello and
// gives up.
type captureConn struct {
	net.Conn // nil: only the methods below are called
	out      bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *captureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// clientHello returns a real ClientHello, as Go's client sends it.
func clientHello(t *testing.T) []byte {
	var c captureConn
	_ = tls.Client(&c, simTLSClientConfig()).Handshake() // fails at its first read
	require.Greater(t, c.out.Len(), 100)
	return c.out.Bytes()
}

// TestTLSHandshakeTimeoutSim: a client that sends nothing, or half a
// ClientHello, is dropped at the handshake timeout, to the nanosecond,
// with no callback, counted; one that finishes in time is served.
func TestTLSHandshakeTimeoutSim(t *testing.T) {
	const d = 3 * time.Second
	rec := newRecorder()
	r := startTLSSim(t, 1, rec, WithTLSHandshakeTimeout(d))
	hello := clientHello(t)
	silent := r.dial()
	half := r.dial()
	_, err := half.Write(hello[:len(hello)/2])
	require.NoError(t, err)
	r.s.k.RunUntilIdle()
	assert.Equal(t, int64(1), r.srv.Stats().TLS.InProgress, "half a hello starts a handshake; silence does not")
	r.s.k.Advance(d - time.Nanosecond)
	assert.GreaterOrEqual(t, silent.ServerFD(), 0, "still waiting just before the timeout")
	assert.GreaterOrEqual(t, half.ServerFD(), 0, "still waiting just before the timeout")
	r.s.k.Advance(time.Nanosecond)
	for _, cl := range []*sim.Conn{silent, half} {
		assert.Equal(t, -1, cl.ServerFD(), "%v dropped at the timeout", cl)
		assert.True(t, cl.EOF() || cl.WasReset(), "%v sees the end", cl)
	}
	st := r.srv.Stats()
	assert.Equal(t, int64(2), st.TLS.TimedOut)
	assert.Equal(t, int64(2), st.TLS.Failed)
	assert.Zero(t, st.TLS.InProgress)
	assert.Zero(t, st.Open)
	opened, _ := rec.counts()
	assert.Zero(t, opened, "no OnOpen for a handshake that failed")

	// A client that finishes in time is served, and its timeout ends
	// with the handshake: it outlives it.
	_, _, tc := r.client(simTLSClientConfig())
	require.NoError(t, tc.Handshake())
	r.s.k.Advance(2 * d)
	echoTLS(t, tc, []byte("still here"))
}

// TestTLSBadInputSim: what is not a TLS handshake ends the connection at
// once, without OnOpen: a plaintext HTTP request, random bytes, an SSLv2
// hello, a peer that closes half-way.
func TestTLSBadInputSim(t *testing.T) {
	hello := clientHello(t)
	for _, tc := range []struct {
		name  string
		input []byte
		fin   bool
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), false},
		{"garbage", bytes.Repeat([]byte{0x17, 0xff, 0x00, 0x42}, 64), false},
		{"sslv2", []byte{0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15}, false},
		{"zero-length-record", []byte{0x16, 0x03, 0x01, 0x00, 0x00}, false},
		{"half-hello-then-fin", hello[:len(hello)/2], true},
		{"fin-at-once", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			r := startTLSSim(t, 1, rec)
			cl := r.dial()
			if len(tc.input) > 0 {
				_, err := cl.Write(tc.input)
				require.NoError(t, err)
			}
			if tc.fin {
				require.NoError(t, cl.CloseWrite())
			}
			r.s.k.RunUntilIdle()
			assert.Equal(t, -1, cl.ServerFD(), "dropped")
			st := r.srv.Stats()
			assert.Equal(t, int64(1), st.TLS.Failed)
			assert.Zero(t, st.TLS.TimedOut)
			assert.Zero(t, st.TLS.InProgress)
			opened, _ := rec.counts()
			assert.Zero(t, opened)
			// The server keeps serving.
			_, _, c2 := r.client(simTLSClientConfig())
			require.NoError(t, c2.Handshake())
			echoTLS(t, c2, []byte("next"))
		})
	}
}

// readAllTLS reads tc until it ends and returns what it read and how it
// ended (io.EOF for a close_notify).
func readAllTLS(tc *tls.Conn) ([]byte, error) {
	var got []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := tc.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, err
		}
	}
}

// TestTLSCloseSim: Close and CloseWrite send close_notify behind the
// output, from the loop and from another goroutine's point of view (a
// Close in OnWriteComplete, after the flush that sent the data); the
// peer's close_notify ends the connection in order.
func TestTLSCloseSim(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  func(c *Conn, in *Buffer)
		wc   func(c *Conn)
	}{
		{"close-in-message", func(c *Conn, in *Buffer) {
			_, _ = c.Write(in.Next(in.Len()))
			_ = c.Close()
		}, nil},
		{"close-in-write-complete", func(c *Conn, in *Buffer) { _, _ = c.Write(in.Next(in.Len())) },
			func(c *Conn) { _ = c.Close() }},
		{"closewrite-in-message", func(c *Conn, in *Buffer) {
			if _, err := c.Write(in.Next(in.Len())); err == nil {
				_ = c.CloseWrite()
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			var got []string
			rec.msg = func(c *Conn, in *Buffer) {
				got = append(got, string(in.Bytes()))
				tc.msg(c, in)
			}
			rec.writeComplete = tc.wc
			r := startTLSSim(t, 1, rec)
			cl, _, tlc := r.client(simTLSClientConfig())
			require.NoError(t, tlc.Handshake())
			_, err := tlc.Write([]byte("bye"))
			require.NoError(t, err)
			data, err := readAllTLS(tlc)
			assert.Equal(t, "bye", string(data))
			assert.ErrorIs(t, err, io.EOF, "close_notify, not a cut (io.ErrUnexpectedEOF)")
			sc := rec.conn(cl)
			if tc.name == "closewrite-in-message" {
				// Half-closed: the server still reads.
				_, err = tlc.Write([]byte("after"))
				require.NoError(t, err)
				r.s.k.RunUntilIdle()
				assert.Equal(t, []string{"bye", "after"}, got)
				require.NotNil(t, sc)
			}
			require.NoError(t, tlc.Close())
			r.s.k.RunUntilIdle()
			assert.Equal(t, -1, cl.ServerFD(), "closed")
			assert.False(t, cl.WasReset(), "an orderly end, not a reset")
			st := r.srv.Stats()
			assert.Equal(t, int64(1), st.Closed.Local+st.Closed.Peer)
		})
	}
}

// TestTLSLimitsSim: WithHighWaterMark counts the records and plaintext
// waiting, pauses reading and loses nothing; WithMaxInputSize applies to
// the plaintext left unconsumed.
func TestTLSLimitsSim(t *testing.T) {
	t.Run("high-water", func(t *testing.T) {
		const hwm, reply = 64 << 10, 100 << 10
		rec := newRecorder()
		var highs, lows int
		var whilePaused int
		rec.msg = func(c *Conn, in *Buffer) {
			if c.paused {
				whilePaused++
			}
			for range in.Len() {
				_, _ = c.Write(bytes.Repeat([]byte{'x'}, reply))
			}
			in.Discard(in.Len())
		}
		h := &watermarkRecorder{recorder: rec, high: func(*Conn, int) { highs++ }, low: func(*Conn, int) { lows++ }}
		r := &tlsRig{simRig: startSimHandler(t, 1, rec, h, WithLoops(1), WithTLS(simTLSServerConfig()), WithHighWaterMark(hwm))}
		cl, _, tc := r.client(simTLSClientConfig())
		cl.SetReceiveWindow(8 << 10)
		require.NoError(t, tc.Handshake())
		const msgs = 12
		for range msgs {
			_, err := tc.Write([]byte{1})
			require.NoError(t, err)
		}
		r.s.k.RunUntilIdle()
		require.Equal(t, 1, highs, "paused at the first reply")
		got := 0
		buf := make([]byte, 64<<10)
		for got < msgs*reply {
			n, err := tc.Read(buf)
			require.NoError(t, err, "after %d bytes", got)
			got += n
		}
		assert.Equal(t, msgs*reply, got, "nothing lost")
		assert.Equal(t, highs, lows, "every pause resumed")
		assert.Zero(t, whilePaused, "no OnMessage while paused")
	})
	t.Run("max-input", func(t *testing.T) {
		rec := newRecorder()
		rec.msg = func(*Conn, *Buffer) {} // consumes nothing
		r := startTLSSim(t, 1, rec, WithMaxInputSize(1000))
		cl, _, tc := r.client(simTLSClientConfig())
		require.NoError(t, tc.Handshake())
		_, err := tc.Write(make([]byte, 900))
		require.NoError(t, err)
		r.s.k.RunUntilIdle()
		sc := rec.conn(cl)
		require.NotNil(t, sc, "900 bytes are within the limit")
		_, err = tc.Write(make([]byte, 200))
		require.NoError(t, err)
		r.s.k.RunUntilIdle()
		cr, ok := rec.closeOf(sc)
		require.True(t, ok)
		assert.ErrorIs(t, cr.err, ErrInputTooLarge)
	})
}

// watermarkRecorder is a recorder that is also a WatermarkHandler.
type watermarkRecorder struct {
	*recorder
	high, low func(*Conn, int)
}

func (w *watermarkRecorder) OnHighWater(c *Conn, n int) { w.high(c, n) }
func (w *watermarkRecorder) OnLowWater(c *Conn, n int)  { w.low(c, n) }

// TestTLSPanicSim: a panic in a callback crypto/tls runs during the
// handshake (GetConfigForClient) ends that handshake only, without
// OnOpen; one in OnMessage over TLS ends the connection with a reset, as
// on plain TCP. The server serves on.
func TestTLSPanicSim(t *testing.T) {
	rec := newRecorder()
	cfg := simTLSServerConfig()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if hello.ServerName == "boom.example" {
			panic("GetConfigForClient")
		}
		return nil, nil
	}
	rec.msg = func(c *Conn, in *Buffer) {
		if string(in.Bytes()) == "panic" {
			panic("OnMessage")
		}
		_, _ = c.Write(in.Next(in.Len()))
	}
	r := &tlsRig{simRig: startSim(t, 1, rec, WithLoops(2), WithTLS(cfg))}
	bad := simTLSClientConfig()
	bad.ServerName = "boom.example"
	bad.InsecureSkipVerify = true
	_, _, tc := r.client(bad)
	require.Error(t, tc.Handshake())
	opened, _ := rec.counts()
	assert.Zero(t, opened)
	st := r.srv.Stats()
	assert.Equal(t, int64(1), st.TLS.Failed)
	assert.Zero(t, st.TLS.InProgress)

	cl, _, tc2 := r.client(simTLSClientConfig())
	require.NoError(t, tc2.Handshake())
	echoTLS(t, tc2, []byte("fine"))
	sc := rec.conn(cl)
	_, err := tc2.Write([]byte("panic"))
	require.NoError(t, err)
	r.s.k.RunUntilIdle()
	cr, ok := rec.closeOf(sc)
	require.True(t, ok)
	assert.ErrorIs(t, cr.err, ErrHandlerPanic)
	assert.True(t, cl.WasReset(), "a reply cut short by a panic is not passed off as complete")

	_, _, tc3 := r.client(simTLSClientConfig())
	require.NoError(t, tc3.Handshake())
	echoTLS(t, tc3, []byte("still serving"))
}

// TestTLSShutdownSim: a graceful shutdown flushes an open connection's
// output, then its close_notify; a handshake in progress is dropped (it
// never opened), its coroutine ended (goleak checks at the end of the
// package's tests that no goroutine is left).
func TestTLSShutdownSim(t *testing.T) {
	rec := newRecorder()
	r := startTLSSim(t, 1, rec)
	half := r.dial()
	hello := clientHello(t)
	_, err := half.Write(hello[:len(hello)-10])
	require.NoError(t, err)
	_, _, tc := r.client(simTLSClientConfig())
	require.NoError(t, tc.Handshake())
	_, err = tc.Write([]byte("last words"))
	require.NoError(t, err)
	r.s.k.RunUntilIdle()
	assert.Equal(t, int64(1), r.srv.Stats().TLS.InProgress)

	// The client reads only once the shutdown has begun: Shutdown drives
	// the simulation until the server has stopped, so the client closes
	// from the trace of what arrived (close_notify, then FIN).
	r.shutdown()
	data, err := readAllTLS(tc)
	assert.Equal(t, "last words", string(data))
	assert.ErrorIs(t, err, io.EOF, "close_notify before the FIN")
	assert.True(t, half.EOF() || half.WasReset())
	st := r.srv.Stats()
	assert.Equal(t, int64(1), st.TLS.Failed)
	assert.Zero(t, st.TLS.InProgress)
}

// TestTLSEvictionSim: with WithTLSMaxHandshakes(n), the n+1st handshake
// in progress on a loop drops the oldest; connections that have sent
// nothing hold no handshake; a real client still gets through.
func TestTLSEvictionSim(t *testing.T) {
	rec := newRecorder()
	r := startTLSSim(t, 1, rec, WithLoops(1), WithTLSMaxHandshakes(2))
	hello := clientHello(t)
	var stalled []*sim.Conn
	for range 3 {
		cl := r.dial()
		_, err := cl.Write(hello[:40])
		require.NoError(t, err)
		r.s.k.RunUntilIdle()
		stalled = append(stalled, cl)
	}
	idle := r.dial()
	r.s.k.RunUntilIdle()
	st := r.srv.Stats()
	assert.Equal(t, int64(2), st.TLS.InProgress)
	assert.Equal(t, int64(1), st.TLS.Evicted)
	assert.Equal(t, -1, stalled[0].ServerFD(), "the oldest went")
	assert.GreaterOrEqual(t, stalled[1].ServerFD(), 0)
	assert.GreaterOrEqual(t, idle.ServerFD(), 0, "a silent connection holds no handshake, and is not evicted")

	_, _, tc := r.client(simTLSClientConfig())
	require.NoError(t, tc.Handshake())
	echoTLS(t, tc, []byte("through"))
	st = r.srv.Stats()
	assert.Equal(t, int64(2), st.TLS.Evicted)
	assert.Equal(t, int64(1), st.TLS.Handshakes)
}

// tlsSimScript runs a fixed exchange over a fresh simulation and returns
// the trace and every byte the client received (ciphertext included).
func tlsSimScript(t *testing.T, seed int64) (string, []byte) {
	cryptotest.SetGlobalRandom(t, uint64(seed))
	rec := newRecorder()
	r := startTLSSim(t, seed, rec)
	r.s.Inject(Fault{Op: FaultRead, Short: true, Probability: 0.3})
	r.s.Inject(Fault{Op: FaultWrite, Short: true, Probability: 0.3})
	var received bytes.Buffer
	for i := range 3 {
		_, nc, tc := r.client(simTLSClientConfig())
		require.NoError(t, tc.Handshake())
		echoTLS(t, tc, bytes.Repeat([]byte{byte(i)}, 3000*(i+1)))
		require.NoError(t, tc.Close())
		r.s.k.RunUntilIdle()
		received.Write(nc.received.Bytes())
	}
	r.shutdown()
	return r.s.Trace(), received.Bytes()
}

// TestTLSSimDeterministic: with crypto's randomness seeded
// (testing/cryptotest.SetGlobalRandom: Go 1.26 ignores Config.Rand for key
// generation) and a fixed Config.Time, a run over the simulation is
// reproducible to the byte: the same trace, the same ciphertext.
func TestTLSSimDeterministic(t *testing.T) {
	trace1, bytes1 := tlsSimScript(t, 5)
	trace2, bytes2 := tlsSimScript(t, 5)
	assert.Equal(t, trace1, trace2, "same seed, same trace")
	assert.True(t, bytes.Equal(bytes1, bytes2), "same seed, same records")
	assert.Contains(t, trace1, "TLS done")
	_, bytes3 := tlsSimScript(t, 6)
	assert.False(t, bytes.Equal(bytes1, bytes3), "another seed, other keys")
}

// TestTLSCloseInOpenSim: a Close in OnOpen is honoured over TLS as on
// plain TCP: no OnMessage follows, not even for the data that came with
// the client's Finished, and the client gets close_notify.
func TestTLSCloseInOpenSim(t *testing.T) {
	rec := newRecorder()
	rec.open = func(c *Conn) { _ = c.Close() }
	var msgs int
	rec.msg = func(c *Conn, in *Buffer) {
		msgs++
		in.Discard(in.Len())
	}
	r := startTLSSim(t, 1, rec)
	_, nc, tc := r.client(simTLSClientConfig())
	nc.together = true
	require.NoError(t, tc.Handshake())
	_, err := tc.Write([]byte("ping")) // arrives with the Finished
	require.NoError(t, err)
	data, err := readAllTLS(tc)
	assert.Empty(t, data)
	assert.ErrorIs(t, err, io.EOF, "close_notify")
	assert.Zero(t, msgs, "no OnMessage after a Close in OnOpen")
}

// TestTLSTimeoutsSim: idle and write timeouts and the linger apply over
// TLS as on plain TCP, from the handshake's end, on the loop's clock.
func TestTLSTimeoutsSim(t *testing.T) {
	const d = 5 * time.Second
	t.Run("idle", func(t *testing.T) {
		rec := newRecorder()
		r := startTLSSim(t, 1, rec, WithIdleTimeout(d), WithTLSHandshakeTimeout(time.Hour))
		cl, _, tc := r.client(simTLSClientConfig())
		require.NoError(t, tc.Handshake())
		echoTLS(t, tc, []byte("x"))
		sc := rec.conn(cl)
		r.s.k.Advance(d - time.Millisecond)
		_, closed := rec.closeOf(sc)
		require.False(t, closed)
		r.s.k.Advance(time.Millisecond)
		cr, closed := rec.closeOf(sc)
		require.True(t, closed)
		assert.ErrorIs(t, cr.err, ErrIdleTimeout)
	})
	t.Run("write", func(t *testing.T) {
		rec := newRecorder()
		rec.msg = func(c *Conn, in *Buffer) {
			in.Discard(in.Len())
			_, _ = c.Write(make([]byte, 1<<20)) // more than the client will take
		}
		r := startTLSSim(t, 1, rec, WithWriteTimeout(d))
		cl, _, tc := r.client(simTLSClientConfig())
		require.NoError(t, tc.Handshake())
		cl.SetReceiveWindow(4 << 10)
		_, err := tc.Write([]byte("go"))
		require.NoError(t, err)
		r.s.k.RunUntilIdle()
		sc := rec.conn(cl)
		require.NotNil(t, sc)
		assert.Greater(t, sc.Buffered(), 0, "records waiting for the client")
		r.s.k.Advance(d)
		cr, closed := rec.closeOf(sc)
		require.True(t, closed)
		assert.ErrorIs(t, cr.err, ErrWriteTimeout)
	})
	t.Run("linger", func(t *testing.T) {
		rec := newRecorder()
		rec.msg = func(c *Conn, in *Buffer) {
			_, _ = c.Write(in.Next(in.Len()))
			_ = c.Close()
		}
		r := startTLSSim(t, 1, rec, WithLingerTimeout(d))
		cl, _, tc := r.client(simTLSClientConfig())
		require.NoError(t, tc.Handshake())
		_, err := tc.Write([]byte("bye"))
		require.NoError(t, err)
		r.s.k.RunUntilIdle()
		sc := rec.conn(cl)
		require.NotNil(t, sc)
		_, closed := rec.closeOf(sc)
		assert.False(t, closed, "lingering: the client has not closed")
		assert.True(t, cl.EOF() || cl.Buffered() > 0, "close_notify and FIN sent")
		r.s.k.Advance(d)
		cr, closed := rec.closeOf(sc)
		require.True(t, closed)
		assert.NoError(t, cr.err)
		assert.Equal(t, int64(1), r.srv.Stats().LingerExpired)
		data, err := readAllTLS(tc)
		assert.Equal(t, "bye", string(data))
		assert.ErrorIs(t, err, io.EOF)
	})
}

// TestTLSClientOverSim: a Client with WithTLS dials a Server with WithTLS
// on the same simulation, both sides reactor's, with reads and writes cut
// short: the client's handshake runs on its loop as the server's does,
// Dial returns once OnOpen has run with the handshake done, and the echo
// comes back whole. A server the client cannot verify fails the dial as a
// refused connect does: an error, no OnOpen, no OnClose, counted.
func TestTLSClientOverSim(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		for seed := int64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("trusted=%v/seed=%d", trusted, seed), func(t *testing.T) {
				r := startTLSSim(t, seed, newRecorder())
				r.s.Inject(Fault{Op: FaultRead, Short: true, Probability: 0.5})
				r.s.Inject(Fault{Op: FaultWrite, Short: true, Probability: 0.5})
				cfg := simTLSClientConfig()
				cfg.ServerName = "" // taken from the address dialled
				if !trusted {
					cfg.RootCAs = nil // the system's roots do not know the test's certificate
				}
				crec := newRecorder()
				got := make(chan string, 1)
				crec.msg = func(c *Conn, in *Buffer) {
					if in.Len() >= len("over TLS") {
						got <- string(in.Next(in.Len()))
					}
				}
				cl, err := NewClient(crec, WithDispatcher(r.s.Dispatcher), WithLoops(1),
					WithTLS(cfg), WithLogger(slog.New(slog.DiscardHandler)))
				require.NoError(t, err)
				defer func() { assert.NoError(t, cl.Shutdown(context.Background())) }()

				c, err := cl.Dial(context.Background(), "tcp", simAddr)
				if !trusted {
					var uerr x509.UnknownAuthorityError
					assert.ErrorAs(t, err, &uerr)
					var op *net.OpError
					if assert.ErrorAs(t, err, &op) {
						assert.Equal(t, "dial", op.Op)
					}
					assert.Nil(t, c)
					crec.mu.Lock()
					assert.Empty(t, crec.opened)
					assert.Empty(t, crec.closed)
					crec.mu.Unlock()
					st := cl.Stats()
					assert.Equal(t, int64(1), st.DialErrors)
					assert.Zero(t, st.Dialed)
					assert.Equal(t, int64(1), st.TLS.Failed)
					assert.Zero(t, st.Open)
					return
				}
				require.NoError(t, err)
				require.NotNil(t, c.TLS(), "OnOpen and Dial come after the handshake")
				assert.True(t, c.TLS().HandshakeComplete)
				crec.mu.Lock()
				assert.Contains(t, crec.opened, c)
				crec.mu.Unlock()
				_, err = c.Write([]byte("over TLS"))
				require.NoError(t, err)
				r.s.k.RunUntilIdle()
				select {
				case msg := <-got:
					assert.Equal(t, "over TLS", msg)
				default:
					t.Fatal("no echo")
				}
				assert.Equal(t, int64(1), cl.Stats().TLS.Handshakes)
				assert.Equal(t, int64(1), r.srv.Stats().TLS.Handshakes)
				require.NoError(t, c.Close()) // close_notify, FIN, linger until the server's EOF
				r.s.k.RunUntilIdle()
				cr, ok := crec.closeOf(c)
				require.True(t, ok, "closed")
				assert.NoError(t, cr.err)
			})
		}
	}
}
