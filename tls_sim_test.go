package reactor

// TLS over the simulation: Go's crypto/tls client runs on the test
// goroutine over a simulated socket, and every read it makes drives the
// simulation until the server has said something. Records are cut
// anywhere: the client writes in random pieces, the server's reads and
// writes come up short (Fault Short), so a record's header, body and tag
// arrive in different reads.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
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
	together bool // write each p at once, without running the server in between
}

func newSimNetConn(k *sim.Kernel, c *sim.Conn, seed uint64) *simNetConn {
	return &simNetConn{k: k, c: c, rnd: rand.New(rand.NewPCG(seed, 7))}
}

func (n *simNetConn) Read(p []byte) (int, error) {
	for tries := 0; ; tries++ {
		if b := n.c.Buffered(); b > 0 && len(p) > 0 {
			return n.c.Read(p[:1+n.rnd.IntN(min(len(p), b))])
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
