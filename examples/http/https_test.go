package main

// HTTPS judged by clients nobody here wrote: curl (keep-alive, a body),
// openssl s_client (TLS 1.2 and 1.3, two requests pipelined in one write)
// and Go's net/http, against this command with -tls. Without curl or
// openssl a test skips, saying what to install, except in CI (CI=true),
// where it fails: CI installs them, and a skip there would prove nothing.

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor/examples/internal/extest"
	"github.com/tcpreactor/reactor/internal/selfsigned"
)

// startHTTPS starts the command with -tls and a certificate for 127.0.0.1
// written to PEM files, and returns its address, the CA file that
// verifies it, and the pool for Go clients.
func startHTTPS(t *testing.T) (addr, caFile string, cert tls.Certificate, child *extest.Child) {
	t.Helper()
	cert, err := selfsigned.New("127.0.0.1", "localhost")
	require.NoError(t, err)
	certPEM, keyPEM, err := selfsigned.PEM(cert)
	require.NoError(t, err)
	dir := t.TempDir()
	caFile = filepath.Join(dir, "cert.pem")
	keyFile := filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(caFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	t.Cleanup(cancel)
	child, addr, err = extest.StartListening(ctx, "http server listening",
		"-addr", "127.0.0.1:0", "-loops", "1", "-tls", "-cert", caFile, "-key", keyFile)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, child.Signal(syscall.SIGTERM))
		code, log, err := child.Wait()
		require.NoError(t, err, log)
		assert.Equal(t, 0, code, log)
		assert.NotContains(t, log, "level=ERROR")
	})
	return addr, caFile, cert, child
}

// runTool runs a client bounded by the test's bound, with stdin, and
// returns its stdout; it fails the test if the client fails.
func runTool(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "%s %q\nstderr:\n%s", name, args, errb.Bytes())
	return out.String()
}

// curl verifies the certificate, reuses the connection for a second URL
// (num_connects 0: keep-alive over TLS), and gets a posted body back.
func TestHTTPSCurl(t *testing.T) {
	curl := extest.Need(t, "curl", "curl")
	addr, ca, _, _ := startHTTPS(t)
	url := "https://" + addr + "/"
	out := runTool(t, "", curl, "-sS", "--cacert", ca, "--http1.1",
		"-w", "|%{http_code} %{num_connects} %{http_version}\n", url, url)
	assert.Equal(t, "Hello, World!|200 1 1.1\nHello, World!|200 0 1.1\n", out)

	body := strings.Repeat("0123456789abcdef", 20_000) // 320 kB: many records
	bodyFile := filepath.Join(t.TempDir(), "body")
	require.NoError(t, os.WriteFile(bodyFile, []byte(body), 0o600))
	out = runTool(t, "", curl, "-sS", "--cacert", ca, "--data-binary", "@"+bodyFile, "https://"+addr+"/echo")
	assert.Equal(t, body, out)
}

// openssl s_client, TLS 1.2 and 1.3, verifying the certificate's IP: two
// requests in one write (pipelined), answered in order; the second asks
// to close, and the server's close ends s_client.
func TestHTTPSOpenSSLPipelined(t *testing.T) {
	openssl := extest.Need(t, "openssl", "openssl")
	addr, ca, _, _ := startHTTPS(t)
	reqs := "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	for _, version := range []string{"-tls1_2", "-tls1_3"} {
		t.Run(version, func(t *testing.T) {
			out := runTool(t, reqs, openssl, "s_client", version, "-connect", addr,
				"-CAfile", ca, "-verify_ip", "127.0.0.1", "-verify_return_error", "-quiet", "-ign_eof")
			assert.Equal(t, 2, strings.Count(out, "HTTP/1.1 200 OK"), out)
			assert.Equal(t, 2, strings.Count(out, "Hello, World!"), out)
			assert.Contains(t, out, "Connection: close")
		})
	}
}

// Go's client: ALPN http/1.1, keep-alive across requests.
func TestHTTPSNetHTTP(t *testing.T) {
	addr, _, cert, _ := startHTTPS(t)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: selfsigned.Pool(cert), NextProtos: []string{"http/1.1"}}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: bound}
	reused := 0
	for range 3 {
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++ // the transport calls it on this goroutine, before Do returns
				}
			},
		})
		req, err := http.NewRequestWithContext(ctx, "GET", "https://"+addr+"/", nil)
		require.NoError(t, err)
		resp, err := cl.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, "Hello, World!", string(body))
		require.NotNil(t, resp.TLS)
		assert.Equal(t, "http/1.1", resp.TLS.NegotiatedProtocol)
	}
	assert.Equal(t, 2, reused, "keep-alive over TLS")
}
