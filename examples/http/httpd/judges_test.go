package httpd

// Tests with real HTTP clients that nobody here wrote: Go's net/http, curl
// and Python requests, each sending chunked bodies and waiting for "100
// Continue" the way it does by itself. curl and Python are found on the
// machine; without them a test skips, saying what to install, except in CI
// (CI=true), where it fails: CI installs them, and a skip there would prove
// nothing.

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor/examples/internal/extest"
)

// needPythonRequests returns a python3 that can import requests: the one on
// PATH (which may be pyenv's) or the system's /usr/bin/python3 (Debian's,
// with the python3-requests package).
func needPythonRequests(t *testing.T) string {
	t.Helper()
	var candidates []string
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/python3")
	for _, p := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		err := exec.CommandContext(ctx, p, "-c", "import requests").Run()
		cancel()
		if err == nil {
			return p
		}
	}
	extest.Missing(t, "a python3 that can import requests", "python3 python3-requests")
	return ""
}

// randomBytes returns n bytes from a seeded source: binary, with CR, LF and
// NUL among them, the same on every run.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeFile writes data to a file in the test's temporary directory.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// run runs a client command bounded by testTimeout and returns its stdout
// and stderr.
func run(t *testing.T, name string, args ...string) (stdout, stderr []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	require.NoError(t, err, "%s %q\nstderr:\n%s", name, args, errb.Bytes())
	return out.Bytes(), errb.Bytes()
}

// countReuse returns a context that counts, in *reused, the requests that
// went out on a connection used before.
func countReuse(ctx context.Context, mu *sync.Mutex, reused *int) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			mu.Lock()
			defer mu.Unlock()
			if info.Reused {
				*reused++
			}
		},
	})
}

// Go's client sends a body of unknown length (an io.Pipe) chunked; the echo
// comes back whole, and the connection is kept for the next request.
func TestNetHTTPClientChunked(t *testing.T) {
	addr := startServer(t, 1)
	cl := client(t)
	var mu sync.Mutex
	reused := 0
	for i := range 4 {
		data := randomBytes(100_000*i+1, uint64(i))
		pr, pw := io.Pipe()
		go func() {
			// Uneven writes: the transport makes a chunk of each.
			rest := data
			for n := 1; len(rest) > 0; n = n*7 + 3 {
				k := min(n, len(rest))
				if _, err := pw.Write(rest[:k]); err != nil {
					return // the request failed; the test says why
				}
				rest = rest[k:]
			}
			pw.Close()
		}()
		ctx := countReuse(context.Background(), &mu, &reused)
		req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/echo", pr)
		require.NoError(t, err)
		req.ContentLength = -1 // unknown: chunked
		resp, err := cl.Do(req)
		pr.CloseWithError(io.ErrClosedPipe) // ends the writer if the request failed
		require.NoError(t, err, "request %d", i)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.True(t, bytes.Equal(data, body), "request %d: echo of %d bytes differs (got %d)", i, len(data), len(body))
	}
	assert.Equal(t, 3, reused, "every request after the first reuses the connection")
}

// Go's client with "Expect: 100-continue" waits for the 100 before it sends
// the body, up to ExpectContinueTimeout. With that timeout far beyond the
// test's deadline, a missing 100 would show as the request failing at the
// deadline; it must succeed, and the trace must have seen the 100.
func TestNetHTTPClientExpectContinue(t *testing.T) {
	addr := startServer(t, 2)
	tr := &http.Transport{ExpectContinueTimeout: time.Hour}
	t.Cleanup(tr.CloseIdleConnections)
	cl := &http.Client{Transport: tr}
	var mu sync.Mutex
	reused := 0
	for i, tc := range []struct {
		name    string
		size    int
		chunked bool
	}{
		{"Content-Length", 300_000, false},
		{"chunked", 300_000, true},
		{"Content-Length again", 1 << 20, false},
		{"chunked again", 1 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(tc.size, uint64(100+i))
			got100 := false
			ctx, cancel := context.WithTimeout(countReuse(context.Background(), &mu, &reused), testTimeout)
			defer cancel()
			ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got100Continue: func() { got100 = true }})
			var body io.Reader = bytes.NewReader(data)
			if tc.chunked {
				body = io.MultiReader(body) // hides the length
			}
			req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/echo", body)
			require.NoError(t, err)
			req.Header.Set("Expect", "100-continue")
			if tc.chunked {
				req.ContentLength = -1
			}
			resp, err := cl.Do(req)
			require.NoError(t, err, "no 100 Continue: the client waited until the deadline")
			echo, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.True(t, got100, "the client saw 100 Continue")
			assert.Equal(t, 200, resp.StatusCode)
			assert.True(t, bytes.Equal(data, echo), "echo of %d bytes differs (got %d)", len(data), len(echo))
		})
	}
	assert.Equal(t, 3, reused, "the connection is kept after each request")

	// A body over the limit is refused at once: 413 instead of 100, and the
	// connection closed.
	t.Run("too large", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		got100 := false
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got100Continue: func() { got100 = true }})
		req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/echo", bytes.NewReader(make([]byte, maxBodyBytes+1)))
		require.NoError(t, err)
		req.Header.Set("Expect", "100-continue")
		resp, err := cl.Do(req)
		require.NoError(t, err, "no final answer: the client waited until the deadline")
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.False(t, got100)
		assert.Equal(t, 413, resp.StatusCode)
		assert.True(t, resp.Close)
	})
}

// curl with -H 'Transfer-Encoding: chunked' sends its file chunked.
func TestCurlChunked(t *testing.T) {
	curl := extest.Need(t, "curl", "curl")
	addr := startServer(t, 1)
	data := randomBytes(300_000, 7)
	file := writeFile(t, "body", data)
	out, verbose := run(t, curl, "-sS", "-v", "--max-time", "10", "-H", "Transfer-Encoding: chunked",
		"--data-binary", "@"+file, "http://"+addr+"/echo")
	assert.Contains(t, string(verbose), "> Transfer-Encoding: chunked")
	assert.True(t, bytes.Equal(data, out), "echo of %d bytes differs (got %d)", len(data), len(out))
}

// curl sends "Expect: 100-continue" by itself for a body over 1 MiB and
// waits for the 100 up to --expect100-timeout, here beyond --max-time: a
// missing 100 would make curl fail at --max-time. The server is configured
// to take such a body; on one with the default 1 MiB limit curl gets 413 at
// once instead, and does not send the body.
func TestCurlExpectContinue(t *testing.T) {
	curl := extest.Need(t, "curl", "curl")
	addr := startServer(t, 1, WithMaxBodyBytes(4<<20))
	data := randomBytes(2<<20+1, 8)
	file := writeFile(t, "body", data)
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"Content-Length", nil},
		{"chunked", []string{"-H", "Transfer-Encoding: chunked"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-sS", "-v", "--max-time", "10", "--expect100-timeout", "30",
				"--data-binary", "@" + file}, tc.extra...)
			out, verbose := run(t, curl, append(args, "http://"+addr+"/echo")...)
			assert.Contains(t, string(verbose), "> Expect: 100-continue", "curl asked for a 100 by itself")
			assert.Contains(t, string(verbose), "< HTTP/1.1 100 Continue")
			assert.True(t, bytes.Equal(data, out), "echo of %d bytes differs (got %d)", len(data), len(out))
		})
	}
	t.Run("over the default limit", func(t *testing.T) {
		small := startServer(t, 1)
		out, verbose := run(t, curl, "-sS", "-v", "--max-time", "10", "--expect100-timeout", "30",
			"--data-binary", "@"+file, "-w", "\n%{http_code}", "http://"+small+"/echo")
		assert.Contains(t, string(verbose), "> Expect: 100-continue")
		assert.NotContains(t, string(verbose), "100 Continue\r")
		assert.Contains(t, string(verbose), "< Connection: close")
		assert.Equal(t, "Content Too Large\n\n413", string(out))
	})
}

// Python requests sends a generator body chunked. Two requests on one
// session: the second goes out after the first's chunked body was read to
// its end.
func TestPythonRequestsChunked(t *testing.T) {
	python := needPythonRequests(t)
	addr := startServer(t, 1)
	data := randomBytes(500_000, 9)
	file := writeFile(t, "body", data)
	const script = `
import sys, requests
path, url = sys.argv[1], sys.argv[2]
def chunks():
    sizes = [1, 7, 4096, 65536, 100000]
    with open(path, "rb") as f:
        i = 0
        while True:
            b = f.read(sizes[i % len(sizes)])
            i += 1
            if not b:
                return
            yield b
with requests.Session() as s:
    for _ in range(2):
        r = s.post(url, data=chunks(), timeout=10)
        r.raise_for_status()
        assert r.request.headers.get("Transfer-Encoding") == "chunked", r.request.headers
        sys.stdout.buffer.write(r.content)
`
	out, _ := run(t, python, "-c", script, file, "http://"+addr+"/echo")
	want := append(append([]byte{}, data...), data...)
	assert.True(t, bytes.Equal(want, out), "echo of 2 x %d bytes differs (got %d)", len(data), len(out))
}
