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
// other fails; Proxy in proxy.go says how. It stops gracefully on SIGINT or
// SIGTERM.
package main

import (
	"context"
	"errors"
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
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9100", "address to listen on")
	upstream := flag.String("upstream", "127.0.0.1:9000", "address to relay to (host:port; a name is resolved for each connection)")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops (0: one loop accepts and relays)")
	dispatcher := flag.String("dispatcher", "epoll", "readiness backend: epoll or poll")
	dialTimeout := flag.Duration("dial-timeout", 5*time.Second, "bound on each upstream dial")
	highWater := flag.Int("high-water", 256<<10, "bytes of output pending on one side before the proxy stops reading the other")
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
		defer pprof.StopCPUProfile()
	}
	if err := run(*listen, *upstream, *loops, *dispatcher, *dialTimeout, *highWater, log); err != nil {
		log.Error("proxy", "err", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(listen, upstream string, loops int, dispatcher string, dialTimeout time.Duration, highWater int, log *slog.Logger) error {
	var backend reactor.DispatcherFactory
	switch dispatcher {
	case "epoll":
		backend = reactor.Epoll
	case "poll":
		backend = reactor.Poll
	default:
		return fmt.Errorf("unknown -dispatcher %q (want epoll or poll)", dispatcher)
	}
	srv, err := newServer(listen, &Proxy{Upstream: upstream, DialTimeout: dialTimeout, Log: log},
		reactor.WithLoops(loops),
		reactor.WithDispatcher(backend),
		reactor.WithHighWaterMark(highWater),
		reactor.WithLogger(log),
	)
	if err != nil {
		return err
	}
	log.Info("proxy listening", "addr", srv.Addr(), "upstream", upstream, "loops", loops, "dispatcher", dispatcher)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Error("shutdown", "err", err)
		}
	}()
	if err := srv.Serve(); !errors.Is(err, reactor.ErrServerClosed) {
		return err
	}
	log.Info("proxy stopped")
	return nil
}

// newServer makes the proxy's server: p's handler on listen, with the
// options the proxy needs on top of opts. TCP_NODELAY is on (the default):
// a relay must not add Nagle's delay to what it forwards.
func newServer(listen string, p *Proxy, opts ...reactor.Option) (*reactor.Server, error) {
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
	return reactor.NewServer(listen, p, opts...)
}
