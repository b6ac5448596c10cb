// This file holds Sim, the simulated network users test their servers and
// handlers on, in the manner of net/http/httptest: its clients (SimConn),
// its faults (Fault) and its options. It is a thin, documented face over
// internal/sim, which holds the model (sockets, clock, faults, trace, the
// stepped scheduler); dispatcher_mock.go adapts that model to the
// Dispatcher interface the event loops call.

package reactor

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/tcpreactor/reactor/internal/sim"
)

// Sim is a simulated network for testing a Server and its Handler without
// sockets, real time or flakes, in the manner of net/http/httptest. A
// Server built with WithDispatcher(s.Dispatcher) runs unchanged over it:
// its listening socket, its connections and its clock are virtual, and its
// event loops run only when the test says so.
//
// A test drives everything from its own goroutine:
//
//	s := reactor.NewSim(1) // the seed
//	srv, err := reactor.NewServer("127.0.0.1:7", h,
//		reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(2))
//	if err != nil { ... }
//	stop := s.Start(srv)   // Serve on a goroutine; stop() shuts it down
//	defer stop()
//
//	c, _ := s.Dial("127.0.0.1:7")       // a virtual client
//	c.WriteString("hello")
//	s.RunUntilIdle()                     // the server reads, handles, replies
//	got := c.ReadAll()                   // "hello", if h echoes
//	s.Advance(30 * time.Second)          // timers and idle timeouts fire
//	if err := stop(); err != nil { ... } // graceful shutdown, Serve's result
//
// # What is simulated
//
// Listening sockets with accept queues; TCP connections whose two ends each
// have a bounded receive buffer (SimReceiveWindow, 64 KiB by default), and
// whose server end has a bounded send buffer (SimSendBuffer, 16 KiB by
// default): what the server writes beyond the client's free window waits
// there, in flight, until the client reads, and once both are full the
// server's writes come up short, then block (EAGAIN). FIN (CloseWrite,
// Close) is read as EOF after the bytes before it. RST is modelled as
// Linux has it: closing a socket with unread input (or with SO_LINGER 0)
// sends RST instead of FIN, and the bytes still in flight from it are lost
// (SimConn.InFlight shows how many); the end that receives the RST still
// reads what had reached it, then ECONNRESET once, then EOF, and its
// writes fail with ECONNRESET once, then EPIPE. (Where the RST follows the
// peer's FIN, Linux reports EPIPE, and only to writes: reads return EOF.
// That is what a server sees when it writes to a client that has closed.)
// Descriptors are handed out lowest first and reused at once, as Linux
// does, with an optional limit (SetFDLimit) that makes accept fail with
// EMFILE. A Dial is established at once and what a client writes arrives
// at once (as far as the server's receive buffer allows; the rest waits in
// the client, see SimConn.Pending). Connections the code under test dials
// (Client.Dial, EventLoop.Dial) reach listeners the test holds
// (Sim.Listen), or the server's own; their connects are established,
// refused, held in progress by a full accept queue, or failed and lost by
// a FaultConnect, as a kernel's are. Latency, packet loss and
// retransmission are not simulated: they are invisible to a server anyway,
// which only sees reads and writes succeed, come up short or fail, and
// those Fault injects. internal/sim's comparison test runs the same
// scripts over loopback and over the simulation and checks that they
// agree.
//
// # Driving it
//
// Nothing happens on the server side until the test drives the simulation:
// after Dial and Write the bytes wait in the server's socket, and only Step,
// RunUntilIdle and Advance let event loops run. A loop runs only in a turn
// the simulation gives it, and only one loop runs at a time, even though
// each runs on its own goroutine as usual. RunUntilIdle gives turns until
// no loop has anything to do: no readable or writable descriptor it waits
// for, no task queued, no timer due. Step gives one turn. Advance moves the
// virtual clock, which never moves on its own, stopping at every timer's
// deadline on the way, so a timer (EventLoop.AfterFunc, WithIdleTimeout,
// WithWriteTimeout) fires at exactly its virtual time.
//
// # Determinism
//
// Every choice the simulation makes — which loop runs next, the order of
// the events a loop is given, which calls a Fault with a Probability hits,
// how short a short read is — is drawn from one random source seeded with
// the seed given to NewSim. So the same seed and the same test script give
// the same run: the same handler calls in the same order with the same
// bytes, and a byte-identical Trace, whatever the number of loops, under
// the race detector or not. A different seed may interleave the loops
// differently, which is how a test explores orders: run the script over
// many seeds, and when one fails, replay exactly that seed.
//
// The guarantee holds when everything that touches the simulation happens
// either inside a loop's turn (handler callbacks) or on the goroutine that
// drives it, between driver calls. It is lost when:
//
//   - WithLoops is left at its default, runtime.GOMAXPROCS(0), which
//     differs between machines: set it;
//   - a handler depends on something outside the simulation: ranging over
//     a Go map to decide what to write (the order is random), the real
//     clock (use Conn.Loop().Now() and AfterFunc, which are virtual), or a
//     goroutine of its own that calls Conn.Write;
//   - the simulation is driven from two goroutines at once.
//
// A handler must not block (on a channel, a lock held elsewhere,
// time.Sleep): its loop would keep the turn forever. The drivers detect a
// loop that does not give its turn back within 30 seconds of real time, and
// panic with a message naming it and the last records of the trace. They
// also panic after a million turns without the simulation becoming idle:
// a livelock, some loop that always has work.
//
// # Faults and the trace
//
// Inject makes the server's socket calls fail or come up short, on one
// connection or on all of them, a number of times or with a probability
// (see Fault); SetFDLimit runs the server out of descriptors; a client's
// SetReceiveWindow makes a slow reader. Trace returns a log of everything
// that happened, one line per event, for a test to print or compare.
//
// # Concurrency
//
// Every method of Sim and SimConn is safe for concurrent use, but
// determinism asks for one driving goroutine (see above). Sim itself
// starts no goroutine (Start starts one, for Serve) and needs no cleanup
// beyond its servers'. It works inside a testing/synctest bubble too, if
// it is created there.
type Sim struct {
	k    *sim.Kernel // the simulated kernel, in stepped mode
	seed int64
}

// SimOption configures a Sim; see NewSim. The options are SimReceiveWindow,
// SimSendBuffer and SimTrace.
type SimOption func(*simConfig)

// simConfig is what SimOptions set: the simulated kernel's configuration.
type simConfig struct{ k sim.Config }

// SimReceiveWindow sets the size in bytes of the receive buffer of each
// end of each new connection, in both directions: how much of what a
// server writes reaches a client that does not read (the rest waits in the
// server's send buffer, see SimSendBuffer), and how much a client's writes
// deliver before the rest waits for the server to read. n ≤ 0 means the
// default, 64 KiB. A single client's window is changed with
// SimConn.SetReceiveWindow.
func SimReceiveWindow(n int) SimOption {
	return func(c *simConfig) { c.k.ReceiveBuffer = n }
}

// SimSendBuffer sets the size in bytes of the send buffer of the server's
// end of each new connection: how many bytes a write takes beyond the
// client's free receive window. They are in flight: written as far as the
// server can tell, but not yet received, and they move into the client's
// receive buffer as it reads. A reset loses them, as on Linux, which is
// how a server that closes a connection with unread input (so the kernel
// sends RST) loses the end of its reply; see Sim. A server's writes to a
// client that does not read come up short, then fail with EAGAIN, once the
// window and the send buffer are both full.
//
// n = 0 means the default, 16 KiB: Linux's initial SO_SNDBUF. (Linux grows
// a connection's send buffer as it runs, to megabytes over loopback, so
// far more can be lost there; the default stays small so that a test
// reaches backpressure with little data.) n < 0 means none: a write takes
// exactly the client's free window and nothing is ever in flight, the
// simplest model for a test that counts bytes through backpressure.
func SimSendBuffer(n int) SimOption {
	return func(c *simConfig) { c.k.SendBuffer = n }
}

// SimTrace turns the trace on (the default) or off from the start. The
// trace costs memory for every operation and an allocation for every turn:
// long runs and allocation measurements turn it off. Sim.SetTrace changes
// it later.
func SimTrace(on bool) SimOption {
	return func(c *simConfig) { c.k.NoTrace = !on }
}

// NewSim returns a simulated network whose random choices all derive from
// seed, with its clock at 0 and its trace on.
func NewSim(seed int64, opts ...SimOption) *Sim {
	var cfg simConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	cfg.k.Seed, cfg.k.Stepped = seed, true // options cannot change what makes it a Sim
	return &Sim{k: sim.New(cfg.k), seed: seed}
}

// Seed returns the seed the simulation was created with, for a failing
// test to print so that it can be replayed.
func (s *Sim) Seed() int64 { return s.seed }

// Dispatcher is a DispatcherFactory: pass it to WithDispatcher to run a
// Server over the simulation. Each call returns a new Dispatcher for one
// event loop (a Server calls it once per loop). It fails only when the
// descriptor limit (SetFDLimit) is reached.
func (s *Sim) Dispatcher() (Dispatcher, error) {
	return newMockDispatcher(s.k)
}

// Start runs srv.Serve on a new goroutine and returns once the server's
// event loops are all waiting for their first turn, so that what the test
// does next finds the server in the same state on every run. srv must have
// been created with WithDispatcher(s.Dispatcher); Start panics otherwise,
// since such a server would not run when the simulation is driven.
//
// stop shuts the server down gracefully, as Server.Shutdown does, driving
// the simulation until every loop has stopped: the server stops accepting
// and reading, flushes the output already written, closes each connection
// (OnClose runs with a nil error; the close lingers until the client's EOF,
// see WithLingerTimeout) and Serve returns. A client that never closes
// holds its connection for the linger timeout: stop moves the virtual clock
// as far as it must, as real time would pass, but no further than a minute
// beyond the linger timeout (WithLingerTimeout). Unlike
// Shutdown it cannot hang: in a simulation nothing happens while the test
// waits in stop, so if the shutdown stalls (output waiting for a client
// whose receive window and the server's send buffer are full, say) stop
// closes what is left at once, as
// Server.Close does, and returns an error saying how many connections it
// closed that way. Otherwise it returns Serve's error if that is not
// ErrServerClosed (an event loop failed), or nil. It may be called more than
// once and returns the same result each time, so `defer stop()` is safe
// after an explicit call. Like every driver, call it from the test's
// goroutine, never from a handler.
func (s *Sim) Start(srv *Server) (stop func() error) {
	var polls []*sim.Poller
	for _, l := range srv.allLoops {
		md := simDispatcher(l.d)
		if md == nil || md.k != s.k {
			panic("reactor: Sim.Start: the server does not run over this Sim; create it with WithDispatcher(s.Dispatcher)")
		}
		polls = append(polls, md.p)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	// Parked in Wait, every loop has started and done all it does before
	// its first turn. Otherwise a loop's goroutine could still be starting
	// when the test shuts the server down, and whether it had would show
	// in the trace. (Blocked is also closed for a closed poller: a server
	// that was already shut down does not hang Start.)
	for _, p := range polls {
		<-p.Blocked()
	}
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { err = s.stop(srv, served) })
		return err
	}
}

// stop is Start's stop: Shutdown's graceful sequence, driven here rather
// than inside Shutdown so that a stall is seen (the simulation idle with
// loops still running) instead of waited on forever.
func (s *Sim) stop(srv *Server, served <-chan error) error {
	var err error
	if srv.beginStop(false) && !s.k.AdvanceWhile(srv.loopsStopped, srv.shutdownHorizon()) {
		n := srv.Stats().Open
		srv.stopAll(true)
		_ = srv.waitLoops(nil) // as Close does: it cannot fail without a cancel
		err = fmt.Errorf("reactor: Sim: graceful shutdown stalled with %d connections open "+
			"(output waiting for a client that does not read?); closed them", n)
	}
	if serr := <-served; err == nil && !errors.Is(serr, ErrServerClosed) {
		err = serr
	}
	return err
}

// Dial connects a new client to addr ("host:port"; the simulation has no
// DNS, but "localhost" works) from 192.0.2.1 (2001:db8::1 for an IPv6
// address) and the next client port from 40000 up. The connection is
// established at once: it waits in the server's accept queue until the
// server's loop runs. Clients are numbered c1, c2, ... in the order they
// are dialled, as the trace shows them. Dial fails with an error wrapping
// syscall.ECONNREFUSED when nothing listens on addr or its accept queue is
// full (see WithBacklog).
func (s *Sim) Dial(addr string) (*SimConn, error) {
	return s.DialFrom("", addr)
}

// DialFrom is Dial from the local address local ("host:port"; port 0 takes
// the next client port). It lets a test choose the client's address, for a
// handler or a load balancer (SourceHash) that looks at RemoteAddr.
func (s *Sim) DialFrom(local, addr string) (*SimConn, error) {
	c, err := s.k.DialFrom(local, addr)
	if err != nil {
		return nil, err
	}
	return &SimConn{c: c}, nil
}

// Step gives one event loop that has work one turn, and returns false,
// having run nothing, if none has. A turn is one iteration of the loop:
// wait (return at once with the ready events), dispatch them to
// connections and handlers, run queued tasks, fire due timers, flush
// output. Most tests use RunUntilIdle; Step is for looking at the state
// between two turns. The clock does not move.
func (s *Sim) Step() bool { return s.k.Step() }

// RunUntilIdle gives turns, one loop at a time, until no loop has work:
// every byte the clients sent has been read, every reply written as far as
// the clients' receive windows allow, every task run and every timer due
// at the current virtual time fired. The clock does not move (see
// Advance). It panics on a livelock: a million turns without the
// simulation becoming idle.
func (s *Sim) RunUntilIdle() { s.k.RunUntilIdle() }

// Advance moves the virtual clock forward by d, running the simulation on
// the way: it runs until idle, then moves the clock to the next deadline
// of a timer or a connection timeout, runs until idle, and so on, and
// finally to Now()+d. So every timer fires at exactly its deadline, in
// order, and a timer that schedules another one before Now()+d sees it fire
// too. Nothing else moves the clock, but the stop function of Start, and
// Shutdown, Close and Client.Dial while they wait for what the simulation
// must do for them (a linger, a dial timeout).
func (s *Sim) Advance(d time.Duration) { s.k.Advance(d) }

// Now returns the virtual time: 0 when the Sim was created, moved only by
// Advance. It is the clock the server's event loops run on
// (EventLoop.Now); the trace stamps every line with it.
func (s *Sim) Now() time.Duration { return s.k.Now() }

// Inject adds a fault to the server's socket calls and returns its id. The
// fault stays until it has fired f.Times times, or until RemoveFault or
// ClearFaults. It panics if f is malformed (see Fault): a fault is part of
// a test script, and a wrong one is a bug in the test, best reported at
// the line that made it.
func (s *Sim) Inject(f Fault) FaultID {
	if f.Op < FaultRead || f.Op > FaultConnect {
		panic(fmt.Sprintf("reactor: Sim.Inject: unknown FaultOp %d", f.Op))
	}
	sf := sim.Fault{
		Op:          sim.Op(f.Op), // the same numbering
		Err:         f.Err,
		Short:       f.Short,
		Times:       f.Times,
		Probability: f.Probability,
	}
	if f.Conn != nil {
		sf.Conn = f.Conn.c
	}
	return FaultID(s.k.Inject(sf))
}

// RemoveFault removes an injected fault: it fires no more. Unknown ids and
// faults already spent are ignored.
func (s *Sim) RemoveFault(id FaultID) { s.k.RemoveFault(sim.FaultID(id)) }

// ClearFaults removes every injected fault.
func (s *Sim) ClearFaults() { s.k.ClearFaults() }

// FaultHits returns how many times a fault has fired so far (also after it
// was spent or removed): a test checks that its fault was actually hit.
func (s *Sim) FaultHits(id FaultID) int { return s.k.FaultHits(sim.FaultID(id)) }

// SetFDLimit limits the simulated process to n open descriptors: once n
// are open, creating another (accepting a connection, above all) fails
// with EMFILE, as it does on Linux when RLIMIT_NOFILE is reached, and the
// connection waits in the accept queue. Every Dispatcher, listener and
// accepted connection holds one descriptor; OpenFDs lists them, so
// SetFDLimit(len(s.OpenFDs())+k) allows exactly k more. n = 0 removes the
// limit. Descriptors already open stay open.
func (s *Sim) SetFDLimit(n int) { s.k.SetMaxOpen(n) }

// OpenFDs returns the simulated descriptors open now, in increasing order.
// After a server has stopped it should be empty: a test can check that the
// server closed everything it opened.
func (s *Sim) OpenFDs() []int { return s.k.OpenFDs() }

// Trace returns what has happened so far, one event per line, each line
// ending in a newline. Two runs of the same script with the same seed give
// the same text, byte for byte. A line is a sequence number, the virtual
// time, what happened and its details:
//
//	000007 0s turn p1 [6:R]                  loop p1 got a turn: descriptor 6 readable
//	000008 0s accept c1 fd=6 nfd=7 192.0.2.1:40000   the server accepted client c1 as fd 7
//	000011 0s note loop 0: OnOpen fd=7 peer=192.0.2.1:40000   a Handler callback
//	000013 0s read fd=7 n=5                  the server read 5 bytes
//	000015 0s write fd=7 n=5                 the server wrote 5 bytes
//	000017 0s read c1 n=5                    client c1 read them
//	000031 30s clock                         Advance moved the clock to 30s
//
// Loops are p1, p2, ... in the order their Dispatchers were created: with
// WithLoops(n) for n > 0, p1 is the main loop (which accepts) and p2, p3,
// ... the loops "0", "1", ... that serve connections, as the callback
// lines name them; with WithLoops(0), p1 is loop "0", which does both.
// Clients are c1, c2, ... in the order they were dialled. A turn lists the
// ready descriptors with R (readable), W (writable) or RW, and says "wake"
// if the loop was given work from elsewhere (Submit, AfterFunc, a Write
// from another loop) or "timeout" if it woke for a timer. Besides turns,
// reads and writes there are dial, accept, shutdown, close, reset (with
// its cause and, if any, how many bytes in flight it lost: "reset c1 fd=5
// close with unread data, 13040 bytes in flight lost"), fault (an
// injected fault fired: its id, error and operation), note (the server's
// callbacks, high and low water, handler panics, and Tracef) and poller (a
// loop's Dispatcher created or closed) lines. An error is shown by its
// errno name (EAGAIN, ECONNRESET).
func (s *Sim) Trace() string { return s.k.TraceText() }

// SetTrace turns the trace on or off; lines recorded so far are kept. See
// SimTrace.
func (s *Sim) SetTrace(on bool) { s.k.SetTrace(on) }

// Tracef adds a line of the test's own to the trace (shown as "note"),
// to mark the phases of a script. Call it from the driving goroutine
// between driver calls, or from a handler, so the trace stays
// deterministic.
func (s *Sim) Tracef(format string, args ...any) { s.k.Tracef(format, args...) }

// SimConn is a client connected to a server over a Sim: the test's end of
// a simulated TCP connection, made by Sim.Dial; or the test's end of a
// connection that the code under test dialled, accepted from a
// SimListener, where "the server" below means the dialling side. Its methods never block
// and only change the simulation's state: the server reacts when the test
// next drives the simulation (RunUntilIdle, Step, Advance). They are safe
// for concurrent use. Injected faults never apply to a SimConn's own
// methods, only to the server's side of its connection.
type SimConn struct {
	c *sim.Conn
}

// Write sends p and returns len(p), nil. It never comes up short: what
// does not fit in the server's receive buffer waits in the client (see
// Pending) and is delivered as the server reads. It fails with
// net.ErrClosed after Close or Reset; after the connection was reset, with
// syscall.ECONNRESET once (unless Read reported it first), then
// syscall.EPIPE; with EPIPE after CloseWrite. Writing to a server that has
// closed the connection succeeds, as on a real network, and resets it;
// since the server's FIN came first, the client then reads what is left,
// then io.EOF, and its writes fail with EPIPE, as on Linux.
func (c *SimConn) Write(p []byte) (int, error) { return c.c.Write(p) }

// WriteString is Write with a string.
func (c *SimConn) WriteString(s string) (int, error) { return c.c.Write([]byte(s)) }

// Read moves into p bytes the server has sent and returns how many. It
// never blocks: with nothing to read it returns 0 and syscall.EAGAIN, as a
// non-blocking socket does (drive the simulation to let the server send
// more). It returns io.EOF once the server's FIN has arrived and every
// byte before it has been read. After a reset it still returns the bytes
// that arrived before it, then syscall.ECONNRESET once (unless Write
// reported it first, or the server's FIN had arrived before the RST), then
// io.EOF, as on Linux. After Close or Reset it returns net.ErrClosed.
// Reading makes room for the server's bytes in flight, which move in.
func (c *SimConn) Read(p []byte) (int, error) {
	n, err := c.c.Read(p)
	if n == 0 && err == nil && len(p) > 0 {
		return 0, syscall.EAGAIN
	}
	return n, err
}

// ReadAll returns every byte the server has sent that has arrived and not
// been read yet, or nil. Unlike io.ReadAll it does not wait for EOF: it
// takes what has arrived, so call it after driving the simulation (or
// again: taking what had arrived lets the server's bytes in flight in). It
// reports no error; EOF and WasReset tell how the connection ended.
func (c *SimConn) ReadAll() []byte { return c.c.ReadAll() }

// Buffered returns how many bytes from the server have arrived and not
// been read.
func (c *SimConn) Buffered() int { return c.c.Buffered() }

// Pending returns how many written bytes wait in the client because the
// server's receive buffer is full: the server has not read them yet.
func (c *SimConn) Pending() int { return c.c.Pending() }

// InFlight returns how many bytes the server has written that wait in its
// socket's send buffer because this client's receive window is full (see
// SimSendBuffer): written as far as the server can tell, not yet received,
// and lost if the connection is reset now.
func (c *SimConn) InFlight() int { return c.c.InFlight() }

// EOF reports whether the server has finished sending in order: it closed
// the connection or half-closed it (Conn.CloseWrite), and the connection
// was not reset. Bytes sent before may still be waiting to be read.
func (c *SimConn) EOF() bool { return c.c.EOF() }

// WasReset reports whether the connection has been reset (RST): by Reset,
// by the server (closing it with unread input or with SO_LINGER 0, as
// Linux does), by a write to an end that had closed, or by an injected
// syscall.ECONNRESET or EPIPE.
func (c *SimConn) WasReset() bool { return c.c.WasReset() }

// CloseWrite half-closes the connection: the server reads EOF after
// everything written before, and the client can still read its reply. It
// returns net.ErrClosed after Close, syscall.ENOTCONN after a reset, and
// nil when repeated.
func (c *SimConn) CloseWrite() error { return c.c.CloseWrite() }

// Close closes the client's end. The server reads what was sent, then EOF;
// but if bytes from the server were left unread (or in flight), the
// connection is reset instead (RST, as Linux does): what the client had
// written and the server not yet received is lost, and the server reads
// what had reached it, then syscall.ECONNRESET (a write reports it too,
// whichever comes first). It returns net.ErrClosed when repeated.
func (c *SimConn) Close() error { return c.c.Close() }

// Reset aborts the connection (RST, as a close with SO_LINGER 0 does):
// what the client had not read, or had written and the server not yet
// received, is lost, and so are the server's bytes in flight. The server
// reads what had reached it, then fails with syscall.ECONNRESET (so
// OnClose receives an error wrapping it), as do its writes. The SimConn is
// closed afterwards. It returns net.ErrClosed after Close or Reset.
func (c *SimConn) Reset() error { return c.c.Reset() }

// SetReceiveWindow sets how many bytes this client's receive buffer holds:
// what the server writes beyond it waits in the server's send buffer (see
// SimSendBuffer), and once that is full too the server's writes come up
// short and then block (EAGAIN). A small window makes a slow reader, 0 one
// that reads nothing, until the test reads (Read, ReadAll) or widens the
// window. Bytes already received stay.
func (c *SimConn) SetReceiveWindow(n int) { c.c.SetReceiveWindow(n) }

// LocalAddr returns the client's address (*net.TCPAddr): what the server's
// Conn.RemoteAddr reports.
func (c *SimConn) LocalAddr() net.Addr { return c.c.LocalAddr() }

// RemoteAddr returns the address the client dialled (*net.TCPAddr).
func (c *SimConn) RemoteAddr() net.Addr { return c.c.RemoteAddr() }

// ID returns the client's number: the clients of a Sim are numbered 1, 2,
// ... in the order they were dialled, and appear as c1, c2, ... in its
// trace.
func (c *SimConn) ID() int { return c.c.ID() }

// String returns "c<ID>", as the trace names the client.
func (c *SimConn) String() string { return c.c.String() }

// Listen binds a listening socket that the test holds at addr
// ("host:port": an IP literal, "localhost" or empty for every address;
// port 0 picks a free port, see SimListener.Addr), for the code under test
// to dial: the upstream server of a proxy, the server of a Client.
// Connections dialled to it (EventLoop.Dial, Client.Dial) are established
// at once while its accept queue has room (SimListener.SetBacklog), and the
// test takes its end of each with SimListener.Accept: a *SimConn, driven
// exactly like a client's. A connect to an address where nothing listens
// is refused (ECONNREFUSED). A Sim.Dial client does not reach a
// SimListener: it is for the connections the server side makes. It fails
// with EADDRINUSE when something already listens on addr.
func (s *Sim) Listen(addr string) (*SimListener, error) {
	l, err := s.k.NewListener(addr)
	if err != nil {
		return nil, err
	}
	return &SimListener{l: l}, nil
}

// SimListener is a listening socket held by the test, made by Sim.Listen:
// the test's side of the servers the code under test connects to. Its
// methods never block and are safe for concurrent use; like a SimConn's,
// they only change the simulation's state.
type SimListener struct {
	l *sim.Listener
}

// Accept returns the test's end of the oldest established connection, or
// syscall.EAGAIN when none waits (drive the simulation to let the code
// under test dial). With none established and a connect held in progress
// because the accept queue was full, it completes that connect and returns
// it. After Close it returns net.ErrClosed. The SimConn is numbered with
// the clients (c1, c2, ... in the trace); what the dialling side writes
// before it is accepted waits in it, as in a real accept queue.
func (l *SimListener) Accept() (*SimConn, error) {
	c, err := l.l.Accept()
	if err != nil {
		return nil, err
	}
	return &SimConn{c: c}, nil
}

// Addr returns the address the listener is bound to (*net.TCPAddr), with
// the port chosen for port 0.
func (l *SimListener) Addr() net.Addr { return l.l.Addr() }

// SetBacklog sets how many established connections may wait to be
// accepted (128 until it is called). A connect beyond it stays in progress
// — the dialling side sees nothing, as on Linux, whose listener drops the
// SYN while its queue is full — until Accept makes room, or until the
// dialler's timeout ends it. SetBacklog(0) makes every connect wait for
// Accept: with a test that never accepts, a connect that never completes.
func (l *SimListener) SetBacklog(n int) { l.l.SetBacklog(n) }

// Pending returns how many connections wait to be accepted: established,
// and held in progress because the queue was full.
func (l *SimListener) Pending() (established, inProgress int) { return l.l.Pending() }

// Close stops listening: established connections not yet accepted are
// reset, connects in progress are refused. It returns net.ErrClosed when
// repeated.
func (l *SimListener) Close() error { return l.l.Close() }

// String returns the listener's name in the trace: l1, l2, ... in the
// order the test's listeners were made.
func (l *SimListener) String() string { return l.l.String() }

// ServerFD returns the descriptor of the server's end of the connection,
// as the trace and the callback lines show it (fd=7): -1 until the server
// has accepted the connection, and again once it has closed it.
func (c *SimConn) ServerFD() int { return c.c.ServerFD() }

// FaultOp names the server-side socket call a Fault applies to.
type FaultOp uint8

// The calls a Fault can make fail. The numbering is internal/sim's Op, so
// that Inject converts with a plain conversion; the function below fails
// to compile if the two drift apart.
const (
	FaultRead     FaultOp = iota + 1 // read(2) and readv(2) on a connection
	FaultWrite                       // write(2) and writev(2) on a connection
	FaultAccept                      // accept4(2) on the listening socket
	FaultShutdown                    // shutdown(2), as CloseWrite does
	FaultClose                       // close(2): the descriptor is closed anyway, then the error returned
	FaultConnect                     // connect(2) of a dial (EventLoop.Dial, Client.Dial)
)

var faultOpNames = [...]string{
	FaultRead:     sim.OpRead.String(),
	FaultWrite:    sim.OpWrite.String(),
	FaultAccept:   sim.OpAccept.String(),
	FaultShutdown: sim.OpShutdown.String(),
	FaultClose:    sim.OpClose.String(),
	FaultConnect:  sim.OpConnect.String(),
}

func _() {
	var x [1]struct{}
	_ = x[int(FaultRead)-int(sim.OpRead)]
	_ = x[int(FaultWrite)-int(sim.OpWrite)]
	_ = x[int(FaultAccept)-int(sim.OpAccept)]
	_ = x[int(FaultShutdown)-int(sim.OpShutdown)]
	_ = x[int(FaultClose)-int(sim.OpClose)]
	_ = x[int(FaultConnect)-int(sim.OpConnect)]
}

// String returns the call's name: "read", "write", "accept", "shutdown",
// "close" or "connect", as the trace shows it.
func (o FaultOp) String() string {
	if o >= FaultRead && o <= FaultConnect {
		return faultOpNames[o]
	}
	return fmt.Sprintf("FaultOp(%d)", uint8(o))
}

// Fault describes a failure to inject into the server's socket calls with
// Sim.Inject: an error, or a transfer that comes up short. The server sees
// exactly what a real kernel could return, and the Handler sees how the
// server copes: a retry, a partial delivery, OnClose with the error.
//
//	// The next read on c's connection fails with ECONNRESET.
//	s.Inject(reactor.Fault{Op: reactor.FaultRead, Conn: c, Err: syscall.ECONNRESET, Times: 1})
//	// Every write, on any connection, moves fewer bytes than asked.
//	s.Inject(reactor.Fault{Op: reactor.FaultWrite, Short: true})
//	// One accept in ten fails with EMFILE.
//	s.Inject(reactor.Fault{Op: reactor.FaultAccept, Err: syscall.EMFILE, Probability: 0.1})
//	// The next dial is refused; the one after never completes.
//	s.Inject(reactor.Fault{Op: reactor.FaultConnect, Err: syscall.ECONNREFUSED, Times: 1})
//	s.Inject(reactor.Fault{Op: reactor.FaultConnect, Err: syscall.ETIMEDOUT, Times: 1})
//
// Errors: syscall.ECONNRESET and EPIPE reset the connection, as RSTs
// crossing would: each end keeps what it had received and loses its bytes
// in flight; the client reads what it had, then ECONNRESET; on the server
// later reads see EOF (after a failed write, the bytes that had arrived
// first) and writes EPIPE.
// FaultConnect ends a dial's connect with Err, as an RST or an ICMP error
// answering its SYN would (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ...):
// the dial fails with an error wrapping it. Err syscall.ETIMEDOUT instead
// loses the SYN: the connect never completes, and the dial ends by its
// timeout (WithDialTimeout), in virtual time.
// Every other error is transient and changes nothing: EAGAIN and EINTR (the
// server must try again later), EMFILE or ENFILE on accept (the connection
// stays queued), ECONNABORTED on accept, and so on.
//
// Short: a read or write that would move n ≥ 2 bytes moves between 1 and
// n-1 instead (how many is drawn from the seed): the server must buffer the
// rest and the handler must cope with a message split anywhere. Calls that
// would move fewer bytes, or fail, are not affected and do not count
// towards Times.
//
// A Fault is malformed, and Inject panics, if Op is not one of the
// FaultOp constants, if it has neither or both of Err and Short, Short with
// an Op other than FaultRead or FaultWrite, a negative Times, a
// Probability outside [0, 1], a Conn from another Sim, or a Conn with
// FaultConnect (the connection does not exist yet). When several
// faults match one call, the one injected first fires, error faults before
// Short ones. Each firing is a "fault" line in the trace.
type Fault struct {
	Op FaultOp
	// Conn, if not nil, limits the fault to the server's end of this
	// client's connection (it need not be accepted yet), or, for a SimConn
	// accepted from a SimListener, to the dialling side's end. nil means
	// every connection, every listener for FaultAccept, every dial for
	// FaultConnect.
	Conn *SimConn
	// Err is the error the call returns: syscall.EAGAIN, syscall.EINTR,
	// syscall.ECONNRESET, syscall.EPIPE, syscall.EMFILE, ... (the
	// golang.org/x/sys/unix names are the same values). Zero with Short.
	Err syscall.Errno
	// Short makes reads or writes come up short instead of failing.
	Short bool
	// Times is how many times the fault fires before it is spent; 0 means
	// until it is removed.
	Times int
	// Probability is the chance that a matching call fires the fault,
	// drawn from the Sim's seed; 0 and 1 both mean always.
	Probability float64
}

// FaultID identifies an injected fault, for RemoveFault and FaultHits; the
// trace shows it as #1, #2, ...
type FaultID int
