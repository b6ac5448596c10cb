// Package httpd is the HTTP/1.1 server of examples/http, as a package so
// that the benchmarks (bench/servers/reactor-http) measure exactly the
// example: a strict request parser (parse.go), a chunked body decoder
// (chunked.go), a response writer (response.go) and a reactor Handler that
// answers pipelined requests in order with one write per read (this file).
//
// Routes:
//
//	GET  /           "Hello, World!" (also /plaintext, for wrk-style benchmarks)
//	POST /echo       the request body
//	anything else    404
//
// HEAD works wherever GET does. Request bodies come with Content-Length or
// chunked; a client that sends "Expect: 100-continue" is told "100 Continue"
// as soon as its head is read. A request the server rejects (400, 413, 417,
// 431, 501, 505) is answered with "Connection: close" and the connection is
// closed; so is one that asked to close.
package httpd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tcpreactor/reactor"
)

// config is what the Options set.
type config struct {
	maxBody int64            // see WithMaxBodyBytes
	extra   []reactor.Option // see WithServerOptions
}

// Option configures NewServer or NewHandler.
type Option func(*config)

// WithMaxBodyBytes sets the largest request body the server accepts, with
// Content-Length or chunked: a larger one is answered with 413 and the
// connection closed, as soon as the head (or the chunk-size line) that
// announces it is read. The default is 1 MiB; n must be in 1..1 GiB. It
// costs memory: a connection may hold a whole body of this size (in its
// input for Content-Length, in a body buffer for chunked).
func WithMaxBodyBytes(n int64) Option { return func(c *config) { c.maxBody = n } }

// WithServerOptions adds reactor options to those NewServer passes to
// reactor.NewServer (after them, so they win): an inherited listener
// (reactor.WithListener) or WithReusePort, for a restart. NewHandler
// ignores them.
func WithServerOptions(opts ...reactor.Option) Option {
	return func(c *config) { c.extra = append(c.extra, opts...) }
}

func newConfig(opts []Option) (config, error) {
	c := config{maxBody: maxBodyBytes}
	for _, o := range opts {
		o(&c)
	}
	if c.maxBody < 1 || c.maxBody > maxBodyLimit {
		return c, fmt.Errorf("httpd: WithMaxBodyBytes(%d): must be in 1..%d", c.maxBody, maxBodyLimit)
	}
	return c, nil
}

// NewServer builds the HTTP server on addr over the named dispatcher
// ("epoll" or "poll"), with loops event loops (see reactor.WithLoops).
func NewServer(addr string, loops int, dispatcher string, log *slog.Logger, opts ...Option) (*reactor.Server, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	var backend reactor.DispatcherFactory
	switch dispatcher {
	case "epoll":
		backend = reactor.Epoll
	case "poll":
		backend = reactor.Poll
	default:
		return nil, fmt.Errorf("unknown -dispatcher %q (want epoll or poll)", dispatcher)
	}
	ropts := append(cfg.serverOptions(),
		reactor.WithLoops(loops),
		reactor.WithDispatcher(backend),
		reactor.WithLogger(log),
	)
	h := newHandler(cfg)
	srv, err := reactor.NewServer(addr, h, append(ropts, cfg.extra...)...)
	if err != nil {
		return nil, err
	}
	// Set before Serve starts the loops that read it.
	h.stats = srv.ExpvarStats().String
	return srv, nil
}

// serverOptions returns the reactor options the server needs for cfg.
func (c config) serverOptions() []reactor.Option {
	return []reactor.Option{
		// The most a connection may hold unconsumed: one request at the
		// parser's limits, plus a read's worth of the next. (A chunked body
		// is consumed as it arrives and holds at most a line.)
		reactor.WithMaxInputSize(maxHeaderBytes + int(c.maxBody) + 64<<10),
		reactor.WithIdleTimeout(2 * time.Minute),
	}
}

// scratch is what answering one read's requests needs: the request being
// parsed, the responses being built and the Date header. A scratch is taken
// from a pool for the length of one OnMessage, so it has one owner at a
// time, and the handler allocates nothing per request once the pool is warm.
type scratch struct {
	req  request
	out  []byte
	date dateCache
	now  []byte // the Date value for this OnMessage, once one is needed
}

// dateNow returns the Date value for the responses of this OnMessage,
// formatting it at most once a second.
func (s *scratch) dateNow() []byte {
	if s.now == nil {
		s.now = s.date.get(time.Now())
	}
	return s.now
}

// chunkedBody is a connection's state while the chunked body of its
// current request arrives over several reads; it is the connection's
// Context, made at its first chunked request and kept for the next. The
// request's head has been consumed by then, so what the response needs from
// it is kept here. Owned by the connection's loop goroutine, like the Conn.
type chunkedBody struct {
	connState
	active bool // a body is being decoded
	rt     route
	head   bool // a HEAD request: the response has no body
	conn   connHeader
	dec    chunkedDecoder
	data   []byte // the body decoded so far
}

// keepBodyCap is the largest body buffer a connection keeps between
// chunked requests; a larger one is dropped rather than held while idle.
const keepBodyCap = 64 << 10

// connState is what a connection remembers between reads for a graceful
// shutdown (see OnShutdown): whether a request is half received, and
// whether the server is shutting down, so that the next response closes the
// connection. A connection that never had a chunked body keeps it in one of
// the shared values below, with no allocation; one with a chunkedBody keeps
// it there.
type connState struct {
	partial bool // a request's first bytes have arrived, not yet all of it
	closing bool // the server is shutting down: close after the next response
}

var (
	statePartial        = &connState{partial: true}
	stateClosing        = &connState{closing: true}
	statePartialClosing = &connState{partial: true, closing: true}
)

// stateOf returns c's connState, nil for an idle connection that has no
// chunkedBody.
func stateOf(c *reactor.Conn) *connState {
	switch x := c.Context().(type) {
	case *chunkedBody:
		return &x.connState
	case *connState:
		return x
	}
	return nil
}

// setState records partial and closing for c.
func setState(c *reactor.Conn, partial, closing bool) {
	if cb, ok := c.Context().(*chunkedBody); ok {
		cb.partial, cb.closing = partial, closing
		return
	}
	switch {
	case partial && closing:
		c.SetContext(statePartialClosing)
	case partial:
		c.SetContext(statePartial)
	case closing:
		c.SetContext(stateClosing)
	default:
		c.SetContext(nil)
	}
}

// shutdownGrace is how long a connection that is idle when a graceful
// shutdown begins is kept open for a request already on its way: a client
// that sends its next request as soon as it has read a response (a load
// generator, a busy keep-alive client) would otherwise find the connection
// closed under it and count an error. A request that arrives within it is
// answered, with "Connection: close".
const shutdownGrace = 250 * time.Millisecond

// OnShutdown is called when a graceful Shutdown begins (reactor's
// ShutdownHandler). The connection's next response closes it, so a request
// the server has begun to read is answered, not dropped; an idle one is
// closed after shutdownGrace if no request arrives. (A request that arrives
// later still meets the lingering close: the client reads EOF, not a reset,
// and may retry, as HTTP/1.1 clients do with idempotent requests on a
// reused connection.)
func (h *handler) OnShutdown(c *reactor.Conn) {
	st := stateOf(c)
	partial := st != nil && st.partial
	setState(c, partial, true)
	if partial {
		return
	}
	c.Loop().AfterFunc(shutdownGrace, func() {
		if st := stateOf(c); st == nil || !st.partial {
			_ = c.Close() // ErrConnClosed if a response closed it already
		}
	})
}

func (b *chunkedBody) start(rt route, head bool, conn connHeader, limit int64) {
	b.active, b.rt, b.head, b.conn = true, rt, head, conn
	b.dec.reset(limit)
	b.data = b.data[:0]
}

func (b *chunkedBody) finish() {
	b.active = false
	if cap(b.data) > keepBodyCap {
		b.data = nil
	}
}

type handler struct {
	reactor.HandlerFuncs
	maxBody int64
	pool    sync.Pool     // of *scratch
	stats   func() string // the server's Stats as JSON, for /debug/vars; nil from NewHandler
}

// NewHandler returns the server's reactor.Handler. It is safe to share
// between loops: all per-read state lives in a pooled scratch, and all
// per-connection state in the connection's Context.
func NewHandler(opts ...Option) (reactor.Handler, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return newHandler(cfg), nil
}

func newHandler(cfg config) *handler {
	h := &handler{maxBody: cfg.maxBody}
	h.pool.New = func() any {
		return &scratch{out: make([]byte, 0, 4<<10), req: request{maxBody: cfg.maxBody}}
	}
	return h
}

var (
	helloBody    = []byte("Hello, World!")
	notFound     = []byte("404 page not found\n")
	textPlain    = "text/plain; charset=utf-8"
	octetBytes   = "application/octet-stream"
	appJSON      = "application/json"
	continueResp = []byte("HTTP/1.1 100 Continue\r\n\r\n")
)

// OnMessage answers every complete request in in, in order, appending all the
// responses to one buffer that is written once: a pipelined burst costs one
// write(2). It consumes exactly the complete requests and leaves a partial
// one for the next call, except that a chunked body is consumed as it is
// decoded (into the connection's chunkedBody). A client waiting for "100
// Continue" gets it when its head is complete and no byte of its body has
// arrived. After a request that asks to close, or a bad one, it stops,
// answers with "Connection: close", and closes once the answers are flushed.
func (h *handler) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	s := h.pool.Get().(*scratch)
	b := in.Bytes()
	consumed, closing := 0, false
	shuttingDown := false
	if st := stateOf(c); st != nil {
		shuttingDown = st.closing
	}
	cb, _ := c.Context().(*chunkedBody)
	for consumed < len(b) && !closing {
		if cb != nil && cb.active {
			n, data, done, err := cb.dec.decode(cb.data, b[consumed:])
			cb.data = data
			consumed += n
			if err != nil {
				s.reject(err)
				consumed, closing = len(b), true
				break
			}
			if !done {
				break
			}
			if shuttingDown {
				cb.conn = connClose
			}
			s.out = h.respond(s.out, s.dateNow(), cb.rt, cb.head, cb.data, cb.conn)
			closing = cb.conn == connClose
			cb.finish()
			continue
		}
		n, err := parseRequest(b[consumed:], &s.req)
		if errors.Is(err, errNeedMore) {
			// If the head is complete (headLen > 0) and none of its
			// Content-Length body has arrived, a client that said it waits
			// for 100 is told to go on. That happens once: OnMessage runs
			// only when new bytes arrive, and they are the body's.
			if s.req.headLen > 0 && s.req.expectContinue && consumed+s.req.headLen == len(b) {
				s.out = append(s.out, continueResp...)
			}
			break
		}
		if err != nil {
			s.reject(err)
			consumed, closing = len(b), true
			break
		}
		consumed += n
		rt, head, conn := routeOf(&s.req), is(s.req.method, "HEAD"), s.req.responseConn()
		if shuttingDown {
			conn = connClose // the last response on this connection
		}
		if s.req.chunked {
			if cb == nil {
				cb = &chunkedBody{}
				c.SetContext(cb)
			}
			cb.start(rt, head, conn, h.maxBody)
			if s.req.expectContinue && consumed == len(b) {
				s.out = append(s.out, continueResp...)
			}
			continue
		}
		closing = conn == connClose
		s.out = h.respond(s.out, s.dateNow(), rt, head, s.req.body, conn)
	}
	in.Discard(consumed)
	if len(s.out) > 0 {
		_, _ = c.Write(s.out) // fails only if the connection is already closing
	}
	if closing {
		_ = c.Close() // after the responses are flushed
	} else {
		setState(c, in.Len() > 0 || (cb != nil && cb.active), shuttingDown)
	}
	s.out, s.now = s.out[:0], nil
	h.pool.Put(s)
}

// reject appends the answer to a request that failed with err: its status,
// and "Connection: close", because the server closes the connection after
// it (the rest of the input cannot be trusted to start a request).
func (s *scratch) reject(err error) {
	status := errorStatus(err)
	s.out = appendResponse(s.out, s.dateNow(), status, textPlain, []byte(statusText(status)+"\n"), connClose)
}

// statsBody is the answer to GET /debug/vars: what expvar would publish
// for expvar.Publish("reactor", srv.ExpvarStats()), with the process's
// PID, so that an operator (or a test) behind a load balancer can tell the
// instances apart. Not on the hot path: it allocates.
func (h *handler) statsBody() []byte {
	if h.stats == nil {
		return []byte("{}\n")
	}
	return fmt.Appendf(nil, "{\"pid\": %d, \"reactor\": %s}\n", os.Getpid(), h.stats())
}

// route is what the server answers a request with.
type route uint8

const (
	routeHello    route = iota // "Hello, World!"
	routeEcho                  // the request body
	routeStats                 // the server's counters, as expvar shows them
	routeNotFound              // 404
)

// routeOf returns the route of req, from its method and path.
func routeOf(req *request) route {
	switch {
	case (is(req.method, "GET") || is(req.method, "HEAD")) && (is(req.path, "/") || is(req.path, "/plaintext")):
		return routeHello
	case is(req.method, "POST") && is(req.path, "/echo"):
		return routeEcho
	case (is(req.method, "GET") || is(req.method, "HEAD")) && is(req.path, "/debug/vars"):
		return routeStats
	}
	return routeNotFound
}

// respond appends the response of route rt to a request with the given
// body (which only routeEcho answers with); head leaves the response's
// body out (a HEAD request).
func (h *handler) respond(dst, date []byte, rt route, head bool, body []byte, conn connHeader) []byte {
	var ctype string
	status := 200
	switch rt {
	case routeHello:
		ctype, body = textPlain, helloBody
	case routeEcho:
		ctype = octetBytes
	case routeStats:
		ctype, body = appJSON, h.statsBody()
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
