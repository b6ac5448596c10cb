// Package reactor is an event-driven TCP server framework built on the
// reactor pattern: non-blocking sockets, readiness notification and a pool
// of event-loop goroutines, behind a small API.
//
// # Using it
//
// Write a Handler (or fill in HandlerFuncs), create a Server and run it:
//
//	h := reactor.HandlerFuncs{
//		Message: func(c *reactor.Conn, in *reactor.Buffer) {
//			c.Write(in.Next(in.Len())) // echo
//		},
//	}
//	srv, err := reactor.NewServer("127.0.0.1:9000", h, reactor.WithLoops(4))
//	if err != nil { ... }
//	go srv.Serve()        // returns ErrServerClosed once shut down
//	...
//	srv.Shutdown(ctx)     // flushes what was written, closes, waits
//
// Every callback for a connection runs on that connection's event-loop
// goroutine, one at a time. Callbacks must not block; Conn.Write, Close and
// CloseWrite are safe from any goroutine, so slow work can run elsewhere and
// write its result.
//
// # Addresses and listeners
//
// NewServer listens on TCP ("host:port") or on a Unix domain socket
// ("unix:/path/to.sock", or "unix:@name" in Linux's abstract namespace); a
// Unix server replaces a socket file left by a dead process and removes its
// own file when it stops. WithListener serves a listening socket opened
// elsewhere instead: one passed by systemd's socket activation (see
// SystemdListeners) or handed over by the process a restart replaces.
//
// # Clients and proxies
//
// The same loops serve connections the process dials. NewClient starts
// loops for a program that only dials; Client.Dial returns a connection
// once it is open and OnOpen has run, without blocking any loop (the
// connect is non-blocking, and host names are resolved off the loops):
//
//	cl, err := reactor.NewClient(h, reactor.WithLoops(2))
//	c, err := cl.Dial(ctx, "tcp", "127.0.0.1:6379")
//	c.Write(req)          // replies reach h.OnMessage on c's loop
//	cl.Shutdown(ctx)
//
// A callback dials with EventLoop.Dial on its connection's own loop, so the
// two connections of a proxied pair share one goroutine and relay without
// locks; the result comes later on that loop, as OnOpen of the new
// connection or DialErrorHandler.OnDialError, never both, so a failed dial
// has no OnClose. WithTLS makes a Client's dials TLS, and DialTLS one
// EventLoop.Dial's. Conn.PauseRead and ResumeRead stop and restart reading
// one connection, which a proxy does to one side while the other side's
// output is above its high-water mark. examples/proxy puts it together.
//
// # Behind a load balancer
//
// WithProxyProtocol(true) makes a server require the PROXY protocol header
// (version 1 or 2) that HAProxy, an AWS NLB or Envoy sends before the
// client's bytes; the loop takes it off before the TLS handshake and OnOpen,
// and Conn.RemoteAddr, LocalAddr and ProxyHeader report what it says.
// docs/deploy.md runs several instances behind HAProxy and restarts them one
// at a time.
//
// # How it works
//
// docs/tour.md in the repository is a guided tour for learners: it follows
// one connection from accept to close, function by function, with a trace
// from the simulation and exercises. In short:
//
// The parts keep the names of the C teaching framework this design comes
// from. A Server owns a main EventLoop whose acceptor takes new connections
// (accept4 until EAGAIN) and hands each one, through the chosen LoadBalancer,
// to one of N sub-loops; WithLoops(0) makes one loop do everything, and
// WithReusePort gives each loop a listener of its own.
//
// An EventLoop is one goroutine repeating one iteration: wait on its
// Dispatcher (epoll, poll(2) or the simulation; epoll by default, poll in a
// build with -tags reactor_poll) no longer than its next timer;
// for each ready descriptor look up the channel in its channelMap and let the
// Conn or acceptor behind it handle the event; run the tasks other goroutines
// queued with Submit; fire due timers and connection timeouts; then flush,
// with one write(2) each, the connections that were written to (a
// connection's OnMessage output is flushed as soon as the callback returns). A
// connection's fresh input is read into a buffer shared by the whole loop and
// handed to OnMessage; only what the handler leaves unconsumed is copied into
// a buffer of the connection's own, taken from a pool and returned when
// empty, so an idle connection holds no buffers. Output waits in a pooled
// Buffer, with the descriptor registered for writability only while it
// waits. In steady state the read, handle, write path allocates nothing.
//
// # Ownership
//
// Every Conn, channel, buffer and timer belongs to exactly one loop and is
// touched only on its goroutine; other goroutines reach it through
// EventLoop.Submit or through the methods documented as safe from any
// goroutine. Nothing is global: two servers in one process, with different
// backends, never interfere.
//
// # Errors
//
// Sentinel errors (ErrServerClosed, ErrClientClosed, ErrConnClosed,
// ErrIdleTimeout, ErrWriteTimeout, ErrDialTimeout, ErrInputTooLarge,
// ErrHandlerPanic) work with errors.Is. A failed dial is a *net.OpError
// with Op "dial", wrapping the cause (syscall.ECONNREFUSED, ...).
// OnClose receives nil when a connection ended in order and otherwise the
// reason, for example an error wrapping syscall.ECONNRESET for a reset by
// the peer.
//
// # Testing
//
// Sim is a simulated network: a Server or Client built with
// WithDispatcher(s.Dispatcher), where s is the *Sim, runs unchanged over
// virtual sockets, a virtual clock and injected faults, and a test steps it
// deterministically from its own goroutine; Sim.Listen stands up the
// servers that code under test dials.
package reactor
