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
//
// On SIGHUP it restarts without refusing or resetting a connection: it
// starts a new echo process with the same arguments, hands it the listening
// socket, and once the new process serves, shuts down gracefully, logs the
// new PID and exits 0 (see package examples/internal/restart). With
// -reuseport the new process binds its own SO_REUSEPORT sockets beside the
// old ones instead, which needs net.ipv4.tcp_migrate_req=1 to lose nothing.
// -pidfile names a file that always holds the PID of the process serving:
//
//	go run ./examples/echo -pidfile /tmp/echo.pid &
//	kill -HUP $(cat /tmp/echo.pid)   # a new process takes over
//	kill $(cat /tmp/echo.pid)        # stop whichever serves now
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
	"github.com/tcpreactor/reactor/examples/internal/restart"
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
	pidFile    string
	proxy      bool // expect a PROXY protocol header on every connection
	tls        tlsflag.Flags
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:9000", "address to listen on: host:port, or unix:/path (unix:@name: abstract)")
	flag.IntVar(&o.loops, "loops", runtime.GOMAXPROCS(0), "event loops serving connections (0: one loop accepts and serves)")
	flag.StringVar(&o.dispatcher, "dispatcher", "epoll", "readiness backend: epoll or poll")
	flag.BoolVar(&o.reusePort, "reuseport", false, "one SO_REUSEPORT listener per loop")
	flag.BoolVar(&o.quiet, "quiet", false, "log nothing per connection")
	flag.DurationVar(&o.timeout, "shutdown-timeout", 5*time.Second, "time allowed for a graceful shutdown")
	flag.StringVar(&o.pidFile, "pidfile", "", "file to keep the PID of the serving process in (it changes on SIGHUP)")
	flag.BoolVar(&o.proxy, "proxy", false, "expect a PROXY protocol header (v1 or v2, as HAProxy's send-proxy sends) on every connection: only behind a load balancer")
	o.tls.Register(flag.CommandLine)
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Buffered for two: the second signal closes hard during the shutdown.
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if err := run(o, stop, hup, log); err != nil {
		log.Error("echo", "err", err)
		os.Exit(1)
	}
}

// run serves until a signal on stop, then shuts down (see graceful.Run), or
// until a restart on a signal from hup has handed over to a new process
// (see restart.Serve).
func run(o options, stop, hup <-chan os.Signal, log *slog.Logger) error {
	// The flags are checked before Inherit, so that an error in them leaves
	// no inherited listener to close.
	var backend reactor.DispatcherFactory
	switch o.dispatcher {
	case "epoll":
		backend = reactor.Epoll
	case "poll":
		backend = reactor.Poll
	default:
		return fmt.Errorf("unknown -dispatcher %q (want epoll or poll)", o.dispatcher)
	}

	tlsConfig, selfSigned, err := o.tls.Config()
	if err != nil {
		return err
	}
	in, err := restart.Inherit()
	if err != nil {
		return err
	}
	addr, inherited := in.Listen(o.addr)

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

	srv, err := reactor.NewServer(addr, h, append(inherited,
		reactor.WithLoops(o.loops),
		reactor.WithDispatcher(backend),
		reactor.WithReusePort(o.reusePort),
		reactor.WithTLS(tlsConfig),
		reactor.WithProxyProtocol(o.proxy),
		reactor.WithLogger(log),
	)...)
	in.CloseListeners() // the server holds its own descriptors
	if err != nil {
		return err
	}
	log.Info("echo server listening", "addr", srv.Addr(), "loops", o.loops, "dispatcher", o.dispatcher, "reuseport", o.reusePort, "pid", os.Getpid(),
		"tls", o.tls.On, "self-signed", selfSigned, "proxy", o.proxy)
	cfg := restart.Config{ReusePort: o.reusePort, PIDFile: o.pidFile, ShutdownTimeout: o.timeout, Log: log}
	if err := restart.Serve(srv, in, cfg, stop, hup); err != nil {
		return err
	}
	log.Info("echo server stopped")
	return nil
}
