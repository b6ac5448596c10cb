// Command echo is a TCP echo server on reactor: every byte a client sends
// comes back to it.
//
//	go run ./examples/echo -addr 127.0.0.1:9000 -loops 2 -dispatcher epoll
//
// Talk to it with any TCP client, for example `nc 127.0.0.1 9000`. It stops
// gracefully on SIGINT or SIGTERM: output already written is flushed first.
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
	"syscall"
	"time"

	"github.com/tcpreactor/reactor"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "address to listen on: host:port, or unix:/path (unix:@name: abstract)")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops serving connections (0: one loop accepts and serves)")
	dispatcher := flag.String("dispatcher", "epoll", "readiness backend: epoll or poll")
	reusePort := flag.Bool("reuseport", false, "one SO_REUSEPORT listener per loop")
	quiet := flag.Bool("quiet", false, "log nothing per connection")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, *loops, *dispatcher, *reusePort, *quiet, log); err != nil {
		log.Error("echo", "err", err)
		os.Exit(1)
	}
}

func run(addr string, loops int, dispatcher string, reusePort, quiet bool, log *slog.Logger) error {
	var backend reactor.DispatcherFactory
	switch dispatcher {
	case "epoll":
		backend = reactor.Epoll
	case "poll":
		backend = reactor.Poll
	default:
		return fmt.Errorf("unknown -dispatcher %q (want epoll or poll)", dispatcher)
	}

	h := reactor.HandlerFuncs{
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			// Write copies, so the input can be consumed right away.
			_, _ = c.Write(in.Next(in.Len())) // fails only once the connection is closing
		},
	}
	if !quiet {
		h.Open = func(c *reactor.Conn) { log.Info("open", "peer", c.RemoteAddr()) }
		h.Close = func(c *reactor.Conn, err error) { log.Info("close", "peer", c.RemoteAddr(), "err", err) }
	}

	srv, err := reactor.NewServer(addr, h,
		reactor.WithLoops(loops),
		reactor.WithDispatcher(backend),
		reactor.WithReusePort(reusePort),
		reactor.WithLogger(log),
	)
	if err != nil {
		return err
	}
	log.Info("echo server listening", "addr", srv.Addr(), "loops", loops, "dispatcher", dispatcher, "reuseport", reusePort)

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
	log.Info("echo server stopped")
	return nil
}
