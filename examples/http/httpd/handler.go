// Package httpd is the HTTP/1.1 server of examples/http, as a package so
// that the benchmarks (bench/servers/reactor-http) measure exactly the
// example: a strict request parser (parse.go), a response writer
// (response.go) and a reactor Handler that answers pipelined requests in
// order with one write per read (this file).
//
// Routes:
//
//	GET  /           "Hello, World!" (also /plaintext, for wrk-style benchmarks)
//	POST /echo       the request body
//	anything else    404
//
// HEAD works wherever GET does. Chunked request bodies are answered with 501.
package httpd

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tcpreactor/reactor"
)

// NewServer builds the HTTP server on addr over the named dispatcher
// ("epoll" or "poll"), with loops event loops (see reactor.WithLoops).
func NewServer(addr string, loops int, dispatcher string, log *slog.Logger) (*reactor.Server, error) {
	var backend reactor.DispatcherFactory
	switch dispatcher {
	case "epoll":
		backend = reactor.Epoll
	case "poll":
		backend = reactor.Poll
	default:
		return nil, fmt.Errorf("unknown -dispatcher %q (want epoll or poll)", dispatcher)
	}
	return reactor.NewServer(addr, NewHandler(),
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

// NewHandler returns the server's reactor.Handler. It is safe to share
// between loops: all per-read state lives in a pooled scratch.
func NewHandler() reactor.Handler {
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
