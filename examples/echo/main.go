// Command echo is a TCP echo server on reactor: every byte a client sends
// comes back to it.
//
//	go run ./examples/echo -addr 127.0.0.1:9000 -loops 2 -dispatcher epoll
//	go run ./examples/echo -tls                          # TLS, self-signed certificate
//	go run ./examples/echo -tls -cert cert.pem -key key.pem
//
// Talk to it with any TCP client, for example `nc 127.0.0.1 9000`, or,
// with -tls, `openssl s_client -connect 127.0.0.1:9000`. It stops
// gracefully on SIGINT or SIGTERM: output already written is flushed first,
// within -shutdown-timeout; a second signal stops it at once. It exits 0
// only after a graceful stop, and 1 when the shutdown had to close
// connections hard (time ran out, or a second signal) or it failed.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/examples/internal/graceful"
	"github.com/tcpreactor/reactor/examples/internal/tlsflag"
)

// options are the command's flags.
type options struct {
	addr       string
	loops      int
	dispatcher string
	reusePort  bool
	quiet      bool
	timeout    time.Duration // for the graceful shutdown
	tls        tlsflag.Flags
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:9000", "address to listen on")
	flag.IntVar(&o.loops, "loops", runtime.GOMAXPROCS(0), "event loops serving connections (0: one loop accepts and serves)")
	flag.StringVar(&o.dispatcher, "dispatcher", "epoll", "readiness backend: epoll or poll")
	flag.BoolVar(&o.reusePort, "reuseport", false, "one SO_REUSEPORT listener per loop")
	flag.BoolVar(&o.quiet, "quiet", false, "log nothing per connection")
	flag.DurationVar(&o.timeout, "shutdown-timeout", 5*time.Second, "time allowed for a graceful shutdown")
	o.tls.Register(flag.CommandLine)
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Buffered for two: the second signal closes hard during the shutdown.
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	if err := run(o, stop, log); err != nil {
		log.Error("echo", "err", err)
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

	h := reactor.HandlerFuncs{
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			// Write copies, so the input can be consumed right away.
			_, _ = c.Write(in.Next(in.Len())) // fails only once the connection is closing
		},
	}
	if !o.quiet {
		h.Open = func(c *reactor.Conn) { log.Info("open", "peer", c.RemoteAddr()) }
		h.Close = func(c *reactor.Conn, err error) { log.Info("close", "peer", c.RemoteAddr(), "err", err) }
	}

	tlsConfig, selfSigned, err := o.tls.Config()
	if err != nil {
		return err
	}
	srv, err := reactor.NewServer(o.addr, h,
		reactor.WithLoops(o.loops),
		reactor.WithDispatcher(backend),
		reactor.WithReusePort(o.reusePort),
		reactor.WithTLS(tlsConfig),
		reactor.WithLogger(log),
	)
	if err != nil {
		return err
	}
	log.Info("echo server listening", "addr", srv.Addr(), "loops", o.loops, "dispatcher", o.dispatcher, "reuseport", o.reusePort,
		"tls", o.tls.On, "self-signed", selfSigned)
	if err := graceful.Run(srv, stop, o.timeout, log); err != nil {
		return err
	}
	log.Info("echo server stopped")
	return nil
}
