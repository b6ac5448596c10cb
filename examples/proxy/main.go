// Command proxy is a TCP proxy on reactor: every connection accepted on
// -listen is relayed, both ways, to a connection it dials to -upstream.
//
//	go run ./examples/echo &                  # an upstream on 127.0.0.1:9000
//	go run ./examples/proxy                   # 127.0.0.1:9100 -> 127.0.0.1:9000
//	go run ./examples/proxy -listen 127.0.0.1:6380 -upstream 127.0.0.1:6379 -loops 2
//
// Then `nc 127.0.0.1 9100` talks to the upstream through it. The upstream is
// dialled from OnOpen on the accepting connection's own event loop
// (EventLoop.Dial), so the two connections of a pair share a goroutine and
// the relay needs no lock. The proxy applies backpressure across each pair
// (a slow reader on one side stops the proxy reading from the other),
// passes half-closes on in both directions, and closes one side when the
// other fails; Proxy in proxy.go says how. -listen may be unix:/path, and
// -upstream unix:/path, for Unix domain sockets.
//
// It stops gracefully on SIGINT or SIGTERM: what was relayed is flushed
// first, within -shutdown-timeout; a second signal stops it at once. It
// exits 0 only after a graceful stop.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/examples/internal/graceful"
)

// options are the command's flags.
type options struct {
	listen, upstream string
	loops            int
	dispatcher       string
	dialTimeout      time.Duration
	highWater        int
	timeout          time.Duration // for the graceful shutdown
}

func main() {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:9100", "address to listen on: host:port, or unix:/path")
	flag.StringVar(&o.upstream, "upstream", "127.0.0.1:9000", "address to relay to: host:port (a name is resolved for each connection), or unix:/path")
	flag.IntVar(&o.loops, "loops", runtime.GOMAXPROCS(0), "event loops (0: one loop accepts and relays)")
	flag.StringVar(&o.dispatcher, "dispatcher", "epoll", "readiness backend: epoll or poll")
	flag.DurationVar(&o.dialTimeout, "dial-timeout", 5*time.Second, "bound on each upstream dial")
	flag.IntVar(&o.highWater, "high-water", 256<<10, "bytes of output pending on one side before the proxy stops reading the other")
	flag.DurationVar(&o.timeout, "shutdown-timeout", 5*time.Second, "time allowed for a graceful shutdown")
	verbose := flag.Bool("v", false, "log every connection")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file until the proxy stops")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			log.Error("proxy", "err", err)
			os.Exit(1)
		}
	}
	// Buffered for two: the second signal closes hard during the shutdown.
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	err := run(o, stop, log)
	pprof.StopCPUProfile()
	if err != nil {
		log.Error("proxy", "err", err)
		os.Exit(1)
	}
}

// run serves until a signal on stop, then shuts down (see graceful.Run).
func run(o options, stop <-chan os.Signal, log *slog.Logger) error {
	var backend reactor.DispatcherFactory
	switch o.dispatcher {
	case "epoll":
		backend = reactor.Epoll
	case "poll":
		backend = reactor.Poll
	default:
		return fmt.Errorf("unknown -dispatcher %q (want epoll or poll)", o.dispatcher)
	}
	srv, err := newServer(o.listen, &Proxy{Upstream: o.upstream, DialTimeout: o.dialTimeout, Log: log},
		reactor.WithLoops(o.loops),
		reactor.WithDispatcher(backend),
		reactor.WithHighWaterMark(o.highWater),
		reactor.WithLogger(log),
	)
	if err != nil {
		return err
	}
	log.Info("proxy listening", "addr", srv.Addr(), "upstream", o.upstream, "loops", o.loops, "dispatcher", o.dispatcher)
	if err := graceful.Run(srv, stop, o.timeout, log); err != nil {
		return err
	}
	log.Info("proxy stopped")
	return nil
}

// newServer makes the proxy's server: p's handler on listen, with opts.
// TCP_NODELAY is on (the default): a relay must not add Nagle's delay to
// what it forwards.
func newServer(listen string, p *Proxy, opts ...reactor.Option) (*reactor.Server, error) {
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
	return reactor.NewServer(listen, p, opts...)
}
