package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// testTimeout bounds every wait: a safety net, never a synchronisation.
const testTimeout = 60 * time.Second

// startProxy runs the proxy on a free loopback port in front of upstream
// and shuts it down when the test ends.
func startProxy(t *testing.T, upstream string, opts ...reactor.Option) string {
	t.Helper()
	all := append([]reactor.Option{reactor.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	srv, err := newServer("127.0.0.1:0", &Proxy{Upstream: upstream, DialTimeout: 5 * time.Second}, all...)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.ErrorIs(t, <-served, reactor.ErrServerClosed)
	})
	return srv.Addr().String()
}

// echoUpstream is an echo server from package net: it echoes until EOF,
// then half-closes, and reads on until the proxy closes.
func echoUpstream(t *testing.T) string {
	t.Helper()
	return echoListener(t, "tcp", "127.0.0.1:0")
}

// echoUnixUpstream is echoUpstream on a Unix socket at path.
func echoUnixUpstream(t *testing.T, path string) string {
	t.Helper()
	return echoListener(t, "unix", path)
}

func echoListener(t *testing.T, network, address string) string {
	t.Helper()
	ln, err := net.Listen(network, address)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(testTimeout))
				buf := make([]byte, 32<<10) // not io.Copy: see TestProxyRelaysEverything
				for {
					n, err := c.Read(buf)
					if _, werr := c.Write(buf[:n]); werr != nil || err != nil {
						break
					}
				}
				_ = c.(interface{ CloseWrite() error }).CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestProxyRelaysEverything sends random payloads through the proxy to an
// echo server over real sockets, from many clients at once, each writing
// while it reads and then half-closing, and compares digests: every byte
// must come back, once, in order, and the half-close must get through both
// ways (the client's EOF reaches the upstream, whose EOF comes back).
func TestProxyRelaysEverything(t *testing.T) {
	clients, maxSize := 50, 1<<20
	if testing.Short() {
		clients, maxSize = 10, 64<<10
	}
	for _, be := range []struct {
		name string
		f    reactor.DispatcherFactory
	}{{"epoll", reactor.Epoll}, {"poll", reactor.Poll}} {
		t.Run(be.name, func(t *testing.T) {
			// A small high-water mark, so that backpressure across the
			// pairs is exercised, not only the happy path.
			addr := startProxy(t, echoUpstream(t), reactor.WithDispatcher(be.f), reactor.WithLoops(2),
				reactor.WithHighWaterMark(32<<10))
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- echoThrough(addr, rand.New(rand.NewPCG(uint64(i), 3)), maxSize)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				assert.NoError(t, err)
			}
		})
	}
}

func echoThrough(addr string, rng *rand.Rand, maxSize int) error {
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	payload := make([]byte, rng.IntN(maxSize+1))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	werr := make(chan error, 1)
	go func() {
		for rest := payload; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(64<<10))
			if _, err := c.Write(rest[:n]); err != nil {
				werr <- err
				return
			}
			rest = rest[n:]
		}
		werr <- c.(*net.TCPConn).CloseWrite()
	}()
	h := sha256.New()
	n, err := io.Copy(h, c) // to EOF: the upstream's half-close, relayed
	if err != nil {
		return fmt.Errorf("after %d of %d bytes: %w", n, len(payload), err)
	}
	if err := <-werr; err != nil {
		return err
	}
	if want := sha256.Sum256(payload); !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("digest mismatch: %d bytes sent, %d received", len(payload), n)
	}
	return nil
}

func TestProxyUpstreamRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	addr := startProxy(t, dead, reactor.WithLoops(1))
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	got, err := io.ReadAll(c)
	assert.NoError(t, err, "closed in order, not reset")
	assert.Empty(t, got)
}
