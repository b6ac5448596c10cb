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
// once on a second signal, and exits 0 only after a graceful stop.
package main

import (
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/tcpreactor/reactor/examples/http/httpd"
	"github.com/tcpreactor/reactor/examples/internal/graceful"
	"github.com/tcpreactor/reactor/examples/internal/tlsflag"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops serving connections (0: one loop accepts and serves)")
	dispatcher := flag.String("dispatcher", "epoll", "readiness backend: epoll or poll")
	maxBody := flag.Int64("max-body", 1<<20, "largest request body accepted, in bytes (1 to 1 GiB)")
	timeout := flag.Duration("shutdown-timeout", 5*time.Second, "time allowed for a graceful shutdown")
	var tlsFlags tlsflag.Flags
	tlsFlags.Register(flag.CommandLine)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Buffered for two: the second signal closes hard during the shutdown.
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)

	tlsConfig, selfSigned, err := tlsFlags.Config("http/1.1")
	if err != nil {
		log.Error("http", "err", err)
		os.Exit(1)
	}
	srv, err := httpd.NewServer(*addr, *loops, *dispatcher, log, httpd.WithMaxBodyBytes(*maxBody), httpd.WithTLS(tlsConfig))
	if err != nil {
		log.Error("http", "err", err)
		os.Exit(1)
	}
	log.Info("http server listening", "addr", srv.Addr(), "loops", *loops, "tls", tlsFlags.On, "self-signed", selfSigned)
	if err := graceful.Run(srv, stop, *timeout, log); err != nil {
		log.Error("http", "err", err)
		os.Exit(1)
	}
	log.Info("http server stopped")
}
