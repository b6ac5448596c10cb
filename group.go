// This file holds group: what the connections of one Server or Client
// share — the configuration, the handler they start with, the event loops,
// the counters and, over the simulation, its trace — and the life of those
// loops, from their creation to the stop that waits for them. The C
// design's tcp_server held these itself; they are apart here so that every
// connection, accepted or dialled, reaches them the same way, and so that a
// Server and a Client run and stop their loops with the same code. A group
// is built before any loop runs and read-only afterwards, but for its
// atomic counters and its wait groups.

package reactor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/kernel"
)

type group struct {
	cfg       config
	handler   Handler // the handler new connections start with
	log       *slog.Logger
	k         kernel.Interface
	loops     []*EventLoop                     // the loops that serve connections
	allLoops  []*EventLoop                     // every loop the group runs
	driver    simDriver                        // set when the loops run over a stepped simulation
	tracef    func(format string, args ...any) // the simulation's trace, or nil
	closedErr error                            // ErrServerClosed or ErrClientClosed: the error of what a stop ends
	dialTLS   *tls.Config                      // what a dial speaks unless DialTLS says: a Client's WithTLS; nil (plain) for a Server

	// lookup resolves a host name for a dial; nil over the simulation,
	// which has no DNS. Tests replace it.
	lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)

	acceptors []*acceptor // a Server's listeners; resumed when a descriptor frees
	stats     serverStats

	wg        sync.WaitGroup // the loop goroutines
	resolvers sync.WaitGroup // the goroutines resolving host names for dials
	done      chan struct{}  // closed when every loop goroutine has returned
}

// simDriver is implemented by the mock dispatcher when its simulation is
// stepped: loops over it only run when the simulation is driven, so a
// Shutdown or Close waiting for the loops must drive it until done() holds
// (or cancel is closed, then it returns false).
type simDriver interface {
	runUntil(done func() bool, cancel <-chan struct{}, horizon time.Duration) bool
}

// init configures g for h with opts, validated; caller names what calls
// it in errors ("NewServer").
func (g *group) init(caller string, h Handler, opts []Option, closedErr error) error {
	if h == nil {
		return fmt.Errorf("reactor: %s: nil Handler", caller)
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		if opt == nil {
			return fmt.Errorf("reactor: %s: nil Option", caller)
		}
		opt(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	g.cfg, g.handler, g.log, g.closedErr, g.done = cfg, h, cfg.logger, closedErr, make(chan struct{})
	return nil
}

// newLoop creates an event loop over a new Dispatcher and adds it to
// allLoops. Every loop of a group must watch the same network: the first
// one's kernel seam is the group's.
func (g *group) newLoop(name string) (*EventLoop, error) {
	d, err := g.cfg.dispatcher()
	if err != nil {
		return nil, fmt.Errorf("reactor: creating dispatcher: %w", err)
	}
	l := newEventLoop(name, d, g, g.log, g.cfg.readBufferSize)
	l.recoverOn = g.cfg.recoverPanics
	if len(g.allLoops) > 0 && l.k != g.allLoops[0].k {
		_ = d.Close() // not yet used by anything
		return nil, errors.New("reactor: WithDispatcher: the factory's dispatchers do not share one network")
	}
	if len(g.allLoops) == 0 {
		g.k = l.k
		g.lookup = lookupHost
		if md := simDispatcher(d); md != nil {
			g.driver = md
			g.tracef = md.simKernel().Tracef
			g.lookup = nil // the simulation has no DNS, and must not wait for a real one
		}
	}
	l.tracing = g.tracef != nil
	g.allLoops = append(g.allLoops, l)
	return l, nil
}

// lookupHost resolves a host name with the default resolver.
func lookupHost(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}

// release closes the listeners and dispatchers of a group whose loops never
// ran.
func (g *group) release() {
	for _, a := range g.acceptors {
		a.close()
	}
	for _, l := range g.allLoops {
		_ = l.d.Close() // nothing is registered any more
		l.mu.Lock()
		l.closedQ = true
		l.tasks, l.timerIn = nil, nil
		l.mu.Unlock()
		l.state.Store(loopStopped)
		close(l.done)
	}
}

// runLoop is the body of one loop goroutine (the C design's
// event_loop_thread). failed is told if the loop's Dispatcher fails.
func (g *group) runLoop(l *EventLoop, failed func(error)) {
	defer g.wg.Done()
	if g.cfg.lockOSThread {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	if err := l.Run(); err != nil {
		g.log.Error("reactor: event loop failed", "loop", l.name, "err", err)
		failed(err)
	}
}

// onLoop reports whether the calling goroutine runs one of the group's
// event loops.
func (g *group) onLoop() bool {
	id := goroutineID()
	for _, l := range g.allLoops {
		if l.gid.Load() == id {
			return true
		}
	}
	return false
}

// finishStop waits for a stop that has begun (stopAll ordered it): until
// every loop has returned and every name lookup has ended. If ctx ends
// first, it orders a hard stop and returns ctx.Err() once that is done.
// Called on one of the group's loops it cannot wait, and returns ErrInLoop.
func (g *group) finishStop(ctx context.Context, stopAll func(hard bool)) error {
	if g.onLoop() {
		return ErrInLoop
	}
	var err error
	if g.waitLoops(ctx.Done()) != nil {
		stopAll(true)
		_ = g.waitLoops(nil)
		err = ctx.Err()
	}
	g.resolvers.Wait() // each was cancelled when its dial failed with the stop
	return err
}

// waitLoops waits until every loop has returned (driving the simulation if
// the loops run over one), or cancel is closed. It returns an error only on
// cancel.
func (g *group) waitLoops(cancel <-chan struct{}) error {
	if g.driver != nil && !g.driver.runUntil(g.loopsStopped, cancel, g.shutdownHorizon()) {
		return context.Canceled
	}
	select {
	case <-g.done:
		return nil
	case <-cancel:
		return context.Canceled
	}
}

// shutdownHorizon is how far a stepped simulation's clock may move while a
// Shutdown or Close waits for the loops: a minute beyond the linger timeout,
// time for lingering closes and for what handlers do on their own timers
// when told of the shutdown (ShutdownHandler), but bounded, so that a timer
// that rearms itself for ever cannot keep the shutdown going. Virtual time
// passes only while the simulation is otherwise idle.
func (g *group) shutdownHorizon() time.Duration {
	return deadlineAfter(g.k.Now(), deadlineAfter(g.cfg.lingerTimeout, time.Minute))
}

// loopsStopped reports whether every loop has returned from Run.
func (g *group) loopsStopped() bool {
	for _, l := range g.allLoops {
		select {
		case <-l.done:
		default:
			return false
		}
	}
	return true
}

// connGone is called when a connection's descriptor has been closed: it
// frees a slot under WithMaxConns and lets a paused acceptor try again at
// once, since a descriptor is now free. Any loop goroutine.
func (g *group) connGone() {
	g.stats.open.Add(-1)
	for _, a := range g.acceptors {
		if a.pausedNow.Load() {
			_ = a.loop.Submit(a.resume) // a stopped loop accepts no more anyway
		}
	}
}

// setSockopts applies TCP_NODELAY and keep-alive to a TCP connection's
// socket. Failures are logged, not fatal: the connection works without
// them.
func (g *group) setSockopts(fd int) {
	if g.cfg.noDelay {
		if err := g.k.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			g.log.Debug("reactor: TCP_NODELAY", "err", err)
		}
	}
	if ka := g.cfg.keepAlive; ka > 0 {
		secs := int(ka / time.Second)
		for _, o := range [...]struct{ level, opt, v int }{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs},
		} {
			if err := g.k.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
				g.log.Debug("reactor: keep-alive", "err", err)
				break
			}
		}
	}
}
