package httpd

import (
	"bufio"
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
				resp, err := cl.Post("http://"+addr+"/echo", "text/plain", strings.NewReader(payload))
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

func TestCurl(t *testing.T) {
	curl := needCurl(t)
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
