package reactor

// The PROXY protocol over the simulation: every header cut at every byte,
// the bytes after it reaching OnMessage unchanged, the addresses the
// connection reports, and the headers that must close the connection
// without OnOpen.

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// proxyV2 builds a version 2 header: command (0 LOCAL, 1 PROXY), the
// family and transport byte, the address block, then TLVs (type, value).
func proxyV2(cmd byte, ft byte, addrs []byte, tlvs ...ProxyTLV) []byte {
	body := append([]byte(nil), addrs...)
	for _, t := range tlvs {
		body = append(body, t.Type)
		body = binary.BigEndian.AppendUint16(body, uint16(len(t.Value)))
		body = append(body, t.Value...)
	}
	h := []byte("\r\n\r\n\x00\r\nQUIT\n")
	h = append(h, 0x20|cmd, ft)
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)))
	return append(h, body...)
}

// proxyAddrs is a version 2 address block: source and destination
// addresses, then ports.
func proxyAddrs(src, dst string) []byte {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	b := s.Addr().AsSlice()
	b = append(b, d.Addr().AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, s.Port())
	return binary.BigEndian.AppendUint16(b, d.Port())
}

func TestProxyHeaderSim(t *testing.T) {
	tlvs := []ProxyTLV{
		{ProxyTLVALPN, []byte("h2")},
		{ProxyTLVAuthority, []byte("example.com")},
		{ProxyTLVUniqueID, []byte{1, 2, 3, 4}},
	}
	cases := []struct {
		name           string
		header         []byte
		version        int
		local          bool
		remote, lAddr  string // "" for the socket's own
		wantTLVs       []ProxyTLV
		withoutPayload bool
	}{
		{name: "v1/TCP4", header: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\n"),
			version: 1, remote: "192.0.2.1:40000", lAddr: "198.51.100.2:443"},
		{name: "v1/TCP6", header: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 40000 443\r\n"),
			version: 1, remote: "[2001:db8::1]:40000", lAddr: "[2001:db8::2]:443"},
		{name: "v1/UNKNOWN", header: []byte("PROXY UNKNOWN\r\n"), version: 1, local: true},
		{name: "v1/UNKNOWN with addresses", header: []byte("PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n"), version: 1, local: true},
		{name: "v2/PROXY/IPv4/TLVs", header: proxyV2(1, 0x11, proxyAddrs("192.0.2.7:51000", "198.51.100.9:8443"), tlvs...),
			version: 2, remote: "192.0.2.7:51000", lAddr: "198.51.100.9:8443", wantTLVs: tlvs},
		{name: "v2/PROXY/IPv6", header: proxyV2(1, 0x21, proxyAddrs("[2001:db8::7]:51000", "[2001:db8::9]:8443")),
			version: 2, remote: "[2001:db8::7]:51000", lAddr: "[2001:db8::9]:8443"},
		{name: "v2/LOCAL", header: proxyV2(0, 0x00, nil), version: 2, local: true},
		{name: "v2/LOCAL, no bytes after it", header: proxyV2(0, 0x00, nil), version: 2, local: true, withoutPayload: true},
	}
	payload := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			r := startSim(t, 1, rec, WithLoops(1), WithProxyProtocol(true))
			// Peeks and reads come up short too: a header may be taken
			// in more pieces than it was sent in.
			r.s.Inject(Fault{Op: FaultRead, Short: true, Probability: 0.5})
			send := append(append([]byte(nil), tc.header...), payload...)
			if tc.withoutPayload {
				send = tc.header
			}
			// split 0: all at once; 1..len-1: the header cut there;
			// len(header): the header alone, then the payload.
			for split := 0; split <= len(tc.header); split++ {
				cl := r.dial()
				if split > 0 {
					_, err := cl.Write(send[:split])
					require.NoError(t, err)
					r.s.k.RunUntilIdle()
					if split < len(tc.header) {
						require.Nil(t, rec.conn(cl), "split %d: opened before the header was complete", split)
					}
				}
				_, err := cl.Write(send[split:])
				require.NoError(t, err)
				r.s.k.RunUntilIdle()
				c := rec.conn(cl)
				require.NotNil(t, c, "split %d: not opened", split)
				if !tc.withoutPayload {
					require.Equal(t, string(payload), string(cl.ReadAll()), "split %d: the bytes after the header", split)
				}
				h := c.ProxyHeader()
				require.NotNil(t, h)
				assert.Equal(t, tc.version, h.Version)
				assert.Equal(t, tc.local, h.Local)
				assert.Equal(t, tc.wantTLVs, h.TLVs)
				if tc.remote != "" {
					assert.Equal(t, tc.remote, c.RemoteAddr().String())
					assert.Equal(t, tc.lAddr, c.LocalAddr().String())
					assert.Equal(t, tc.remote, h.Source.String())
				} else {
					assert.Nil(t, h.Source)
					assert.Equal(t, cl.LocalAddr().String(), c.RemoteAddr().String(), "LOCAL keeps the socket's")
					assert.Equal(t, simAddr, c.LocalAddr().String())
				}
				require.NoError(t, cl.Close())
				r.s.k.RunUntilIdle()
			}
			n := int64(len(tc.header) + 1) // one connection per split
			if tc.wantTLVs != nil {
				n++
				h := proxyHeaderOf(t, r)
				v, ok := h.TLV(ProxyTLVAuthority)
				assert.True(t, ok)
				assert.Equal(t, "example.com", string(v))
				_, ok = h.TLV(ProxyTLVNetNS)
				assert.False(t, ok)
			}
			st := r.srv.Stats()
			assert.Equal(t, n, st.Proxy.Headers)
			if tc.local {
				assert.Equal(t, n, st.Proxy.Local)
			}
			assert.Zero(t, st.Proxy.Failed)
		})
	}
}

// proxyHeaderOf opens one more connection with a v2 header with TLVs and
// returns its header.
func proxyHeaderOf(t *testing.T, r *simRig) *ProxyHeader {
	cl := r.dial()
	_, err := cl.Write(proxyV2(1, 0x11, proxyAddrs("192.0.2.7:1", "192.0.2.8:2"),
		ProxyTLV{ProxyTLVAuthority, []byte("example.com")}))
	require.NoError(t, err)
	r.s.k.RunUntilIdle()
	c := r.rec.conn(cl)
	require.NotNil(t, c)
	h := c.ProxyHeader()
	require.NoError(t, cl.Close())
	r.s.k.RunUntilIdle()
	return h
}

// TestProxyHeaderRejectedSim: every header that cannot be valid closes the
// connection without OnOpen (so without OnClose), as soon as it is known,
// counted in Stats.Proxy.
func TestProxyHeaderRejectedSim(t *testing.T) {
	longV1 := "PROXY TCP6 " + strings.Repeat("1", 100) + "\r\n"
	cases := []struct {
		name    string
		send    []byte
		closeWr bool          // the client ends its side after sending
		wait    time.Duration // virtual time to let pass
		late    bool
	}{
		{name: "no header: plain HTTP", send: []byte("GET / HTTP/1.1\r\n\r\n")},
		{name: "bad v2 signature", send: []byte("\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c0123456789ab")},
		{name: "v1 over 107 bytes", send: []byte(longV1)},
		{name: "v1 without CRLF in 107 bytes", send: []byte("PROXY TCP4 " + strings.Repeat(" ", 120))},
		{name: "v1 bad family", send: []byte("PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n")},
		{name: "v1 bad address", send: []byte("PROXY TCP4 1.2.3.400 1.2.3.5 1 2\r\n")},
		{name: "v2 length beyond the bound", send: append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11"), 0xff, 0xff)},
		{name: "v2 wrong family", send: proxyV2(1, 0x41, proxyAddrs("192.0.2.1:1", "192.0.2.2:2"))},
		{name: "v2 wrong version", send: append([]byte("\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c"), proxyAddrs("192.0.2.1:1", "192.0.2.2:2")...)},
		{name: "v2 addresses cut short", send: proxyV2(1, 0x11, []byte{192, 0, 2, 1})},
		{name: "truncated, then the client's FIN", send: []byte("PROXY TCP4 192.0.2.1 "), closeWr: true},
		{name: "truncated, then silent past the timeout", send: []byte("PROXY TCP4 192.0.2.1 "), wait: DefaultProxyHeaderTimeout, late: true},
		{name: "v2 truncated, then silent past the timeout", send: proxyV2(1, 0x11, proxyAddrs("192.0.2.1:1", "192.0.2.2:2"))[:20], wait: DefaultProxyHeaderTimeout, late: true},
		{name: "nothing at all, past the timeout", wait: DefaultProxyHeaderTimeout, late: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			r := startSim(t, 1, rec, WithLoops(1), WithProxyProtocol(true))
			cl := r.dial()
			if len(tc.send) > 0 {
				_, err := cl.Write(tc.send)
				require.NoError(t, err)
			}
			if tc.closeWr {
				require.NoError(t, cl.CloseWrite())
			}
			r.s.k.RunUntilIdle()
			if tc.wait > 0 {
				assert.False(t, cl.EOF() || cl.WasReset(), "closed before its time")
				r.s.k.Advance(tc.wait - time.Millisecond)
				assert.False(t, cl.EOF() || cl.WasReset(), "closed before its time")
				r.s.k.Advance(time.Millisecond)
				r.s.k.RunUntilIdle()
			}
			cl.ReadAll()
			assert.True(t, cl.EOF() || cl.WasReset(), "the connection is closed")
			opened, closed := rec.counts()
			assert.Zero(t, opened, "no OnOpen")
			assert.Zero(t, closed, "no OnClose")
			st := r.srv.Stats()
			assert.Equal(t, int64(1), st.Proxy.Failed)
			assert.Zero(t, st.Proxy.Headers)
			if tc.late {
				assert.Equal(t, int64(1), st.Proxy.TimedOut)
			} else {
				assert.Zero(t, st.Proxy.TimedOut)
			}
			assert.Zero(t, st.Open)
		})
	}
}

// TestProxyHeaderBeforeTLSSim: the header comes before the ClientHello;
// the handshake then runs as without it, and the connection reports the
// header's addresses, also to GetConfigForClient.
func TestProxyHeaderBeforeTLSSim(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rec := newRecorder()
			r := startTLSSim(t, seed, rec, WithProxyProtocol(true))
			r.s.Inject(Fault{Op: FaultRead, Short: true, Probability: 0.5})
			cl, nc, tc := r.client(simTLSClientConfig())
			nc.together = true
			_, err := nc.Write([]byte("PROXY TCP4 203.0.113.5 203.0.113.6 4321 443\r\n"))
			require.NoError(t, err)
			require.NoError(t, tc.Handshake())
			echoTLS(t, tc, []byte("after the header and the handshake"))
			c := rec.conn(cl)
			require.NotNil(t, c)
			require.NotNil(t, c.TLS())
			assert.Equal(t, "203.0.113.5:4321", c.RemoteAddr().String())
			assert.Equal(t, "203.0.113.6:443", c.LocalAddr().String())
			st := r.srv.Stats()
			assert.Equal(t, int64(1), st.Proxy.Headers)
			assert.Equal(t, int64(1), st.TLS.Handshakes)
		})
	}
}

// TestProxyHeaderShutdownSim: a graceful shutdown drops a connection still
// waiting for its header (it has said nothing a handler saw), and the
// shutdown does not wait for it.
func TestProxyHeaderShutdownSim(t *testing.T) {
	rec := newRecorder()
	r := startSim(t, 1, rec, WithLoops(1), WithProxyProtocol(true))
	cl := r.dial()
	_, err := cl.Write([]byte("PROXY TCP4"))
	require.NoError(t, err)
	r.s.k.RunUntilIdle()
	r.shutdown()
	assert.True(t, cl.EOF() || cl.WasReset())
	opened, _ := rec.counts()
	assert.Zero(t, opened)
	assert.Equal(t, int64(1), r.srv.Stats().Proxy.Failed)
}

// TestProxyOptions: the option's errors.
func TestProxyOptions(t *testing.T) {
	_, err := NewServer("127.0.0.1:0", HandlerFuncs{}, WithProxyProtocol(true), WithProxyHeaderTimeout(-time.Second))
	assert.ErrorContains(t, err, "WithProxyHeaderTimeout")
	_, err = NewClient(HandlerFuncs{}, WithProxyProtocol(true))
	assert.ErrorContains(t, err, "WithProxyProtocol")
}

// shutdownRecorder is a recorder that implements ShutdownHandler: told of
// the shutdown, it goes on serving until its own Close.
type shutdownRecorder struct {
	*recorder
}

func (shutdownRecorder) OnShutdown(*Conn) {}

// TestProxyHeaderArrivingAtShutdownSim: a connection whose header and
// first request arrived just as the graceful shutdown began is not
// dropped: it takes its header, opens, and its ShutdownHandler answers the
// request before closing (an HTTP server's last response). A connection
// that has sent nothing closes at once.
func TestProxyHeaderArrivingAtShutdownSim(t *testing.T) {
	rec := newRecorder()
	rec.msg = func(c *Conn, in *Buffer) {
		_, _ = c.Write(in.Next(in.Len()))
		_ = c.Close()
	}
	r := startSimHandler(t, 1, rec, shutdownRecorder{rec}, WithLoops(1), WithProxyProtocol(true))
	silent := r.dial()
	busy := r.dial()
	r.s.k.RunUntilIdle() // both accepted, waiting for their headers
	// The header and the request arrive, and the loop begins to drain
	// before it has read them: as a task that sends them and then does
	// what Shutdown's order to the loop does, both before the loop next
	// looks at its sockets.
	l := r.srv.loops[0]
	wrote := make(chan error, 1)
	require.NoError(t, l.Submit(func() {
		_, err := busy.Write([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\nlast request"))
		wrote <- err
		l.beginDrain()
	}))
	r.shutdown() // drives the simulation until the server has stopped
	require.NoError(t, <-wrote)
	assert.Equal(t, "last request", string(busy.ReadAll()), "answered, not dropped")
	assert.True(t, busy.EOF(), "then closed in order")
	assert.True(t, silent.EOF() || silent.WasReset())
	opened, _ := rec.counts()
	assert.Equal(t, 1, opened)
	st := r.srv.Stats()
	assert.Equal(t, int64(1), st.Proxy.Headers)
	assert.Equal(t, int64(1), st.Proxy.Failed, "the silent one")
}
