// Command http is a small but honest HTTP/1.1 server on reactor.
//
//	go run ./examples/http -addr 127.0.0.1:8080
//	curl -i http://127.0.0.1:8080/
//
// It parses the request line and headers properly, reads Content-Length
// bodies, keeps connections alive, answers pipelined requests in order with
// all the responses to one read written in one flush, honours
// "Connection: close", and answers malformed requests with 400 and oversized
// heads with 431 (then closes). GET / answers "Hello, World!", POST /echo
// echoes the body; the server itself is package httpd.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/examples/http/httpd"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops serving connections (0: one loop accepts and serves)")
	dispatcher := flag.String("dispatcher", "epoll", "readiness backend: epoll or poll")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	srv, err := httpd.NewServer(*addr, *loops, *dispatcher, log)
	if err != nil {
		log.Error("http", "err", err)
		os.Exit(1)
	}
	log.Info("http server listening", "addr", srv.Addr(), "loops", *loops)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // on timeout it has already closed hard
	}()
	if err := srv.Serve(); !errors.Is(err, reactor.ErrServerClosed) {
		log.Error("http", "err", err)
		os.Exit(1)
	}
}
