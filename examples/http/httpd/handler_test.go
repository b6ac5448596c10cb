package httpd

// Tests of the handler over reactor's simulated network: every read the
// server makes is exactly one Write of the test's client, so a request can
// be split across reads at any byte, deterministically.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

const simAddr = "127.0.0.1:80"

// simServer serves the handler with opts over a fresh simulated network,
// configured as NewServer configures it, and shuts it down when the test
// ends.
func simServer(t *testing.T, opts ...Option) *reactor.Sim {
	t.Helper()
	cfg, err := newConfig(opts)
	require.NoError(t, err)
	s := reactor.NewSim(1)
	srv, err := reactor.NewServer(simAddr, newHandler(cfg),
		append(cfg.serverOptions(), reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(0))...)
	require.NoError(t, err)
	stop := s.Start(srv)
	t.Cleanup(func() { assert.NoError(t, stop()) })
	return s
}

// dial connects a client to the simulated server and closes it when the
// test ends, before the server is shut down (cleanups run last first): a
// graceful shutdown waits for the clients to close.
func dial(t *testing.T, s *reactor.Sim) *reactor.SimConn {
	t.Helper()
	c, err := s.Dial(simAddr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() }) // net.ErrClosed if the test closed it
	return c
}

// exchange dials the simulated server, sends each part as its own read
// (letting the server run after each), and returns what the server sent.
func exchange(t *testing.T, s *reactor.Sim, parts ...string) (*reactor.SimConn, []byte) {
	t.Helper()
	c := dial(t, s)
	var got []byte
	for _, p := range parts {
		if p != "" {
			_, err := c.WriteString(p)
			require.NoError(t, err)
		}
		s.RunUntilIdle()
		got = append(got, c.ReadAll()...)
	}
	return c, got
}

// simResponse is a response read back from the server's bytes.
type simResponse struct {
	status int
	body   string
	close  bool // "Connection: close"
}

// readResponses parses every response in b, 1xx ones included, and fails
// if anything is left over. None may answer a HEAD.
func readResponses(t *testing.T, b []byte) []simResponse {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(b))
	var out []simResponse
	for {
		if _, err := r.Peek(1); err == io.EOF {
			return out
		}
		resp, err := http.ReadResponse(r, nil)
		require.NoError(t, err, "in %q", b)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		out = append(out, simResponse{resp.StatusCode, string(body), resp.Close})
	}
}

func chunkedPOST(headers string, body string) string {
	return "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" + headers + "\r\n" + body
}

// A chunked request, with extensions and trailers, followed by a pipelined
// GET, split into two reads at every byte: the server answers both, in
// order, whatever the split, and keeps the connection.
func TestServeChunkedSplitEverywhere(t *testing.T) {
	s := simServer(t)
	data := "hello, chunked world\r\n\x00\xff"
	in := chunkedPOST("", chunkedOf(data, 7, ";x=y", "Checksum: 1")) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	want := []simResponse{{200, data, false}, {200, "Hello, World!", false}}
	for k := range len(in) + 1 {
		c, got := exchange(t, s, in[:k], in[k:])
		require.Equal(t, want, readResponses(t, got), "split at %d", k)
		require.False(t, c.EOF(), "split at %d: the connection stays open", k)
		require.NoError(t, c.Close())
		s.RunUntilIdle()
	}
}

// Byte by byte, too: one read per byte.
func TestServeChunkedByteByByte(t *testing.T) {
	s := simServer(t)
	in := chunkedPOST("", chunkedOf("0123456789abcdef", 5, "", "T: 1", "U: 2"))
	var parts []string
	for i := range len(in) {
		parts = append(parts, in[i:i+1])
	}
	_, got := exchange(t, s, parts...)
	assert.Equal(t, []simResponse{{200, "0123456789abcdef", false}}, readResponses(t, got))
}

// "100 Continue" goes out when the head of a request that expects it is
// complete and none of its body has arrived: with two reads, only when the
// first ends exactly at the end of the head. Never twice, never for an
// HTTP/1.0 request, and the request is answered the same either way.
func TestServeExpectContinue(t *testing.T) {
	body := "the body that waited"
	for _, tc := range []struct {
		name, head, body string
		want100, close   bool
	}{
		{"Content-Length", "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n", body, true, false},
		{"chunked", chunkedPOST("Expect: 100-continue\r\n", ""), chunkedOf(body, 8, ""), true, false},
		{"HTTP/1.0", "POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n", body, false, true},
		{"no expectation", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n", body, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := simServer(t)
			in := tc.head + tc.body
			for k := range len(in) + 1 {
				_, got := exchange(t, s, in[:k], in[k:])
				resps := readResponses(t, got)
				want := []simResponse{{200, body, tc.close}}
				if tc.want100 && k == len(tc.head) {
					want = append([]simResponse{{100, "", false}}, want...)
				}
				require.Equal(t, want, resps, "split at %d", k)
			}
			// The 100 is the first thing the client reads, exactly.
			_, got := exchange(t, s, tc.head)
			if tc.want100 {
				assert.Equal(t, "HTTP/1.1 100 Continue\r\n\r\n", string(got))
			} else {
				assert.Empty(t, got)
			}
		})
	}
	// With no body to wait for, the answer is the final response.
	s := simServer(t)
	_, got := exchange(t, s, "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n")
	assert.Equal(t, []simResponse{{200, "", false}}, readResponses(t, got))
}

// A request the server rejects is answered with its status and
// "Connection: close", and then the connection closes: the client reads
// the whole answer, then EOF. Each request stops where the fault is found,
// so the server leaves nothing unread.
func TestServeRejects(t *testing.T) {
	over := strconv.Itoa(maxBodyBytes + 1)
	for _, tc := range []struct {
		name   string
		parts  []string
		status []int // the responses in order; the last is the rejection
	}{
		{"malformed head", []string{"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n"}, []int{400}},
		{"head too large", []string{"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", maxHeaderBytes)}, []int{431}},
		{"Content-Length too large", []string{"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: " + over + "\r\n\r\n"}, []int{413}},
		{"Content-Length too large, expecting 100", []string{"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: " + over + "\r\n\r\n"}, []int{413}},
		{"unknown expectation", []string{"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 101-switch\r\nContent-Length: 5\r\n\r\n"}, []int{417}},
		{"unknown transfer coding", []string{"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"}, []int{501}},
		{"chunked not last", []string{"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"}, []int{400}},
		{"Content-Length and Transfer-Encoding", []string{"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"}, []int{400}},
		{"HTTP/2.0", []string{"GET / HTTP/2.0\r\nHost: a\r\n\r\n"}, []int{505}},
		{"chunk over the body limit", []string{chunkedPOST("", "100001\r\n")}, []int{413}},
		{"chunks over the body limit", []string{chunkedPOST("", ""), strings.Repeat("10000\r\n"+strings.Repeat("x", 64<<10)+"\r\n", 16) + "1\r\n"}, []int{413}},
		{"chunked over the limit after 100", []string{chunkedPOST("Expect: 100-continue\r\n", ""), "100001\r\n"}, []int{100, 413}},
		{"bad chunk size", []string{chunkedPOST("", "5\r\nhello\r\nz\r\n")}, []int{400}},
		{"bad chunk data end", []string{chunkedPOST("", "5\r\nhello!")}, []int{400}},
		{"trailer section too large", []string{chunkedPOST("", "0\r\nX: "+strings.Repeat("t", maxHeaderBytes))}, []int{431}},
		{"bad request after a good one", []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n"}, []int{200, 400}},
		{"bad request after a chunked one", []string{chunkedPOST("", "1\r\nx\r\n0\r\n\r\n") + "GET /\r\n\r\n"}, []int{200, 400}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := simServer(t)
			c, got := exchange(t, s, tc.parts...)
			resps := readResponses(t, got)
			require.Len(t, resps, len(tc.status), "%q", got)
			for i, st := range tc.status {
				assert.Equal(t, st, resps[i].status, "response %d", i)
			}
			last := resps[len(resps)-1]
			assert.True(t, last.close, "the rejection says Connection: close")
			assert.Equal(t, statusText(last.status)+"\n", last.body)
			assert.True(t, c.EOF(), "the server closed after the rejection")
			assert.False(t, c.WasReset(), "closed, not reset")
		})
	}
}

// A server configured with a larger body limit takes larger bodies, both
// framings, and still rejects what is above its own limit.
func TestServeMaxBodyBytes(t *testing.T) {
	const limit = 3 << 20
	s := simServer(t, WithMaxBodyBytes(limit))
	data := strings.Repeat("0123456789abcdef", limit/16)
	c := dial(t, s)
	_, err := c.WriteString("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(limit) + "\r\n\r\n" + data)
	require.NoError(t, err)
	_, err = c.WriteString(chunkedPOST("", chunkedOf(data, 100<<10, "")))
	require.NoError(t, err)
	var got []byte
	for len(got) < 2*limit {
		s.RunUntilIdle()
		more := c.ReadAll()
		require.NotEmpty(t, more, "the server stopped answering")
		got = append(got, more...)
	}
	s.RunUntilIdle()
	got = append(got, c.ReadAll()...)
	assert.Equal(t, []simResponse{{200, data, false}, {200, data, false}}, readResponses(t, got))

	_, got = exchange(t, s, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: "+strconv.Itoa(limit+1)+"\r\n\r\n")
	assert.Equal(t, []simResponse{{413, "Content Too Large\n", true}}, readResponses(t, got))

	for _, n := range []int64{0, -1, maxBodyLimit + 1} {
		_, err := NewHandler(WithMaxBodyBytes(n))
		assert.Error(t, err, "WithMaxBodyBytes(%d)", n)
		_, err = NewServer("127.0.0.1:0", 0, "epoll", nil, WithMaxBodyBytes(n))
		assert.Error(t, err, "WithMaxBodyBytes(%d)", n)
	}
}

// HEAD and the other routes work the same with a chunked body, and a
// connection keeps serving after its chunked requests, both framings mixed.
func TestServeChunkedRoutes(t *testing.T) {
	s := simServer(t)
	var in strings.Builder
	for i := range 5 {
		data := strings.Repeat(fmt.Sprint(i), i*1000)
		in.WriteString(chunkedPOST("", chunkedOf(data, 333, "")))
		in.WriteString("HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")
		in.WriteString("PUT /nope HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
		in.WriteString("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok")
	}
	_, got := exchange(t, s, in.String())
	r := bufio.NewReader(bytes.NewReader(got))
	for i := range 5 {
		for _, want := range []struct {
			method string
			status int
			body   string
		}{
			{"POST", 200, strings.Repeat(fmt.Sprint(i), i*1000)},
			{"HEAD", 200, ""},
			{"PUT", 404, "404 page not found\n"},
			{"POST", 200, "ok"},
		} {
			resp, err := http.ReadResponse(r, &http.Request{Method: want.method})
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, want.status, resp.StatusCode)
			assert.Equal(t, want.body, string(body))
			if want.method == "HEAD" {
				assert.Equal(t, int64(len(helloBody)), resp.ContentLength)
			}
		}
	}
	_, err := r.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "nothing more")
}

// quitter is the server's handler, plus a control word: a connection that
// sends "QUIT" begins a graceful shutdown of the server, from the loop (so
// Shutdown returns reactor.ErrInLoop at once and the test drives the rest).
type quitter struct {
	*handler
	srv *reactor.Server
	err error
}

func (q *quitter) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	if string(in.Bytes()) == "QUIT" {
		in.Discard(in.Len())
		q.err = q.srv.Shutdown(context.Background())
		return
	}
	q.handler.OnMessage(c, in)
}

// A graceful shutdown answers the request a connection is in the middle of,
// with "Connection: close", and closes idle connections after a moment's
// grace: no request the server has begun to read is dropped.
func TestServeGracefulShutdown(t *testing.T) {
	cfg, err := newConfig(nil)
	require.NoError(t, err)
	s := reactor.NewSim(1)
	q := &quitter{handler: newHandler(cfg)}
	srv, err := reactor.NewServer(simAddr, q,
		append(cfg.serverOptions(), reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(0))...)
	require.NoError(t, err)
	q.srv = srv
	stop := s.Start(srv)

	idle, got := exchange(t, s, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	require.Len(t, readResponses(t, got), 1)
	busy, got := exchange(t, s, "GET / HTTP/1.1\r\nHost: a\r\n")
	require.Empty(t, got)

	exchange(t, s, "QUIT")
	assert.ErrorIs(t, q.err, reactor.ErrInLoop)
	s.Advance(shutdownGrace - 1)
	assert.False(t, idle.EOF(), "an idle connection is given a moment for a request on its way")
	s.Advance(1)
	assert.True(t, idle.EOF(), "then it is closed")
	assert.False(t, busy.EOF(), "the busy one is served")

	_, err = busy.WriteString("\r\n")
	require.NoError(t, err)
	s.RunUntilIdle()
	resps := readResponses(t, busy.ReadAll())
	require.Len(t, resps, 1)
	assert.Equal(t, 200, resps[0].status)
	assert.True(t, resps[0].close, "the last response says Connection: close")
	assert.True(t, busy.EOF())
	assert.False(t, busy.WasReset())
	require.NoError(t, idle.Close())
	require.NoError(t, busy.Close())
	require.NoError(t, stop())
}
