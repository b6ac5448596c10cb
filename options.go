// This file holds the functional options of a Server and a Client and the
// configuration they build. A config is filled in by NewServer or NewClient
// before any goroutine starts and is read-only afterwards.

package reactor

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"time"
)

// Option configures a Server or a Client. Options are applied in order by
// NewServer or NewClient, which validate the result and return an error for
// nonsense values, and, for a Client, for the options that only make sense
// for a server (see NewClient).
type Option func(*config)

type config struct {
	loops          int
	dispatcher     DispatcherFactory
	reusePort      bool
	balancer       LoadBalancer
	noDelay        bool
	keepAlive      time.Duration
	readBufferSize int
	highWaterMark  int
	maxInputSize   int
	maxConns       int
	idleTimeout    time.Duration
	writeTimeout   time.Duration
	lingerTimeout  time.Duration
	dialTimeout    time.Duration
	lockOSThread   bool
	recoverPanics  bool
	backlog        int
	listeners      []net.Listener // WithListener(s); none: NewServer binds its address
	listenersSet   bool           // WithListener(s) was given (so WithListener(nil) is an error)
	logger         *slog.Logger

	tlsConfig           *tls.Config // nil: plain TCP
	tlsHandshakeTimeout time.Duration
	tlsMaxHandshakes    int // per loop
	proxyProtocol       bool
	proxyHeaderTimeout  time.Duration
}

// Defaults; each option's documentation repeats the one it changes.
const (
	DefaultKeepAlive      = 15 * time.Second
	DefaultReadBufferSize = defaultReadBufferSize
	DefaultHighWaterMark  = 4 << 20
	DefaultMaxInputSize   = 4 << 20
	DefaultLingerTimeout  = 5 * time.Second
	DefaultDialTimeout    = 30 * time.Second
	// LingerMaxBytes is how much input a lingering connection reads and
	// discards before it gives up on the peer's EOF and resets the
	// connection (see WithLingerTimeout).
	LingerMaxBytes = 4 << 20

	DefaultTLSHandshakeTimeout = 10 * time.Second
	DefaultTLSMaxHandshakes    = 1024
)

// maxKeepAlive is the longest keep-alive Linux accepts: TCP_KEEPIDLE and
// TCP_KEEPINTVL fail with EINVAL above 32767 seconds (MAX_TCP_KEEPIDLE,
// MAX_TCP_KEEPINTVL in include/net/tcp.h). Checked up front, because the
// failure would otherwise only be logged, per connection, at debug level,
// leaving keep-alive on with the system's default idle time.
const maxKeepAlive = 32767 * time.Second

func defaultConfig() config {
	return config{
		loops:          runtime.GOMAXPROCS(0),
		dispatcher:     defaultDispatcher,
		balancer:       RoundRobin,
		noDelay:        true,
		keepAlive:      DefaultKeepAlive,
		readBufferSize: DefaultReadBufferSize,
		highWaterMark:  DefaultHighWaterMark,
		maxInputSize:   DefaultMaxInputSize,
		lingerTimeout:  DefaultLingerTimeout,
		dialTimeout:    DefaultDialTimeout,
		recoverPanics:  true,
		logger:         slog.Default(),

		tlsHandshakeTimeout: DefaultTLSHandshakeTimeout,
		tlsMaxHandshakes:    DefaultTLSMaxHandshakes,
		proxyHeaderTimeout:  DefaultProxyHeaderTimeout,
	}
}

func (c *config) validate() error {
	switch {
	case c.loops < 0:
		return fmt.Errorf("reactor: WithLoops(%d): must be >= 0", c.loops)
	case c.loops > 1024:
		return fmt.Errorf("reactor: WithLoops(%d): more than 1024 loops", c.loops)
	case c.dispatcher == nil:
		return fmt.Errorf("reactor: WithDispatcher(nil)")
	case c.balancer < RoundRobin || c.balancer > SourceHash:
		return fmt.Errorf("reactor: WithLoadBalancer: unknown balancer %d", int(c.balancer))
	case c.keepAlive < 0:
		return fmt.Errorf("reactor: WithKeepAlive(%v): must be >= 0", c.keepAlive)
	case c.keepAlive > 0 && c.keepAlive < time.Second:
		return fmt.Errorf("reactor: WithKeepAlive(%v): the kernel counts keep-alive in whole seconds", c.keepAlive)
	case c.keepAlive > maxKeepAlive:
		return fmt.Errorf("reactor: WithKeepAlive(%v): the kernel takes at most %v", c.keepAlive, maxKeepAlive)
	case c.readBufferSize < 512 || c.readBufferSize > 64<<20:
		return fmt.Errorf("reactor: WithReadBufferSize(%d): must be between 512 B and 64 MiB", c.readBufferSize)
	case c.highWaterMark < 0:
		return fmt.Errorf("reactor: WithHighWaterMark(%d): must be >= 0", c.highWaterMark)
	case c.maxInputSize < 0:
		return fmt.Errorf("reactor: WithMaxInputSize(%d): must be >= 0", c.maxInputSize)
	case c.maxConns < 0:
		return fmt.Errorf("reactor: WithMaxConns(%d): must be >= 0", c.maxConns)
	case c.idleTimeout < 0:
		return fmt.Errorf("reactor: WithIdleTimeout(%v): must be >= 0", c.idleTimeout)
	case c.writeTimeout < 0:
		return fmt.Errorf("reactor: WithWriteTimeout(%v): must be >= 0", c.writeTimeout)
	case c.lingerTimeout < 0:
		return fmt.Errorf("reactor: WithLingerTimeout(%v): must be >= 0", c.lingerTimeout)
	case c.dialTimeout < 0:
		return fmt.Errorf("reactor: WithDialTimeout(%v): must be >= 0", c.dialTimeout)
	case c.backlog < 0:
		return fmt.Errorf("reactor: WithBacklog(%d): must be >= 0", c.backlog)
	case c.logger == nil:
		return fmt.Errorf("reactor: WithLogger(nil)")
	case c.tlsHandshakeTimeout < 0:
		return fmt.Errorf("reactor: WithTLSHandshakeTimeout(%v): must be >= 0", c.tlsHandshakeTimeout)
	case c.tlsMaxHandshakes < 1:
		return fmt.Errorf("reactor: WithTLSMaxHandshakes(%d): must be >= 1", c.tlsMaxHandshakes)
	case c.proxyHeaderTimeout < 0:
		return fmt.Errorf("reactor: WithProxyHeaderTimeout(%v): must be >= 0", c.proxyHeaderTimeout)
	}
	return c.validateListeners()
}

// validateServer checks what only a server needs: a TLS configuration
// that can present a certificate (a client's may have none).
func (c *config) validateServer() error {
	if t := c.tlsConfig; t != nil && len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetConfigForClient == nil {
		return errors.New("reactor: WithTLS: the config has no Certificates, GetCertificate or GetConfigForClient: a server has nothing to present")
	}
	return nil
}

// validateListeners checks what WithListener or WithListeners gave.
func (c *config) validateListeners() error {
	if !c.listenersSet {
		return nil
	}
	switch n := len(c.listeners); {
	case n == 0:
		return fmt.Errorf("reactor: WithListeners(): no listener")
	case n == 1 && isNilListener(c.listeners[0]):
		return fmt.Errorf("reactor: WithListener(nil)")
	case slices.ContainsFunc(c.listeners, isNilListener):
		return fmt.Errorf("reactor: WithListeners: a nil listener")
	case n > 1 && !c.reusePort:
		return fmt.Errorf("reactor: WithListeners with %d listeners needs WithReusePort: each listener gets a loop of its own", n)
	}
	return nil
}

// validateClient rejects, for NewClient, the options that only mean
// something to a server: there is no listening socket (WithReusePort,
// WithBacklog, WithListener), no connection a client accepts and could refuse
// (WithMaxConns: a client opens exactly the connections it dials), and no
// source address to hash when the client picks a loop for a dial
// (SourceHash).
func (c *config) validateClient() error {
	switch {
	case c.reusePort:
		return fmt.Errorf("reactor: NewClient: WithReusePort applies to a server's listener only")
	case c.backlog != 0:
		return fmt.Errorf("reactor: NewClient: WithBacklog applies to a server's listener only")
	case c.maxConns != 0:
		return fmt.Errorf("reactor: NewClient: WithMaxConns limits accepted connections; a client opens only those it dials")
	case c.balancer == SourceHash:
		return fmt.Errorf("reactor: NewClient: WithLoadBalancer(SourceHash) hashes a client's address; a Client picks a loop per dial with RoundRobin or LeastConns")
	case c.listenersSet:
		return fmt.Errorf("reactor: NewClient: WithListener and WithListeners apply to a server only")
	case c.proxyProtocol:
		return fmt.Errorf("reactor: NewClient: WithProxyProtocol reads a header that load balancers send to a server")
	}
	return nil
}

// WithLoops sets the number of sub-reactors: event loops, each on its own
// goroutine, that serve connections while the main loop only accepts. 0
// selects the single-reactor mode, where one loop accepts and serves
// everything. For a Client, the number of loops its connections are spread
// over; 0 and 1 both mean one. Default: runtime.GOMAXPROCS(0). More loops
// than cores add context switches, not throughput.
func WithLoops(n int) Option { return func(c *config) { c.loops = n } }

// WithDispatcher selects the readiness backend: Epoll, Poll, or a
// simulated network's Dispatcher (Sim.Dispatcher) for deterministic tests.
// The factory is called once per event loop. Default: Epoll on Linux, or
// Poll in a program built with -tags reactor_poll.
func WithDispatcher(f DispatcherFactory) Option { return func(c *config) { c.dispatcher = f } }

// WithReusePort gives every event loop its own SO_REUSEPORT listening socket
// on the server's address, so the kernel spreads new connections across the
// loops and each loop accepts for itself; there is then no main loop and no
// load balancer. Default: false (one listener, accepted by the main loop).
//
// Another process may bind the same address with SO_REUSEPORT while this
// one runs (same user ID): the kernel then spreads connections over the
// sockets of both, which is how a new version can start beside the old one
// (see the README's "Zero-downtime restarts"). Each socket has its own
// accept queue, and closing one resets the connections still queued in it
// unless net.ipv4.tcp_migrate_req is 1 (Linux 5.14 or later), which passes
// them to another socket of the port: a graceful Shutdown logs a warning
// when that is not so. With WithListeners, the server serves the sockets
// it is given, one loop each, instead of binding its own. A server option:
// NewClient rejects it.
func WithReusePort(on bool) Option { return func(c *config) { c.reusePort = on } }

// WithLoadBalancer chooses how the main loop assigns new connections to
// loops: RoundRobin (the default), LeastConns or SourceHash. Ignored with
// WithReusePort or a single loop. A Client uses it to pick the loop of each
// Client.Dial (RoundRobin or LeastConns; SourceHash is an error there).
func WithLoadBalancer(lb LoadBalancer) Option { return func(c *config) { c.balancer = lb } }

// WithTCPNoDelay sets TCP_NODELAY on accepted and dialled TCP connections
// (Nagle's algorithm off). Default: true, as in Go's net package; a server that flushes once per
// loop iteration already coalesces small writes.
func WithTCPNoDelay(on bool) Option { return func(c *config) { c.noDelay = on } }

// WithKeepAlive sets the TCP keep-alive idle time and probe interval of
// accepted and dialled TCP connections, in whole seconds up to 32767 (9h06m07s, Linux's
// limit); 0 disables keep-alive. Default: 15s, as in Go's net package. It
// costs the kernel a timer per connection, not the loop.
func WithKeepAlive(d time.Duration) Option { return func(c *config) { c.keepAlive = d } }

// WithReadBufferSize sets the size of each loop's shared read buffer: the
// most one read(2) takes from a connection. Default: 64 KiB per loop (not per
// connection: connections hold no read buffer of their own unless the
// handler leaves input unconsumed).
func WithReadBufferSize(n int) Option { return func(c *config) { c.readBufferSize = n } }

// WithHighWaterMark sets the backpressure threshold: when a flush leaves
// more than n bytes of output buffered, the connection stops reading until
// the output drains to n/2, and a WatermarkHandler is told. Output is never
// dropped; a Handler that writes only in reply to input therefore keeps
// buffered output within one reply of n. 0 disables backpressure (memory
// then grows with whatever the handler writes). Default: 4 MiB.
func WithHighWaterMark(n int) Option { return func(c *config) { c.highWaterMark = n } }

// WithMaxInputSize limits a connection's unconsumed input: a handler that
// leaves more than n bytes in its input buffer (waiting for a delimiter that
// never comes, say) has its connection closed with ErrInputTooLarge. 0
// removes the limit. Default: 4 MiB.
func WithMaxInputSize(n int) Option { return func(c *config) { c.maxInputSize = n } }

// WithMaxConns limits open connections: beyond n, new connections are
// accepted and closed at once. Connections the server dials (EventLoop.Dial)
// count as open but are never refused. 0 means no limit beyond the
// process's descriptor limit. Default: 0. A server option: NewClient
// rejects it.
func WithMaxConns(n int) Option { return func(c *config) { c.maxConns = n } }

// WithIdleTimeout closes connections that see no bytes in either direction
// for d, with ErrIdleTimeout. 0 disables it; so, in effect, does
// math.MaxInt64, which never fires. Default: 0.
func WithIdleTimeout(d time.Duration) Option { return func(c *config) { c.idleTimeout = d } }

// WithWriteTimeout closes connections whose pending output makes no
// progress for d (a peer that stopped reading), with ErrWriteTimeout. 0
// disables it; so, in effect, does math.MaxInt64, which never fires.
// Default: 0.
func WithWriteTimeout(d time.Duration) Option { return func(c *config) { c.writeTimeout = d } }

// WithLingerTimeout bounds the lingering close (see Conn.Close): after its
// output is flushed, a connection that we close sends FIN and then reads and
// discards input until the peer's EOF, for at most d (and at most
// LingerMaxBytes), before it closes the socket; closing with unread input
// would make the kernel reset the connection and drop output the peer has
// not yet received. Every orderly close by this side lingers: Close, a
// graceful Shutdown, and a peer's half-close answered with CloseWrite then
// Close. Abrupt ends do not: a reset, ErrInputTooLarge, a timeout, a handler
// panic, Server.Close. A lingering connection holds no buffer, only its
// descriptor, and counts as open. After d it is closed as it stands (input
// that arrived is read first, so only input arriving in that instant can
// still cause a reset); Stats.LingerExpired counts those. 0 turns lingering
// off: the socket is closed as soon as the output is flushed. Default: 5s,
// nginx's lingering_timeout; a client that reads its reply and closes, as
// clients do, ends the linger in one round trip.
func WithLingerTimeout(d time.Duration) Option { return func(c *config) { c.lingerTimeout = d } }

// WithDialTimeout bounds every dial made by Client.Dial and EventLoop.Dial
// (unless the dial sets its own, DialTimeout): from the call until the
// connection is open, name resolution included. A dial that takes longer
// fails with an error wrapping ErrDialTimeout, and its socket is closed. It
// runs on the loop's clock (virtual time over a Sim). 0 means no timeout of
// ours: a TCP connect then ends when the kernel gives up (about two
// minutes of SYN retries on Linux). Default: 30s.
func WithDialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// WithLockOSThread locks each event loop's goroutine to its OS thread, for
// CPU pinning or thread-local tuning. Default: false.
func WithLockOSThread(on bool) Option { return func(c *config) { c.lockOSThread = on } }

// WithRecover controls panic isolation. When on (the default), a panic in a
// Handler callback is recovered on the loop, logged with its stack, and ends
// only that connection, whose OnClose receives an error wrapping
// ErrHandlerPanic. The connection ends with a reset (RST: SO_LINGER 0, its
// unsent output dropped), not FIN, so that the peer cannot take a reply the
// panic cut short for a complete one. When off, a panic crashes the program
// as usual.
func WithRecover(on bool) Option { return func(c *config) { c.recoverPanics = on } }

// WithBacklog sets the listen(2) backlog. 0 (the default) uses the system's
// maximum (net.core.somaxconn). A server option: NewClient rejects it.
func WithBacklog(n int) Option { return func(c *config) { c.backlog = n } }

// WithTLS serves every connection over TLS, with the standard library's
// crypto/tls and cfg: whatever crypto/tls offers (TLS 1.2 and 1.3, ALPN,
// SNI with GetCertificate or GetConfigForClient, client certificates,
// session resumption) works as it does for net/http. For a Server, cfg
// must present a certificate; for a Client, cfg.ServerName, if empty, is
// taken from each dialled address. cfg must not be modified once passed
// (crypto/tls's own rule); nil means plain TCP. Default: nil.
//
// The handshake runs on the connection's loop, in a coroutine the loop
// resumes whenever the peer's bytes arrive, so it never blocks the loop
// and costs no goroutine once it is done. OnOpen runs when it has
// succeeded (Conn.TLS then describes it); a handshake that fails or times
// out (WithTLSHandshakeTimeout) ends the connection with no OnOpen and no
// OnClose, is counted in Stats.TLS and logged at debug level only, since
// the internet's scanners cause many. Handlers see plaintext only: input
// is decrypted before OnMessage, output written with Write is encrypted
// on the loop when it is flushed, all Writes of an iteration sealed
// together. Close and CloseWrite send TLS's close_notify before the FIN;
// every option applies as for plain TCP, WithMaxInputSize to the
// plaintext and WithHighWaterMark to plaintext and ciphertext together.
// A TLS connection costs, once its handshake is done, the crypto/tls
// connection state beside the Conn (see the README's TLS section).
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tlsConfig = cfg } }

// WithTLSHandshakeTimeout bounds a TLS handshake (see WithTLS), from the
// moment the connection is accepted (after its PROXY header, with
// WithProxyProtocol; for a Client, once connected) to the handshake's end:
// a peer that sends nothing, or stops half-way, is dropped after d, without
// OnOpen. 0 removes the bound (not advised on a public port). Default: 10s.
func WithTLSHandshakeTimeout(d time.Duration) Option {
	return func(c *config) { c.tlsHandshakeTimeout = d }
}

// WithTLSMaxHandshakes bounds the TLS handshakes in progress on each event
// loop, that is those that have received their first bytes: each holds
// crypto/tls's handshake state and a coroutine's stack (about 10 KiB
// together; a connection that has sent nothing holds neither). When a new
// handshake would pass n, the oldest in progress on that loop is dropped
// (counted in Stats.TLS.Evicted): a real client finishes in a round trip
// or two, so under a flood of handshakes that never finish it is the
// flood's that go, and memory stays bounded. Default: 1024 per loop.
func WithTLSMaxHandshakes(n int) Option { return func(c *config) { c.tlsMaxHandshakes = n } }

// WithProxyProtocol makes the server, when on is true, expect the PROXY
// protocol (version 1 or 2, told apart by their signatures) on every
// connection it accepts, as a load balancer such as HAProxy sends it with
// send-proxy or send-proxy-v2: a header with the client's addresses before
// the client's bytes. The header is taken off on the connection's loop
// before anything else (before the TLS handshake with WithTLS, before
// OnOpen), arriving in one piece or byte by byte; Conn.RemoteAddr and
// LocalAddr then report the addresses it gives (a version 2 LOCAL header, a
// balancer's health check, keeps the socket's), and Conn.ProxyHeader returns
// it, version 2's TLVs included. OnMessage sees the bytes after the header,
// unchanged.
//
// The header is required, not optional: a server that took it only when
// present would let any client that reaches it directly claim any address.
// A connection whose header is missing, malformed, longer than 107 bytes
// (version 1) or 4 KiB (version 2), or not complete within
// WithProxyHeaderTimeout is closed without OnOpen or OnClose, counted in
// Stats.Proxy, and logged at debug level only. Turn it on only for a port
// that nothing but the load balancer can reach. The loop serving a
// connection is chosen when it is accepted, before its header is read, so
// WithLoadBalancer(SourceHash) hashes the balancer's address, not the
// client's. Default: false.
func WithProxyProtocol(on bool) Option { return func(c *config) { c.proxyProtocol = on } }

// WithProxyHeaderTimeout bounds, with WithProxyProtocol, the time from the
// accept to a complete PROXY header (a load balancer sends it at once, in
// its first segment). A TLS handshake's own timeout starts after it. 0
// removes the bound. Default: 5s.
func WithProxyHeaderTimeout(d time.Duration) Option {
	return func(c *config) { c.proxyHeaderTimeout = d }
}

// WithListener makes the server serve ln's listening socket instead of
// binding one: a socket opened by another process and inherited, as under
// systemd's socket activation (see SystemdListeners) or when a server hands
// its listener to the process replacing it (see Server.ListenerFiles), so
// that no connection is refused during a restart. Pass "" as NewServer's
// address.
//
// ln must be a *net.TCPListener or a *net.UnixListener (any net.Listener
// implementing syscall.Conn over a listening TCP or Unix stream socket).
// NewServer duplicates its descriptor (F_DUPFD_CLOEXEC) and serves the
// duplicate; ln stays the caller's, who may close it at once: the socket
// lives on until the server closes its own descriptor too. The two share
// the socket's non-blocking flag, which NewServer sets (Go's listeners are
// non-blocking already): do not switch ln back to blocking mode while the
// server runs. (*os.File).Fd does that to a file from (*net.TCPListener).File
// or (*net.UnixListener).File, and so does exec.Cmd, which calls Fd on its
// ExtraFiles; hand a served socket on with Server.ListenerFiles instead.) A
// Unix socket file that ln listens on is not removed by Shutdown or Close,
// since this server did not create it. Addr reports the socket's address.
// TCP options (WithTCPNoDelay, WithKeepAlive) apply to connections of an
// inherited TCP listener; WithBacklog does not (listen(2) was called by
// whoever opened the socket). Default: nil, bind the address given to
// NewServer.
//
// In the process taking over (descriptor 3 here, from exec.Cmd.ExtraFiles):
//
//	ln, err := net.FileListener(os.NewFile(3, "listener"))
//	srv, err := reactor.NewServer("", h, reactor.WithListener(ln))
//	ln.Close() // the server has its own descriptor
func WithListener(ln net.Listener) Option {
	return func(c *config) { c.listeners = []net.Listener{ln}; c.listenersSet = true }
}

// WithListeners is WithListener for several listening sockets, which
// requires WithReusePort: the server runs one event loop per listener (the
// number of loops is len(lns), whatever WithLoops says), each accepting from
// its own socket, as a server with WithReusePort does with the sockets it
// binds. It serves the sockets that a server with WithReusePort hands over
// (Server.ListenerFiles returns one per loop): all of them must be served,
// since each SO_REUSEPORT socket has its own queue of connections, which
// closing it would reset. Addr reports the first listener's address.
func WithListeners(lns ...net.Listener) Option {
	return func(c *config) { c.listeners = slices.Clone(lns); c.listenersSet = true }
}

// isNilListener reports whether ln is nil, or a nil pointer of the two
// types WithListener takes (whose methods would panic).
func isNilListener(ln net.Listener) bool {
	switch ln := ln.(type) {
	case nil:
		return true
	case *net.TCPListener:
		return ln == nil
	case *net.UnixListener:
		return ln == nil
	}
	return false
}

// WithLogger sets the logger for the server's or client's own events
// (accept failures, handler panics, descriptor exhaustion, dial failures no
// handler hears of). Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }
