package httpd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/examples/internal/extest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTimeout = 30 * time.Second

// startServer runs the example server with opts on a free loopback port
// and stops it when the test ends.
func startServer(t *testing.T, loops int, opts ...Option) string {
	t.Helper()
	srv, err := NewServer("127.0.0.1:0", loops, "epoll", slog.New(slog.DiscardHandler), opts...)
	require.NoError(t, err)
	return serve(t, srv)
}

// serve runs srv and shuts it down when the test ends.
func serve(t *testing.T, srv *reactor.Server) string {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.ErrorIs(t, <-errc, reactor.ErrServerClosed)
	})
	return srv.Addr().String()
}

// client returns a net/http client whose idle connections are closed when
// the test ends, so no transport goroutine outlives it.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

func TestNetHTTPClientKeepAlive(t *testing.T) {
	addr := startServer(t, 1)
	cl := client(t)
	reused := 0
	for i := range 50 {
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++
				}
			},
		})
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
		require.NoError(t, err)
		resp, err := cl.Do(req)
		require.NoError(t, err, "request %d", i)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "Hello, World!", string(body))
		assert.NotEmpty(t, resp.Header.Get("Date"))
	}
	assert.Equal(t, 49, reused, "every request after the first should reuse the connection")
}

// Many clients at once on a server with two loops, every other request
// chunked (a body of unknown length): nothing shared between connections
// mixes their bodies up.
func TestNetHTTPClientConcurrent(t *testing.T) {
	addr := startServer(t, 2)
	cl := client(t)
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				payload := fmt.Sprintf("goroutine %d request %d %s", g, i, strings.Repeat("x", i*100))
				var req io.Reader = strings.NewReader(payload)
				if i%2 == 1 {
					req = io.MultiReader(req) // hides the length: chunked
				}
				resp, err := cl.Post("http://"+addr+"/echo", "text/plain", req)
				if !assert.NoError(t, err) {
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.NoError(t, err)
				assert.Equal(t, payload, string(body))
			}
		}()
	}
	wg.Wait()
}

func TestPipelinedResponsesInOrder(t *testing.T) {
	addr := startServer(t, 1)
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	var burst strings.Builder
	for i := range 16 {
		fmt.Fprintf(&burst, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\nreq%02d", len("reqNN"), i)
	}
	// Split the burst at an awkward place, so one request spans two reads.
	raw := burst.String()
	_, err = io.WriteString(c, raw[:len(raw)/2+3])
	require.NoError(t, err)
	_, err = io.WriteString(c, raw[len(raw)/2+3:])
	require.NoError(t, err)
	r := bufio.NewReader(c)
	for i := range 16 {
		resp, err := http.ReadResponse(r, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("req%02d", i), string(body))
	}
}

func TestConnectionCloseAndErrors(t *testing.T) {
	addr := startServer(t, 1)
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"connection close", "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 200},
		{"http/1.0 closes", "GET / HTTP/1.0\r\n\r\n", 200},
		{"malformed", "GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"oversized head", "GET / HTTP/1.1\r\nHost: t\r\nX: " + strings.Repeat("a", 9000) + "\r\n\r\n", 431},
		{"unknown transfer coding", "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"body too large", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n", 413},
		{"unknown expectation", "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: nothing\r\nContent-Length: 1\r\n\r\n", 417},
		{"chunked body with Connection: close", "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n", 200},
		{"not found", "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, testTimeout)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
			_, err = io.WriteString(c, tc.req)
			require.NoError(t, err)
			r := bufio.NewReader(c)
			resp, err := http.ReadResponse(r, nil)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.True(t, resp.Close, "the response says Connection: close")
			// Every one of these ends the connection: the server closes.
			_, err = r.ReadByte()
			assert.True(t, errors.Is(err, io.EOF), "want EOF after the response, got %v", err)
		})
	}
}

// A client that sends a bad request and goes on sending gets the whole
// error response and then EOF, not a reset: the server answers, says
// "Connection: close", and closes without losing the answer, although it
// never reads the bytes that follow. Closing a socket with unread input
// makes Linux send RST, which the client sees as ECONNRESET (and which can
// destroy the answer still in flight); reactor's lingering close (shutdown,
// then read and discard until the peer's EOF, then close) prevents that.
//
// Over the simulated network the unread bytes are certain: more than the
// server's receive window is sent at once. Over loopback the server is
// held before it handles its first read, until the client has written the
// request and 64 KiB more: one read takes at most 64 KiB, so the request's
// length in bytes is left unread at least.
func TestRejectionThenEOFNotReset(t *testing.T) {
	junk := strings.Repeat("junk", 64<<10)
	cases := []struct {
		name, req string
		status    int
	}{
		{"malformed", "GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400},
		{"body too large", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n", 413},
		{"bad chunk", "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
	}
	check := func(t *testing.T, r *bufio.Reader, status int) {
		t.Helper()
		resp, err := http.ReadResponse(r, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err, "the whole response")
		assert.Equal(t, status, resp.StatusCode)
		assert.Equal(t, statusText(status)+"\n", string(body))
		assert.True(t, resp.Close, "the response says Connection: close")
		_, err = r.ReadByte()
		assert.True(t, errors.Is(err, io.EOF), "want EOF after the response, got %v", err)
	}
	t.Run("simulated", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				s := simServer(t)
				c := dial(t, s)
				_, err := c.WriteString(tc.req + junk[:256<<10])
				require.NoError(t, err)
				s.RunUntilIdle()
				got := c.ReadAll()
				assert.True(t, c.EOF(), "the server has closed its side")
				assert.False(t, c.WasReset(), "closed, not reset")
				assert.NoError(t, c.CloseWrite())
				s.RunUntilIdle()
				got = append(got, c.ReadAll()...)
				assert.False(t, c.WasReset(), "closed, not reset")
				check(t, bufio.NewReader(bytes.NewReader(got)), tc.status)
			})
		}
	})
	t.Run("loopback", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				cfg, err := newConfig(nil)
				require.NoError(t, err)
				open := make(chan struct{})
				srv, err := reactor.NewServer("127.0.0.1:0", gated{newHandler(cfg), open},
					append(cfg.serverOptions(), reactor.WithLoops(1))...)
				require.NoError(t, err)
				addr := serve(t, srv)
				defer close(open)
				c, err := net.DialTimeout("tcp", addr, testTimeout)
				require.NoError(t, err)
				defer c.Close()
				require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
				_, err = io.WriteString(c, tc.req+junk)
				require.NoError(t, err)
				require.NoError(t, c.(*net.TCPConn).CloseWrite())
				open <- struct{}{}
				check(t, bufio.NewReader(c), tc.status)
			})
		}
	})
}

// gated holds each OnMessage of its handler until it receives from open
// (or open is closed): a test decides when the server handles what it read.
type gated struct {
	reactor.Handler
	open <-chan struct{}
}

func (g gated) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	<-g.open
	g.Handler.OnMessage(c, in)
}

func TestCurl(t *testing.T) {
	curl := extest.Need(t, "curl", "curl")
	addr := startServer(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// Two URLs in one invocation: curl reuses the connection for the second.
	out, err := exec.CommandContext(ctx, curl, "-sS", "-v",
		"http://"+addr+"/", "http://"+addr+"/plaintext").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, 2, strings.Count(string(out), "Hello, World!"))
	assert.Contains(t, string(out), "Re-using existing connection")

	out, err = exec.CommandContext(ctx, curl, "-sS", "--data-binary", "posted body", "http://"+addr+"/echo").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "posted body", string(out))
}
