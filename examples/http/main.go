// Command http is a small but honest HTTP/1.1 server on reactor.
//
//	go run ./examples/http -addr 127.0.0.1:8080
//	curl -i http://127.0.0.1:8080/
//
// It parses the request line and headers properly (parse.go), reads
// Content-Length bodies, keeps connections alive, answers pipelined requests
// in order with all the responses to one read written in one flush, honours
// "Connection: close", and answers malformed requests with 400, oversized
// heads with 431 (then closes). Routes:
//
//	GET  /           "Hello, World!" (also /plaintext, for wrk-style benchmarks)
//	POST /echo       the request body
//	anything else    404
//
// HEAD works wherever GET does. Chunked request bodies are answered with 501.
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
	"sync"
	"syscall"
	"time"

	"github.com/tcpreactor/reactor"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops serving connections (0: one loop accepts and serves)")
	dispatcher := flag.String("dispatcher", "epoll", "readiness backend: epoll or poll")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	srv, err := newServer(*addr, *loops, *dispatcher, log)
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

// newServer builds the HTTP server on addr.
func newServer(addr string, loops int, dispatcher string, log *slog.Logger) (*reactor.Server, error) {
	var backend reactor.DispatcherFactory
	switch dispatcher {
	case "epoll":
		backend = reactor.Epoll
	case "poll":
		backend = reactor.Poll
	default:
		return nil, fmt.Errorf("unknown -dispatcher %q (want epoll or poll)", dispatcher)
	}
	return reactor.NewServer(addr, newHandler(),
		reactor.WithLoops(loops),
		reactor.WithDispatcher(backend),
		reactor.WithLogger(log),
		// The most a connection may hold unconsumed: one request at the
		// parser's limits, plus a read's worth of the next.
		reactor.WithMaxInputSize(maxHeaderBytes+maxBodyBytes+64<<10),
		reactor.WithIdleTimeout(2*time.Minute),
	)
}

// scratch is what answering one read's requests needs: the request being
// parsed, the responses being built and the Date header. A scratch is taken
// from a pool for the length of one OnMessage, so it has one owner at a
// time, and the handler allocates nothing per request once the pool is warm.
type scratch struct {
	req  request
	out  []byte
	date dateCache
}

type handler struct {
	reactor.HandlerFuncs
	pool sync.Pool // of *scratch
}

func newHandler() *handler {
	h := &handler{}
	h.pool.New = func() any { return &scratch{out: make([]byte, 0, 4<<10)} }
	return h
}

var (
	helloBody  = []byte("Hello, World!")
	notFound   = []byte("404 page not found\n")
	textPlain  = "text/plain; charset=utf-8"
	octetBytes = "application/octet-stream"
)

// OnMessage answers every complete request in in, in order, appending all the
// responses to one buffer that is written once: a pipelined burst costs one
// write(2). It consumes exactly the complete requests and leaves a partial
// one for the next call. After a request that asks to close, or a malformed
// one, it stops, answers, and closes once the answers are flushed.
func (h *handler) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	s := h.pool.Get().(*scratch)
	b := in.Bytes()
	consumed, closing := 0, false
	var date []byte
	for consumed < len(b) && !closing {
		n, err := parseRequest(b[consumed:], &s.req)
		if errors.Is(err, errNeedMore) {
			break
		}
		if date == nil {
			date = s.date.get(time.Now())
		}
		if err != nil {
			status := errorStatus(err)
			s.out = appendResponse(s.out, date, status, textPlain, []byte(statusText(status)+"\n"), connClose)
			consumed, closing = len(b), true
			break
		}
		consumed += n
		conn := s.req.responseConn()
		closing = conn == connClose
		s.out = h.respond(s.out, date, &s.req, conn)
	}
	in.Discard(consumed)
	if len(s.out) > 0 {
		_, _ = c.Write(s.out) // fails only if the connection is already closing
	}
	if closing {
		_ = c.Close() // after the responses are flushed
	}
	s.out = s.out[:0]
	h.pool.Put(s)
}

// respond appends the response to req.
func (h *handler) respond(dst, date []byte, req *request, conn connHeader) []byte {
	head := is(req.method, "HEAD")
	var status int
	var ctype string
	var body []byte
	switch {
	case (head || is(req.method, "GET")) && (is(req.path, "/") || is(req.path, "/plaintext")):
		status, ctype, body = 200, textPlain, helloBody
	case is(req.method, "POST") && is(req.path, "/echo"):
		status, ctype, body = 200, octetBytes, req.body
	default:
		status, ctype, body = 404, textPlain, notFound
	}
	if head {
		return appendResponseHead(dst, date, status, ctype, len(body), conn)
	}
	return appendResponse(dst, date, status, ctype, body, conn)
}

// is compares b with s; the compiler does this without converting b (no
// allocation), which it would not do for a string(b) kept in a variable.
func is(b []byte, s string) bool { return string(b) == s }
