// This file holds outbound connections: EventLoop.Dial, and the dialer that
// carries one dial from its start to an open Conn or a failure report —
// the address, a name lookup off the loop if it needs one, a non-blocking
// connect(2) whose end the loop sees as writability, SO_ERROR, and the
// timeout. A dialer is owned by its loop and lives only while it dials: the
// Conn it makes carries nothing of it.

package reactor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DialErrorHandler is an optional interface a Handler given to
// EventLoop.Dial may implement to learn that the dial failed. A dial ends
// in exactly one of two ways, reported on the dialling loop: OnOpen of
// the new connection, or OnDialError with why it failed (a *net.OpError
// with Op "dial" wrapping ECONNREFUSED, ErrDialTimeout, a *net.DNSError,
// ErrServerClosed or ErrClientClosed when the loop stopped first, ...).
// A dial that failed never produced a connection, so no OnClose follows:
// OnOpen and OnClose stay paired. Without this interface a failure is
// only logged.
type DialErrorHandler interface {
	OnDialError(err error)
}

// DialOption configures one EventLoop.Dial.
type DialOption func(*dialConfig)

type dialConfig struct {
	timeout time.Duration
	set     bool
	tls     *tls.Config
}

// DialTimeout bounds this dial, instead of the WithDialTimeout of the loop's
// Server or Client: from the call until the connection is open, name
// resolution included. 0 means no timeout of ours.
func DialTimeout(d time.Duration) DialOption {
	return func(c *dialConfig) { c.timeout, c.set = d, true }
}

// DialTLS makes this dial a TLS client's with the standard library's
// crypto/tls and cfg, as WithTLS does for a Client's dials: OnOpen follows
// the handshake, and a handshake that fails ends the dial as a connect
// that fails does (OnDialError, no OnOpen, no OnClose). cfg.ServerName, if
// empty, is taken from the address dialled. nil means plain TCP. By
// default a dial on a Client's loop uses the Client's WithTLS config, and
// one on a Server's loop is plain: a server's WithTLS is its own side of
// its accepted connections, not what its upstreams speak.
func DialTLS(cfg *tls.Config) DialOption {
	return func(c *dialConfig) { c.tls = cfg }
}

// errStandaloneDial is returned by Dial on a loop made by NewEventLoop,
// which serves no connections.
var errStandaloneDial = errors.New("reactor: EventLoop.Dial: a standalone loop serves no connections; dial on a loop of a Server or a Client")

// Dial connects to address on network without blocking the loop, and
// makes the connection one of l's, served by h: the new connection lives
// on l, so a handler that relays between it and a connection of l (a
// proxy) needs no locks. network is "tcp", "tcp4", "tcp6" or "unix".
// For TCP, address is "host:port" with a numeric port; an IP literal,
// "localhost" or an empty host (both the loopback addresses) is used as
// it is, any other host name is resolved off the loop (net.DefaultResolver)
// and its addresses are tried in turn. For "unix", address is the socket's
// path ("@name" for Linux's abstract namespace).
//
// Dial returns at once. It returns an error only when the dial cannot
// begin: l is a standalone loop (NewEventLoop), h is nil, an option is
// invalid, or l has stopped (ErrLoopStopped). Otherwise the result is
// reported later on l, never within the call: h.OnOpen(c) once the
// connection is established (then the connection is served like an
// accepted one, with its Server's or Client's options: high-water mark,
// input limit, idle and write timeouts, TCP_NODELAY, keep-alive), or, if
// it failed, OnDialError when h implements DialErrorHandler (see there).
// The dial is bounded by WithDialTimeout, or by DialTimeout among opts. A
// graceful Shutdown of the loop's Server or Client ends the dials in
// progress with ErrServerClosed or ErrClientClosed; over a Sim, host names
// fail (the simulation has no DNS) and the dial is deterministic.
//
// Safe from any goroutine: a callback, a task or a timer of l (the usual
// case, with c.Loop().Dial), or elsewhere.
func (l *EventLoop) Dial(network, address string, h Handler, opts ...DialOption) error {
	if l.g == nil {
		return errStandaloneDial
	}
	if h == nil {
		return errors.New("reactor: EventLoop.Dial: nil Handler")
	}
	cfg := dialConfig{timeout: l.g.cfg.dialTimeout, tls: l.g.dialTLS}
	for _, o := range opts {
		if o == nil {
			return errors.New("reactor: EventLoop.Dial: nil DialOption")
		}
		o(&cfg)
	}
	if cfg.timeout < 0 {
		return fmt.Errorf("reactor: DialTimeout(%v): must be >= 0", cfg.timeout)
	}
	d := newDialer(l, network, address, h, cfg.timeout, context.Background())
	d.tls = cfg.tls
	return l.Submit(d.start)
}

// dialer is one dial in progress. It is registered in its loop's channel
// map under its socket while the connect is under way, so the loop hands
// it the socket's readiness; when the connect completes, the Conn it makes
// takes that place. Owned by the loop goroutine, but for the fields set
// before start, which are read-only.
type dialer struct {
	ch      channel // the socket being connected; fd -1 while there is none
	loop    *EventLoop
	h       Handler
	network string
	address string
	timeout time.Duration
	ctx     context.Context          // bounds a name lookup: Client.Dial's context, or Background
	report  func(c *Conn, err error) // Client.Dial's: told instead of the handler
	tls     *tls.Config              // nil: plain TCP

	host     string           // the name being looked up, for errors
	addrs    []netip.AddrPort // TCP: the addresses still to try; addrs[0] is being tried
	firstErr error            // how the first address failed: reported if every one does
	timer    *Timer           // the dial timeout
	cancel   context.CancelFunc
	done     bool
	conn     *Conn   // once connected: the connection, for an abort during its TLS handshake
	prev     *dialer // the loop's list of dials in progress (EventLoop.dials)
	next     *dialer
}

func newDialer(l *EventLoop, network, address string, h Handler, timeout time.Duration, ctx context.Context) *dialer {
	return &dialer{
		ch:      channel{fd: -1},
		loop:    l,
		h:       h,
		network: network,
		address: address,
		timeout: timeout,
		ctx:     ctx,
	}
}

// start begins the dial on its loop: the timeout starts, then the address
// is worked out and either connected to at once or looked up first.
func (d *dialer) start() {
	l := d.loop
	l.addDial(d)
	l.numConns.Add(1) // the balancer counts dials in progress too
	if l.tracing {
		l.trace("dial %s %s", d.network, d.address)
	}
	if l.draining {
		d.fail(l.closedErr())
		return
	}
	if d.timeout > 0 {
		d.timer = l.AfterFunc(d.timeout, d.timedOut)
	}
	switch d.network {
	case "unix":
		d.connect()
		return
	case "tcp", "tcp4", "tcp6":
	default:
		d.fail(net.UnknownNetworkError(d.network))
		return
	}
	host, port, err := splitHostPort(d.address)
	if err != nil {
		d.fail(err)
		return
	}
	if ips, ok := literalHost(d.network, host); ok {
		d.setAddrs(ips, port)
		return
	}
	d.host = host
	lookup := l.g.lookup
	if lookup == nil {
		d.fail(&net.DNSError{Err: "no such host (the simulation has no DNS)", Name: host, IsNotFound: true})
		return
	}
	ctx, cancel := context.WithCancel(d.ctx)
	d.cancel = cancel
	l.g.resolvers.Add(1)
	go d.resolve(ctx, lookup, host, port)
}

// splitHostPort splits a TCP address into its host and numeric port.
func splitHostPort(address string) (string, uint16, error) {
	host, ps, err := net.SplitHostPort(address)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", ps)
	}
	return host, uint16(p), nil
}

// literalHost returns the addresses of a host that needs no lookup: an IP
// literal, or "localhost" and the empty host, which mean the loopback
// addresses (IPv4 first, as /etc/hosts usually has them), as package net
// dials them. ok is false for a name to look up. An address of the wrong
// family for network gives none, which the dial reports.
func literalHost(network, host string) (ips []netip.Addr, ok bool) {
	if host == "" || strings.EqualFold(host, "localhost") {
		ips = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
	} else if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip.Unmap()}
	} else {
		return nil, false
	}
	return filterFamily(network, ips), true
}

// filterFamily keeps the addresses network can reach: IPv4 for "tcp4",
// IPv6 for "tcp6", both for "tcp".
func filterFamily(network string, ips []netip.Addr) []netip.Addr {
	out := ips[:0:0]
	for _, ip := range ips {
		ip = ip.Unmap()
		if (network == "tcp4" && !ip.Is4()) || (network == "tcp6" && !ip.Is6()) {
			continue
		}
		out = append(out, ip)
	}
	return out
}

// resolve looks a host name up, off the loop, and hands the result back
// to it. If the loop has stopped meanwhile, the stop has already failed the
// dial (and cancelled ctx).
func (d *dialer) resolve(ctx context.Context, lookup func(context.Context, string, string) ([]netip.Addr, error), host string, port uint16) {
	defer d.loop.g.resolvers.Done()
	network := "ip"
	switch d.network {
	case "tcp4":
		network = "ip4"
	case "tcp6":
		network = "ip6"
	}
	ips, err := lookup(ctx, network, host)
	_ = d.loop.Submit(func() { d.resolved(ips, port, err) }) // a stopped loop failed d already
}

// resolved goes on with the dial once its name is looked up.
func (d *dialer) resolved(ips []netip.Addr, port uint16, err error) {
	if d.done {
		return
	}
	d.cancel()
	d.cancel = nil
	if err != nil {
		d.fail(err)
		return
	}
	d.setAddrs(filterFamily(d.network, ips), port)
}

// setAddrs sets the addresses to try and connects to the first.
func (d *dialer) setAddrs(ips []netip.Addr, port uint16) {
	if len(ips) == 0 {
		name := d.host
		if name == "" {
			name = d.address
		}
		d.fail(&net.AddrError{Err: "no suitable address for " + d.network, Addr: name})
		return
	}
	d.addrs = make([]netip.AddrPort, len(ips))
	for i, ip := range ips {
		d.addrs[i] = netip.AddrPortFrom(ip, port)
	}
	d.connect()
}

// target returns the socket address of the address being tried.
func (d *dialer) target() unix.Sockaddr {
	if d.network == "unix" {
		return &unix.SockaddrUnix{Name: d.address}
	}
	ap := d.addrs[0]
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// connect starts a non-blocking connect to the address being tried, and
// to the next ones while they fail at once.
func (d *dialer) connect() {
	l := d.loop
	for !d.done {
		fd, err := l.k.Connect(d.target())
		switch err {
		case nil:
			d.ch.fd = fd
			d.established()
			return
		case unix.EINPROGRESS:
			d.ch.fd = fd
			if err := l.d.Add(fd, EventWrite); err != nil {
				d.fail(err)
				return
			}
			d.ch.interest = EventWrite
			l.channels.set(fd, d)
			return
		}
		d.attemptFailed(err)
	}
}

// attemptFailed moves on to the next address after the one being tried
// failed with err, or fails the dial with the first address's error when
// there is none left.
func (d *dialer) attemptFailed(err error) {
	if d.firstErr == nil {
		d.firstErr = err
	}
	if len(d.addrs) > 1 {
		d.addrs = d.addrs[1:]
		return
	}
	d.fail(d.firstErr)
}

// handleEvent learns how the connect ended, once the loop reports its
// socket writable (or failed): from SO_ERROR, which the kernel sets when
// the attempt ends, as connect(2) says to do for a non-blocking socket.
func (d *dialer) handleEvent(Events) {
	l := d.loop
	soerr, err := l.k.GetsockoptInt(d.ch.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		err = os.NewSyscallError("getsockopt", err)
	} else {
		switch e := unix.Errno(soerr); e {
		case 0:
			d.established()
			return
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			return // not ended yet
		default:
			err = os.NewSyscallError("connect", e)
		}
	}
	d.closeSocket()
	d.attemptFailed(err)
	d.connect()
}

// established turns the connected socket into an open connection of the
// loop: it registers for reading, takes the dialer's place in the channel
// map, and runs OnOpen; a Client.Dial waiting for it is then told, even if
// OnOpen panicked.
func (d *dialer) established() {
	l := d.loop
	fd := d.ch.fd
	var err error
	if d.ch.interest == 0 {
		err = l.d.Add(fd, EventRead) // connected at once, never registered
	} else {
		err = l.d.Modify(fd, EventRead)
	}
	if err != nil {
		d.fail(err)
		return
	}
	var peer netip.AddrPort // none for "unix": Conn.RemoteAddr asks the kernel
	if d.network != "unix" {
		peer = d.addrs[0]
		l.g.setSockopts(fd)
	}
	d.finish()
	c := newConn(l, fd, peer, d.h)
	c.ch.interest = EventRead
	c.ch.unix = d.network == "unix"
	l.g.stats.open.Add(1)
	d.conn = c
	c.openDialled(d.address, d.tls, d.opened)
}

// opened is told how a connected dial's opening ended: right after OnOpen
// (even if OnOpen panicked), or, over TLS, with the handshake's error once
// the connection has been dropped without OnOpen or OnClose. A failed
// handshake is a failed dial: counted and reported as a connect that
// failed is.
func (d *dialer) opened(c *Conn, err error) {
	if err != nil {
		d.loop.g.stats.dialErrors.Add(1)
		d.tell(&net.OpError{Op: "dial", Net: d.network, Addr: d.addr(), Err: err})
		return
	}
	d.loop.g.stats.dialed.Add(1)
	if d.report != nil {
		d.report(c, nil)
	}
}

// timedOut fails a dial that is still in progress when its timeout fires.
func (d *dialer) timedOut() {
	if !d.done {
		d.timer = nil // firing now: nothing to stop
		d.fail(ErrDialTimeout)
	}
}

// abort ends a Client.Dial whose context ended first: its error is the
// context's, as it is. A connection still in its TLS handshake is dropped
// (its handshake's end reports the failure); one that has opened is the
// caller's to close.
func (d *dialer) abort(err error) {
	switch {
	case !d.done:
		d.fail(err)
	case d.conn != nil && d.conn.state == connHandshake:
		d.conn.closeNow(err)
	}
}

// fail ends the dial with err: the socket, if there is one, is closed, and
// the failure is reported (to Client.Dial, or to the handler's
// OnDialError, or else logged). Everything the dial held is released
// before the report, so a panicking OnDialError leaks nothing.
func (d *dialer) fail(err error) {
	l := d.loop
	if d.ch.fd >= 0 {
		d.closeSocket()
	}
	d.finish()
	l.numConns.Add(-1)
	l.g.stats.dialErrors.Add(1)
	if d.report == nil || (err != context.Canceled && err != context.DeadlineExceeded) {
		err = &net.OpError{Op: "dial", Net: d.network, Addr: d.addr(), Err: err}
	}
	d.tell(err)
}

// tell reports a failed dial: to Client.Dial, or to the handler's
// OnDialError, or else in the log. Loop goroutine.
func (d *dialer) tell(err error) {
	l := d.loop
	if l.tracing {
		l.trace("dial failed %s %s: %v", d.network, d.address, err)
	}
	switch eh, ok := d.h.(DialErrorHandler); {
	case d.report != nil:
		d.report(nil, err)
	case ok:
		eh.OnDialError(err)
	default:
		l.log.Warn("reactor: dial failed", "loop", l.name, "network", d.network, "address", d.address, "err", err)
	}
}

// addr returns the address being tried, for errors: nil before a name is
// resolved.
func (d *dialer) addr() net.Addr {
	switch {
	case d.network == "unix":
		return &net.UnixAddr{Name: d.address, Net: "unix"}
	case len(d.addrs) > 0:
		return net.TCPAddrFromAddrPort(d.addrs[0])
	}
	return nil
}

// closeSocket closes the socket of a failed attempt.
func (d *dialer) closeSocket() {
	l := d.loop
	fd := d.ch.fd
	if d.ch.interest != 0 {
		_ = l.d.Delete(fd) // closed next, which deregisters it anyway
		l.channels.del(fd)
		d.ch.interest = 0
	}
	_ = l.k.Close(fd) // a connecting socket has nothing to lose
	d.ch.fd = -1
}

// finish marks the dial ended: its timer and any lookup stop, and it
// leaves the loop's list.
func (d *dialer) finish() {
	d.done = true
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.cancel != nil {
		d.cancel()
		d.cancel = nil
	}
	d.loop.removeDial(d)
}

// addDial puts d on l's list of dials in progress. A list, not a map, so
// that a stop fails them in a deterministic order. Loop goroutine.
func (l *EventLoop) addDial(d *dialer) {
	d.next = l.dials
	if l.dials != nil {
		l.dials.prev = d
	}
	l.dials = d
}

// removeDial takes d off l's list. Loop goroutine.
func (l *EventLoop) removeDial(d *dialer) {
	if d.prev != nil {
		d.prev.next = d.next
	} else if l.dials == d {
		l.dials = d.next
	}
	if d.next != nil {
		d.next.prev = d.prev
	}
	d.prev, d.next = nil, nil
}

// failDials ends every dial in progress on l with err: the loop is
// stopping. A panic in an OnDialError ends only that report. Loop
// goroutine.
func (l *EventLoop) failDials(err error) {
	for l.dials != nil {
		d := l.dials
		l.guard(func() { d.fail(err) })
	}
}
