// This file holds group: what the connections of one Server share — the
// configuration, the handler they start with, the event loops, the
// counters and, over the simulation, its trace. The C design's tcp_server
// held these itself; they are apart here so that every connection, however
// it was made, reaches them the same way. A group is built before any loop
// runs and read-only afterwards, but for its atomic counters.

package reactor

import (
	"log/slog"

	"github.com/tcpreactor/reactor/internal/kernel"
)

type group struct {
	cfg      config
	handler  Handler // the handler new connections start with
	log      *slog.Logger
	k        kernel.Interface
	loops    []*EventLoop                     // the loops that serve connections
	allLoops []*EventLoop                     // every loop the group runs
	driver   simDriver                        // set when the loops run over a stepped simulation
	tracef   func(format string, args ...any) // the simulation's trace, or nil

	acceptors []*acceptor // a Server's listeners; resumed when a descriptor frees
	stats     serverStats
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
