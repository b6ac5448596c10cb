// Command http is a small but honest HTTP/1.1 server on reactor.
//
//	go run ./examples/http -addr 127.0.0.1:8080
//	curl -i http://127.0.0.1:8080/
//	go run ./examples/http -tls                          # HTTPS, self-signed: curl -k https://...
//	go run ./examples/http -tls -cert cert.pem -key key.pem
//	curl -H 'Transfer-Encoding: chunked' --data-binary @file http://127.0.0.1:8080/echo
//
// It parses the request line and headers properly, reads Content-Length
// and chunked bodies, answers "Expect: 100-continue" at once, keeps
// connections alive, answers pipelined requests in order with all the
// responses to one read written in one flush, honours "Connection: close",
// and answers bad requests with 400, oversized heads with 431, bodies over
// -max-body with 413 (each with "Connection: close", then closes). GET /
// answers "Hello, World!", POST /echo echoes the body; the server itself is
// package httpd.
//
// It stops gracefully on SIGINT or SIGTERM within -shutdown-timeout, at
// once on a second signal, and exits 0 only after a graceful stop. On
// SIGHUP it restarts without downtime, as examples/echo does: a new process
// takes over the listening socket (with -reuseport, binds its own beside
// it), and this one answers the requests under way, then exits 0; -pidfile
// keeps the PID of the process serving.
package main

import (
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/examples/http/httpd"
	"github.com/tcpreactor/reactor/examples/internal/restart"
	"github.com/tcpreactor/reactor/examples/internal/tlsflag"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops serving connections (0: one loop accepts and serves)")
	dispatcher := flag.String("dispatcher", "epoll", "readiness backend: epoll or poll")
	maxBody := flag.Int64("max-body", 1<<20, "largest request body accepted, in bytes (1 to 1 GiB)")
	timeout := flag.Duration("shutdown-timeout", 5*time.Second, "time allowed for a graceful shutdown")
	reusePort := flag.Bool("reuseport", false, "one SO_REUSEPORT listener per loop; SIGHUP restarts beside it")
	pidFile := flag.String("pidfile", "", "file to keep the PID of the serving process in (it changes on SIGHUP)")
	proxy := flag.Bool("proxy", false, "expect a PROXY protocol header (v1 or v2, as HAProxy's send-proxy sends) on every connection: only behind a load balancer")
	var tlsFlags tlsflag.Flags
	tlsFlags.Register(flag.CommandLine)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Buffered for two: the second signal closes hard during the shutdown.
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)

	tlsConfig, selfSigned, err := tlsFlags.Config("http/1.1")
	if err != nil {
		log.Error("http", "err", err)
		os.Exit(1)
	}
	in, err := restart.Inherit()
	if err != nil {
		log.Error("http", "err", err)
		os.Exit(1)
	}
	listenAddr, inherited := in.Listen(*addr)
	srv, err := httpd.NewServer(listenAddr, *loops, *dispatcher, log, httpd.WithMaxBodyBytes(*maxBody),
		httpd.WithServerOptions(append(inherited, reactor.WithReusePort(*reusePort), reactor.WithTLS(tlsConfig),
			reactor.WithProxyProtocol(*proxy))...))
	in.CloseListeners() // the server holds its own descriptors
	if err != nil {
		log.Error("http", "err", err)
		os.Exit(1)
	}
	log.Info("http server listening", "addr", srv.Addr(), "loops", *loops, "reuseport", *reusePort, "pid", os.Getpid(),
		"tls", tlsFlags.On, "self-signed", selfSigned, "proxy", *proxy)
	cfg := restart.Config{ReusePort: *reusePort, PIDFile: *pidFile, ShutdownTimeout: *timeout, Log: log}
	if err := restart.Serve(srv, in, cfg, stop, hup); err != nil {
		log.Error("http", "err", err)
		os.Exit(1)
	}
	log.Info("http server stopped")
}
