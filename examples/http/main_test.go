package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tcpreactor/reactor/examples/internal/extest"
)

func TestMain(m *testing.M) {
	extest.RunIfChild(main)
	goleak.VerifyTestMain(m)
}

const bound = 30 * time.Second

// The command serves, takes bodies up to -max-body, stops gracefully on
// SIGTERM, says so, and exits 0.
func TestHTTPServesAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	child, addr, err := extest.StartListening(ctx, "http server listening", "-addr", "127.0.0.1:0", "-loops", "1", "-max-body", "100")
	require.NoError(t, err)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: bound}
	for _, tc := range []struct {
		body   string
		status int
	}{
		{strings.Repeat("b", 100), 200},
		{strings.Repeat("b", 101), 413},
	} {
		resp, err := cl.Post("http://"+addr+"/echo", "text/plain", strings.NewReader(tc.body))
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, tc.status, resp.StatusCode)
		if tc.status == 200 {
			assert.Equal(t, tc.body, string(got))
		}
	}

	require.NoError(t, child.Signal(syscall.SIGTERM))
	code, log, err := child.Wait()
	require.NoError(t, err, log)
	assert.Equal(t, 0, code, log)
	assert.Contains(t, log, "http server stopped")
	assert.NotContains(t, log, "level=ERROR")
}

// A bad flag value is refused at start, with exit status 1.
func TestHTTPRejectsBadMaxBody(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	child, err := extest.Start(ctx, "-addr", "127.0.0.1:0", "-max-body", "0")
	require.NoError(t, err)
	code, log, err := child.Wait()
	require.NoError(t, err, log)
	assert.Equal(t, 1, code, log)
	assert.Contains(t, log, "WithMaxBodyBytes(0)")
}
