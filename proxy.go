// This file holds the PROXY protocol (WithProxyProtocol): the header a load
// balancer such as HAProxy puts before the bytes it relays, to tell the
// server whose connection it is. The header is taken off the connection on
// its loop before anything else happens to it: before the TLS handshake,
// before OnOpen.
//
// The loop peeks at the socket (recv with MSG_PEEK), parses what it sees
// (internal/proxyproto), and then reads exactly the header's bytes, so
// that whatever follows the header stays in the kernel for the TLS layer or
// OnMessage to read as if the header had never been there: no bytes are
// handed from one reader to the next. Only a header that arrives in pieces
// is read before it is complete (its bytes are then all header), into a
// small buffer the connection keeps until the rest arrives; leaving them
// in the kernel would make a level-triggered Dispatcher report the socket
// again and again.

package reactor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/proxyproto"
)

// ProxyHeader is what a connection's PROXY protocol header said (see
// WithProxyProtocol), as Conn.ProxyHeader returns it. It must not be
// modified.
type ProxyHeader struct {
	// Version is 1 (the text header) or 2 (the binary one).
	Version int
	// Local reports a header that carries no addresses to use: version 2's
	// LOCAL command (a load balancer's own health check), version 1's
	// UNKNOWN, or version 2 with an unspecified family. The connection's
	// own addresses stand.
	Local bool
	// Source is the address of the client the load balancer relays for,
	// and Dest the address that client connected to: *net.TCPAddr, or
	// *net.UnixAddr for a relayed Unix-socket connection. Nil when Local.
	Source, Dest net.Addr
	// TLVs are version 2's type-length-value extensions, in the order
	// they came (the CRC32C entry, if any, was checked).
	TLVs []ProxyTLV
}

// ProxyTLV is one type-length-value extension of a version 2 header.
type ProxyTLV struct {
	Type  byte
	Value []byte
}

// The TLV types the PROXY protocol specification registers. A load
// balancer sends those it is configured to (HAProxy's send-proxy-v2 with
// proxy-v2-options, for instance).
const (
	ProxyTLVALPN      byte = 0x01 // the ALPN protocol the client negotiated with the balancer
	ProxyTLVAuthority byte = 0x02 // the host name the client asked for (TLS SNI)
	ProxyTLVCRC32C    byte = 0x03 // checksum of the header (checked when present)
	ProxyTLVNoop      byte = 0x04 // padding
	ProxyTLVUniqueID  byte = 0x05 // an opaque identifier of the connection, for logs
	ProxyTLVSSL       byte = 0x20 // the client's TLS connection to the balancer, with sub-TLVs
	ProxyTLVNetNS     byte = 0x30 // the network namespace the connection was accepted in
)

// TLV returns the value of the first extension of type typ.
func (h *ProxyHeader) TLV(typ byte) (value []byte, ok bool) {
	for _, t := range h.TLVs {
		if t.Type == typ {
			return t.Value, true
		}
	}
	return nil, false
}

// DefaultProxyHeaderTimeout is how long a connection has to send its
// PROXY header when WithProxyHeaderTimeout is not given.
const DefaultProxyHeaderTimeout = 5 * time.Second

// maxProxyHeader bounds a version 2 header, its addresses and TLVs
// together. HAProxy's own limit for what it sends is smaller; a longer one
// closes the connection. (A version 1 header is at most 107 bytes.)
const maxProxyHeader = 4096

// errProxyHeader is why a connection whose PROXY header was missing,
// malformed, cut short or late was dropped. It reaches no handler (the
// connection never opened), only the debug log.
var (
	errProxyHeader     = errors.New("reactor: PROXY protocol header")
	errProxyHeaderLate = fmt.Errorf("%w: timed out", errProxyHeader)
)

// proxyState is a connection's PROXY header: the part received so far,
// then the header. Owned by the loop; header is written under Conn.mu,
// which ProxyHeader takes.
type proxyState struct {
	partial []byte // the header's first bytes, while it is incomplete
	header  *ProxyHeader
}

// ProxyHeader returns what the connection's PROXY protocol header said,
// or nil on a server without WithProxyProtocol (and on dialled
// connections). Safe from any goroutine; the header must not be modified.
func (c *Conn) ProxyHeader() *ProxyHeader {
	c.mu.Lock()
	defer c.mu.Unlock()
	if x := c.x; x != nil && x.proxy != nil {
		return x.proxy.header
	}
	return nil
}

// proxyAddr returns the header's source (remote) or destination address
// for RemoteAddr and LocalAddr, or nil when the connection has none (no
// header, or a LOCAL one). Safe from any goroutine: the bit is read
// atomically, so a connection without a header pays no lock.
func (c *Conn) proxyAddr(remote bool) net.Addr {
	if !c.has(sharedProxied) {
		return nil
	}
	h := c.ProxyHeader()
	if remote {
		return h.Source
	}
	return h.Dest
}

// startProxy makes an accepted connection wait for its PROXY header
// before it goes on to its TLS handshake or its OnOpen. Loop goroutine.
func (c *Conn) startProxy() {
	l := c.loop
	x := c.ext()
	c.mu.Lock()
	x.proxy = &proxyState{}
	c.mu.Unlock()
	c.beginPreface(l.g.cfg.proxyHeaderTimeout)
}

// beginPreface puts a connection that has not opened into its handshake
// state, for its PROXY header or its TLS handshake, with that phase's
// deadline d (none when 0). A connection accepted as the server began its
// graceful shutdown is closed instead if it has received nothing (see
// prefaceHasInput); beginPreface then reports false. Loop goroutine.
func (c *Conn) beginPreface(d time.Duration) bool {
	l := c.loop
	c.state = connHandshake
	if l.draining && !c.prefaceHasInput() {
		c.closeNow(l.closedErr()) // accepted as the server began its shutdown, and silent
		return false
	}
	if d > 0 {
		c.startPhase(d)
	}
	return true
}

// prefaceHasInput reports whether a connection that has not opened yet
// (its PROXY header or TLS handshake under way) has received anything
// from its peer: bytes taken already, or waiting in the kernel (a peek of
// one byte). A graceful shutdown lets such a connection go on to open and
// answer what it was sent, and closes the others. A client's handshake
// (a dial this process made) has nothing of a peer's to lose. Loop
// goroutine.
func (c *Conn) prefaceHasInput() bool {
	if x := c.x; x != nil {
		if p := x.proxy; p != nil && p.header == nil && len(p.partial) > 0 {
			return true
		}
		if t := x.tls; t != nil {
			if t.client {
				return false
			}
			if t.resume != nil {
				return true // its handshake has begun: the ClientHello came
			}
		}
	}
	l := c.loop
	n, _ := l.k.Peek(c.ch.fd, l.readBuf[:1])
	return n > 0
}

// proxyPending reports whether the connection still waits for its PROXY
// header. Loop goroutine.
func (c *Conn) proxyPending() bool {
	x := c.x
	return x != nil && x.proxy != nil && x.proxy.header == nil
}

// readProxyHeader takes what has arrived of the PROXY header: it peeks,
// parses, and reads the header's bytes, no more. A header that cannot be
// valid, or a connection that ends before its header does, is dropped at
// once. Loop goroutine.
func (c *Conn) readProxyHeader() {
	l := c.loop
	p := c.x.proxy
	buf := l.readBuf[:min(len(l.readBuf), maxProxyHeader)]
	n, err := l.k.Peek(c.ch.fd, buf)
	switch {
	case n > 0:
	case err == nil:
		c.closeNow(fmt.Errorf("%w: the connection ended after %d bytes of it", errProxyHeader, len(p.partial)))
		return
	case err == unix.EAGAIN || err == unix.EINTR:
		return
	default:
		c.closeNow(c.opError("read", err))
		return
	}
	seen := buf[:n]
	if len(p.partial) > 0 {
		seen = append(p.partial[:len(p.partial):len(p.partial)], seen...)
	}
	hdr, size, err := proxyproto.Parse(seen, maxProxyHeader)
	if err != nil {
		c.closeNow(fmt.Errorf("%w: %w", errProxyHeader, err))
		return
	}
	var h *ProxyHeader
	want := n // incomplete: every byte seen is the header's
	if size > 0 {
		h = newProxyHeader(&hdr) // copied: hdr points into buf
		want = size - len(p.partial)
	}
	got, err := l.k.Read(c.ch.fd, buf[:want])
	if got > 0 {
		l.bytesRead(got)
	}
	switch {
	case got == want && h != nil:
		c.proxied(h)
	case got > 0:
		// The header goes on past these bytes (or a short read took
		// only part of it): keep them, parse again when more arrive.
		p.partial = append(p.partial, buf[:got]...)
	case err == nil:
		c.closeNow(fmt.Errorf("%w: the connection ended after %d bytes of it", errProxyHeader, len(p.partial)))
	case err != unix.EAGAIN && err != unix.EINTR:
		c.closeNow(c.opError("read", err))
	}
}

// proxied records the connection's header and lets it go on: to its TLS
// handshake, or to OnOpen.
func (c *Conn) proxied(h *ProxyHeader) {
	l := c.loop
	c.endPhase()
	p := c.x.proxy
	p.partial = nil
	c.mu.Lock()
	p.header = h
	if !h.Local {
		c.setLocked(sharedProxied)
	}
	c.mu.Unlock()
	if a, ok := h.Source.(*net.TCPAddr); ok {
		// The peer the loop's logs and trace name, as RemoteAddr does.
		ap := a.AddrPort()
		c.raddr, c.rport = ap.Addr().As16(), ap.Port()
	}
	bump(&l.stats.proxyHeaders, 1)
	if h.Local {
		bump(&l.stats.proxyLocal, 1)
	}
	if l.tracing {
		l.trace("PROXY v%d fd=%d local=%v from=%v", h.Version, c.ch.fd, h.Local, h.Source)
	}
	c.afterProxy()
}

// proxyFailed counts and logs a connection dropped before its PROXY
// header was complete. Loop goroutine.
func (c *Conn) proxyFailed(err error) {
	l := c.loop
	bump(&l.stats.proxyFailed, 1)
	if errors.Is(err, errProxyHeaderLate) {
		bump(&l.stats.proxyTimedOut, 1)
	}
	l.log.Debug("reactor: PROXY header", "loop", l.name, "peer", c.peer(), "err", err)
	if l.tracing {
		l.trace("PROXY failed fd=%d err=%v", c.ch.fd, err)
	}
}

// newProxyHeader copies a parsed header out of the bytes it was parsed
// from: one allocation for the values of all its TLVs.
func newProxyHeader(hdr *proxyproto.Header) *ProxyHeader {
	h := &ProxyHeader{Version: hdr.Version, Local: hdr.Local}
	switch {
	case hdr.Local:
	case hdr.Source.IsValid():
		h.Source = net.TCPAddrFromAddrPort(unmapped(hdr.Source))
		h.Dest = net.TCPAddrFromAddrPort(unmapped(hdr.Dest))
	default:
		h.Source = &net.UnixAddr{Name: hdr.UnixSource, Net: "unix"}
		h.Dest = &net.UnixAddr{Name: hdr.UnixDest, Net: "unix"}
	}
	if len(hdr.TLVs) > 0 {
		size := 0
		for _, t := range hdr.TLVs {
			size += len(t.Value)
		}
		values := make([]byte, 0, size)
		h.TLVs = make([]ProxyTLV, len(hdr.TLVs))
		for i, t := range hdr.TLVs {
			values = append(values, t.Value...)
			h.TLVs[i] = ProxyTLV{Type: t.Type, Value: values[len(values)-len(t.Value) : len(values) : len(values)]}
		}
	}
	return h
}

// unmapped returns ap with an IPv4-mapped IPv6 address as IPv4.
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
