// This file holds Client: event loops that serve connections this process
// dials out, with the same loop, connection and buffer code as a Server's
// and no listener. Client methods are safe from any goroutine.

package reactor

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Client serves outbound connections on event loops: Dial connects without
// blocking any loop and returns a *Conn whose events go to the client's
// Handler on its loop, exactly as an accepted connection's do on a
// Server's. It is for load generators, gateways to upstream services,
// clients of many servers at once, and tests: NewClient starts the loops at
// once, Dial adds connections, Shutdown or Close stops everything. Every
// method is safe from any goroutine.
//
// To dial from inside a callback (a proxy dialling its upstream when a
// client connects), use EventLoop.Dial on the connection's loop instead:
// Client.Dial blocks until the connection is open, which a loop must never
// do.
type Client struct {
	group // configuration, handler, loops, counters

	rr      atomic.Uint64 // round-robin cursor for Dial
	running atomic.Int32  // loop goroutines still running; the last closes done

	mu    sync.Mutex // guards state and err
	state int        // stateServing, stateShuttingDown or stateClosed
	err   error      // the first loop failure
}

// NewClient creates a client whose connections are served by h, and starts
// its event loops at once (WithLoops of them; 0 means one). Every Option
// that makes sense for outbound connections applies: WithDispatcher,
// WithLoops, WithLoadBalancer (RoundRobin or LeastConns picks the loop of
// each Dial), WithDialTimeout, WithIdleTimeout, WithWriteTimeout,
// WithLingerTimeout, WithHighWaterMark, WithMaxInputSize, WithTCPNoDelay,
// WithKeepAlive, WithReadBufferSize, WithRecover, WithLockOSThread,
// WithLogger. Those that only mean something to a server are an error:
// WithReusePort, WithBacklog, WithMaxConns and WithLoadBalancer(SourceHash).
//
// Over a Sim (WithDispatcher(s.Dispatcher)) the loops wait for the
// simulation to be driven; NewClient returns once each is waiting, so a
// test's run does not depend on how fast they started, and Dial, Shutdown
// and Close drive the simulation themselves while they wait.
func NewClient(h Handler, opts ...Option) (*Client, error) {
	c := &Client{}
	if err := c.init("NewClient", h, opts, ErrClientClosed); err != nil {
		return nil, err
	}
	if err := c.cfg.validateClient(); err != nil {
		return nil, err
	}
	c.dialTLS = c.cfg.tlsConfig
	for i := range max(c.cfg.loops, 1) {
		if _, err := c.newLoop(fmt.Sprintf("client%d", i)); err != nil {
			c.release()
			return nil, err
		}
	}
	c.loops = c.allLoops
	c.state = stateServing
	c.wg.Add(len(c.loops))
	c.running.Store(int32(len(c.loops)))
	for _, l := range c.loops {
		go c.run(l)
	}
	for _, l := range c.loops {
		if md, ok := l.d.(*mockDispatcher); ok && md.k.Stepped() {
			<-md.p.Blocked() // see the simulation's determinism rules (Sim.Start)
		}
	}
	return c, nil
}

// run is the body of one loop goroutine; the last to return closes done.
func (c *Client) run(l *EventLoop) {
	defer func() {
		if c.running.Add(-1) == 0 {
			close(c.done)
		}
	}()
	c.runLoop(l, c.loopFailed)
}

// loopFailed stops the client when one of its loops has failed: Shutdown
// and Close then return err.
func (c *Client) loopFailed(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.beginStop(true)
}

// Dial connects to address on network ("tcp", "tcp4", "tcp6" or "unix";
// addresses as EventLoop.Dial takes them) from one of the client's loops,
// chosen by its load balancer, and returns the connection once it is open
// and the client's Handler.OnOpen has run for it on its loop (even if
// OnOpen closed it or panicked: the connection is then closed, or closing,
// and its OnClose follows).
//
// No loop blocks meanwhile: the connect is non-blocking, its end is seen as
// writability, and a host name is resolved off the loops. Dial fails with a
// *net.OpError with Op "dial" (wrapping syscall.ECONNREFUSED,
// ErrDialTimeout after WithDialTimeout, a *net.DNSError, ...), or with
// ctx.Err() itself when ctx ends first, in which case the socket being
// connected is closed. A failed dial produces no OnOpen and no OnClose.
// After Shutdown or Close it returns ErrClientClosed. Called on one of the
// client's own loops, where it would wait for the loop it blocks, it
// returns ErrInLoop (use EventLoop.Dial there); never call it from a
// callback of another loop either, which it would stall.
//
// Over a Sim, Dial drives the simulation until the dial has ended, moving
// the virtual clock if it must, up to the dial timeout; ctx, which runs on
// real time, can still cancel it.
func (c *Client) Dial(ctx context.Context, network, address string) (*Conn, error) {
	c.mu.Lock()
	open := c.state == stateServing
	c.mu.Unlock()
	if !open {
		return nil, ErrClientClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.onLoop() {
		return nil, ErrInLoop
	}
	l := c.pick()
	res := make(chan dialResult, 1)
	d := newDialer(l, network, address, c.handler, c.cfg.dialTimeout, ctx)
	d.report = func(conn *Conn, err error) { res <- dialResult{conn, err} }
	d.tls = c.dialTLS
	horizon := time.Duration(-1)
	if d.timeout > 0 {
		horizon = deadlineAfter(c.k.Now(), d.timeout)
		if d.tls != nil {
			// The handshake follows the connect, under its own bound.
			if hs := c.cfg.tlsHandshakeTimeout; hs > 0 {
				horizon = deadlineAfter(horizon, hs)
			} else {
				horizon = -1
			}
		}
	}
	if err := l.Submit(d.start); err != nil {
		return nil, ErrClientClosed
	}
	r, ok := c.await(res, ctx.Done(), horizon)
	if !ok {
		// ctx ended first: end the dial on its loop, which reports
		// exactly once, the abort or what came before it. A loop that
		// stopped meanwhile has failed the dial already.
		_ = l.Submit(func() { d.abort(ctx.Err()) })
		r, _ = c.await(res, nil, -1)
	}
	if r.err != nil && ctx.Err() != nil {
		return nil, ctx.Err() // whatever the dial saw, the context ended first
	}
	return r.c, r.err
}

// dialResult is what a dial reports to Client.Dial.
type dialResult struct {
	c   *Conn
	err error
}

// await waits for a dial's result, driving the simulation if the loops run
// over one (up to horizon in virtual time), until cancel is closed (then
// ok is false).
func (c *Client) await(res chan dialResult, cancel <-chan struct{}, horizon time.Duration) (r dialResult, ok bool) {
	if c.driver != nil && !c.driver.runUntil(func() bool { return len(res) > 0 }, cancel, horizon) {
		return dialResult{}, false
	}
	select {
	case r = <-res:
		return r, true
	case <-cancel:
		return dialResult{}, false
	}
}

// pick chooses the loop for a dial: round-robin, or the loop with the
// fewest connections (dials in progress included).
func (c *Client) pick() *EventLoop {
	if c.cfg.balancer == LeastConns {
		return leastConns(c.loops)
	}
	return c.loops[(c.rr.Add(1)-1)%uint64(len(c.loops))]
}

// Shutdown stops the client gracefully: dials in progress fail with
// ErrClientClosed, every connection stops reading, flushes every byte
// already accepted by Write, and closes (lingering, as Conn.Close does;
// OnClose runs with a nil error), the loops stop, and Shutdown returns
// once every goroutine the client started has exited. If ctx ends first,
// it closes what is left at once (as Close does) and returns ctx.Err().
// A ShutdownHandler is told, as on a Server. It returns the error of a
// loop that failed, if one did. Calling it again, or after Close, waits
// for the same end. Called on one of the client's loops it begins the
// shutdown and returns ErrInLoop.
func (c *Client) Shutdown(ctx context.Context) error {
	c.beginStop(false)
	return c.finish(c.finishStop(ctx, c.stopAll))
}

// Close stops the client at once: dials in progress fail, connections
// close without flushing (OnClose receives an error wrapping
// ErrClientClosed where output was lost), the loops stop, and Close returns
// once their goroutines have exited. Called on one of the client's loops it
// begins the close and returns ErrInLoop.
func (c *Client) Close() error {
	c.beginStop(true)
	return c.finish(c.finishStop(context.Background(), c.stopAll))
}

// Stats returns a snapshot of the client's counters (Dialed, DialErrors,
// Open, Closed, bytes, per-loop load). Safe from any goroutine.
func (c *Client) Stats() Stats { return c.snapshot() }

// beginStop moves the client towards closed: the first call orders every
// loop to stop, gracefully or hard; a later hard one hurries a graceful
// stop under way.
func (c *Client) beginStop(hard bool) {
	c.mu.Lock()
	first := c.state == stateServing
	if first {
		c.state = stateShuttingDown
	}
	c.mu.Unlock()
	if first || hard {
		c.stopAll(hard)
	}
}

// stopAll tells every loop to stop: gracefully (drain, then stop) or hard.
// A loop that has stopped already has closed its connections.
func (c *Client) stopAll(hard bool) {
	for _, l := range c.loops {
		if hard {
			_ = l.Submit(l.stopHard)
		} else {
			_ = l.Submit(l.beginDrain)
		}
	}
}

// finish records a completed stop and returns err, or else the failure of
// a loop.
func (c *Client) finish(err error) error {
	if err == ErrInLoop {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state = stateClosed
	if err == nil {
		err = c.err
	}
	return err
}
