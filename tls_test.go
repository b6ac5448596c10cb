package reactor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor/internal/selfsigned"
)

// testCert is one self-signed certificate for 127.0.0.1 and localhost,
// shared by the TLS tests (generating one per test would cost more than
// most tests).
var testCert = func() tls.Certificate {
	c, err := selfsigned.New("127.0.0.1", "localhost")
	if err != nil {
		panic(err)
	}
	return c
}()

func serverTLSConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{testCert}}
}

func clientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: selfsigned.Pool(testCert), ServerName: "127.0.0.1"}
}

// startTLSEcho runs h (nil: an echo handler) with WithTLS on loopback.
func startTLSEcho(tb testing.TB, h Handler, opts ...Option) *Server {
	tb.Helper()
	return startServing(tb, h, append([]Option{WithTLS(serverTLSConfig())}, opts...)...)
}

func dialTLS(tb testing.TB, addr net.Addr, cfg *tls.Config) *tls.Conn {
	tb.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr.String(), cfg)
	require.NoError(tb, err)
	require.NoError(tb, c.SetDeadline(time.Now().Add(30*time.Second)))
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func TestTLSEchoSmoke(t *testing.T) {
	srv := startTLSEcho(t, nil)
	c := dialTLS(t, srv.Addr(), clientTLSConfig())
	_, err := c.Write([]byte("hello"))
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf))
}

// TestTLSConcurrentClients: 200 connections at once, TLS 1.2 and 1.3,
// each echoing a random payload of up to 1 MiB written and read
// concurrently, compared by SHA-256.
func TestTLSConcurrentClients(t *testing.T) {
	const conns = 200
	// The handshakes share two loops with up to 200 MiB of echoes, under
	// the race detector on a busy machine: the default 10 s bound has been
	// seen to drop some (the clients then read a reset). This test is
	// about the data, not the bound.
	srv := startTLSEcho(t, nil, WithLoops(2), WithTLSHandshakeTimeout(2*time.Minute))
	maxSize := 1 << 20
	errc := make(chan error, conns)
	for i := range conns {
		go func() { errc <- tlsEchoOnce(srv.Addr(), i, maxSize) }()
	}
	for range conns {
		assert.NoError(t, <-errc, "server: %+v", srv.Stats().TLS)
	}
	st := srv.Stats()
	assert.Equal(t, int64(conns), st.TLS.Handshakes)
	assert.Zero(t, st.TLS.Failed)
}

// tlsEchoOnce dials with TLS 1.2 (even i) or 1.3 (odd i), writes a random
// payload of up to maxSize bytes while reading the echo, and compares
// digests. It reports instead of failing: it runs on its own goroutine.
func tlsEchoOnce(addr net.Addr, i, maxSize int) error {
	cfg := clientTLSConfig()
	cfg.MaxVersion = tls.VersionTLS12 + uint16(i%2)
	d := &net.Dialer{Timeout: 2 * time.Minute}
	c, err := tls.DialWithDialer(d, "tcp", addr.String(), cfg)
	if err != nil {
		return fmt.Errorf("conn %d: %w", i, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Minute)); err != nil {
		return err
	}
	rnd := rand.New(rand.NewPCG(uint64(i), 3))
	size := 1 + rnd.IntN(maxSize)
	if i%20 == 0 {
		size = maxSize
	}
	payload := make([]byte, size)
	for j := range payload {
		payload[j] = byte(rnd.Uint32())
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		werr <- err
	}()
	h := sha256.New()
	if _, err := io.CopyN(h, c, int64(size)); err != nil {
		return fmt.Errorf("conn %d: read: %w", i, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("conn %d: write: %w", i, err)
	}
	if want := sha256.Sum256(payload); !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("conn %d: %d bytes echoed differ", i, size)
	}
	if v := c.ConnectionState().Version; v != cfg.MaxVersion {
		return fmt.Errorf("conn %d: version %x, want %x", i, v, cfg.MaxVersion)
	}
	return nil
}

// TestTLSFeatures: what crypto/tls offers works through the loop, in both
// versions: ALPN, SNI with GetCertificate, client certificates required
// and verified, session resumption; Conn.TLS shows each.
func TestTLSFeatures(t *testing.T) {
	clientCert, err := selfsigned.New("client.example")
	require.NoError(t, err)
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			states := make(chan *tls.ConnectionState, 8)
			var (
				mu  sync.Mutex // guards sni: GetCertificate runs on the loop
				sni []string
			)
			cfg := &tls.Config{
				GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
					mu.Lock()
					sni = append(sni, hello.ServerName)
					mu.Unlock()
					return &testCert, nil
				},
				NextProtos: []string{"h2", "x-echo"},
				ClientAuth: tls.RequireAndVerifyClientCert,
				ClientCAs:  selfsigned.Pool(clientCert),
				MaxVersion: version,
			}
			h := HandlerFuncs{
				Open:    func(c *Conn) { states <- c.TLS() },
				Message: func(c *Conn, in *Buffer) { _, _ = c.Write(in.Next(in.Len())) },
			}
			failed := make(chan struct{}, 1)
			log := slog.New(&signalLog{msg: "reactor: TLS handshake failed", ch: failed})
			srv := startTLSEcho(t, h, WithTLS(cfg), WithLogger(log))
			ccfg := clientTLSConfig()
			ccfg.ServerName = "localhost"
			ccfg.NextProtos = []string{"x-echo"}
			ccfg.Certificates = []tls.Certificate{clientCert}
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for round := range 2 {
				c := dialTLS(t, srv.Addr(), ccfg)
				echoLoopback(t, c, "hi")
				st := <-states
				require.NotNil(t, st)
				assert.True(t, st.HandshakeComplete)
				assert.Equal(t, version, st.Version)
				assert.Equal(t, "x-echo", st.NegotiatedProtocol)
				assert.Equal(t, "localhost", st.ServerName)
				require.Len(t, st.PeerCertificates, 1)
				assert.True(t, st.PeerCertificates[0].Equal(clientCert.Leaf), "the client's certificate")
				assert.Equal(t, round == 1, st.DidResume, "round %d resumes", round)
				assert.Equal(t, round == 1, c.ConnectionState().DidResume)
				require.NoError(t, c.Close())
			}
			mu.Lock()
			require.NotEmpty(t, sni)
			assert.Equal(t, "localhost", sni[0], "SNI reaches GetCertificate")
			mu.Unlock()

			// Without a client certificate the handshake fails: no OnOpen.
			nocert := clientTLSConfig()
			c, err := tls.Dial("tcp", srv.Addr().String(), nocert)
			if err == nil {
				// TLS 1.3: the client learns of it at its first read.
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = c.Write([]byte("x"))
				if err == nil {
					_, err = c.Read(make([]byte, 1))
				}
				_ = c.Close()
			}
			assert.Error(t, err, "a client certificate is required")
			<-failed
			st := srv.Stats()
			assert.Equal(t, int64(2), st.TLS.Handshakes)
			assert.Equal(t, int64(1), st.TLS.Resumed)
			assert.Empty(t, states, "no OnOpen for the failed handshake")
		})
	}
}

// echoLoopback writes msg on c and reads it back.
func echoLoopback(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, msg, string(buf))
}

// signalLog is a slog.Handler that sends on ch, without blocking, each
// time a record with message msg is logged (at any level): a test waits
// on it for an event that only the log tells of.
type signalLog struct {
	msg string
	ch  chan struct{}
}

func (h *signalLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *signalLog) WithGroup(string) slog.Handler            { return h }
func (h *signalLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.ch <- struct{}{}:
		default:
		}
	}
	return nil
}

// TestTLSHandshakeFlood: 2 000 connections send half a ClientHello and
// stop. Each ends without OnOpen; at most WithTLSMaxHandshakes per loop
// hold a handshake (the older ones are evicted), so memory and the
// handshakes' goroutines stay bounded; a real client is served during the
// flood; when the flood's clients go, nothing is left.
func TestTLSHandshakeFlood(t *testing.T) {
	const flood, perLoop, loops = 2000, 256, 2
	failed := make(chan struct{}, flood+10)
	log := slog.New(&signalLog{msg: "reactor: TLS handshake failed", ch: failed})
	var opens atomic.Int64
	h := HandlerFuncs{
		Open:    func(*Conn) { opens.Add(1) },
		Message: func(c *Conn, in *Buffer) { _, _ = c.Write(in.Next(in.Len())) },
	}
	srv := startTLSEcho(t, h, WithLoops(loops), WithTLSMaxHandshakes(perLoop), WithLogger(log))
	hello := clientHello(t)
	goroutines := runtime.NumGoroutine()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range flood {
		c, err := net.DialTimeout("tcp", srv.Addr().String(), 10*time.Second)
		require.NoError(t, err)
		conns = append(conns, c)
		_, err = c.Write(hello[:len(hello)/2])
		require.NoError(t, err)
	}
	// Round-robin gives each loop flood/loops connections, of which all
	// but the last perLoop are evicted: wait for those failures.
	evicted := flood - loops*perLoop
	for range evicted {
		<-failed
	}
	syncLoops(t, srv) // the last eviction is logged before its newcomer is admitted
	st := srv.Stats()
	assert.Equal(t, int64(loops*perLoop), st.TLS.InProgress)
	assert.Equal(t, int64(evicted), st.TLS.Evicted)
	assert.Zero(t, opens.Load())
	assert.LessOrEqual(t, runtime.NumGoroutine()-goroutines, loops*perLoop+5, "one coroutine per handshake in progress, no more")
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	grown := int64(during.HeapInuse+during.StackInuse) - int64(before.HeapInuse+before.StackInuse)
	t.Logf("memory held by %d handshakes in progress (%d evicted): %d KiB, %.1f KiB each",
		loops*perLoop, evicted, grown>>10, float64(grown)/1024/float64(loops*perLoop))
	assert.Less(t, grown, int64(loops*perLoop*48<<10), "bounded by the handshakes in progress")

	// A real client gets through (evicting one more).
	c := dialTLS(t, srv.Addr(), clientTLSConfig())
	echoLoopback(t, c, "served during the flood")
	assert.Equal(t, int64(1), opens.Load())

	// The flood's clients go: every handshake ends, nothing is left.
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	conns = nil
	for range loops * perLoop { // the one the real client evicted, and the rest as their clients go
		<-failed
	}
	syncLoops(t, srv)
	st = srv.Stats()
	assert.Zero(t, st.TLS.InProgress)
	assert.Equal(t, int64(flood), st.TLS.Failed)
	assert.Equal(t, int64(1), st.TLS.Handshakes)
}

// TestTLSWritesFromGoroutines: Write and Close from goroutines other than
// the loop, over TLS: each goroutine's bytes arrive in order, all of them
// before the close_notify.
func TestTLSWritesFromGoroutines(t *testing.T) {
	const writers, chunks = 4, 500
	done := make(chan struct{})
	h := HandlerFuncs{Open: func(c *Conn) {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range chunks {
					_, _ = fmt.Fprintf(c, "%d:%d\n", w, i)
				}
			}()
		}
		go func() {
			wg.Wait()
			_ = c.Close()
			close(done)
		}()
	}}
	srv := startTLSEcho(t, h)
	c := dialTLS(t, srv.Addr(), clientTLSConfig())
	data, err := io.ReadAll(c) // io.ReadAll stops at io.EOF: the close_notify
	require.NoError(t, err)
	<-done
	next := make([]int, writers)
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var w, i int
		_, err := fmt.Sscanf(line, "%d:%d", &w, &i)
		require.NoError(t, err, "line %q", line)
		require.Equal(t, next[w], i, "writer %d out of order", w)
		next[w]++
	}
	assert.Equal(t, []int{chunks, chunks, chunks, chunks}, next, "every byte before the close_notify")
}

// TestTLSClientDial: a Client with WithTLS dials Go's crypto/tls server
// over loopback: ServerName comes from the address dialled, Dial returns
// after the handshake and OnOpen, ALPN is negotiated, and Close sends
// close_notify; a server it cannot verify fails the dial with no OnOpen
// and no OnClose, and the server sees the client's alert.
func TestTLSClientDial(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			cert := testCert
			if !trusted {
				cert, err = selfsigned.New("127.0.0.1")
				require.NoError(t, err)
			}
			served := make(chan error, 1)
			go func() { served <- serveTLSOnce(ln, cert) }()

			opened := make(chan *tls.ConnectionState, 1)
			closed := make(chan error, 1)
			got := make(chan string, 1)
			h := HandlerFuncs{
				Open: func(c *Conn) {
					opened <- c.TLS()
					_, _ = c.Write([]byte("hello from the dialler"))
				},
				Message: func(c *Conn, in *Buffer) {
					got <- string(in.Next(in.Len()))
					_ = c.Close()
				},
				Close: func(c *Conn, err error) { closed <- err },
			}
			cfg := clientTLSConfig()
			cfg.ServerName = "" // taken from the address
			cfg.NextProtos = []string{"x-test"}
			cl, err := NewClient(h, WithLoops(1), WithTLS(cfg), WithLogger(slog.New(slog.DiscardHandler)))
			require.NoError(t, err)
			defer func() { assert.NoError(t, cl.Shutdown(context.Background())) }()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := cl.Dial(ctx, "tcp", ln.Addr().String())
			if !trusted {
				var uerr x509.UnknownAuthorityError
				assert.ErrorAs(t, err, &uerr)
				assert.Nil(t, c)
				assert.Error(t, <-served, "the server sees the client's alert")
				assert.Empty(t, opened)
				assert.Empty(t, closed)
				st := cl.Stats()
				assert.Equal(t, int64(1), st.TLS.Failed)
				assert.Equal(t, int64(1), st.DialErrors)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, c)
			st := <-opened
			require.NotNil(t, st)
			// Verified against the address's IP: crypto/tls refuses a
			// client config with neither ServerName nor
			// InsecureSkipVerify (and sends no SNI for an IP).
			assert.Len(t, st.VerifiedChains, 1)
			assert.Equal(t, "x-test", st.NegotiatedProtocol)
			assert.Equal(t, "echo: hello from the dialler", <-got)
			assert.NoError(t, <-closed)
			assert.NoError(t, <-served)
			assert.Equal(t, int64(1), cl.Stats().Dialed)
		})
	}
}

// TestTLSLoopDialFromCallback: a plain server dials a TLS upstream from
// OnOpen with DialTLS (a server's own WithTLS is not what its upstreams
// speak), relays the upstream's answer, and a failed handshake reaches
// OnDialError, not OnOpen.
func TestTLSLoopDialFromCallback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	served := make(chan error, 1)
	go func() { served <- serveTLSOnce(ln, testCert) }()

	upOpened := make(chan *tls.ConnectionState, 1)
	relayed := make(chan string, 1)
	dialErr := make(chan error, 1)
	up := HandlerFuncs{
		Open: func(c *Conn) {
			upOpened <- c.TLS()
			_, _ = c.Write([]byte("from a callback"))
		},
		Message: func(c *Conn, in *Buffer) {
			relayed <- string(in.Next(in.Len()))
			_ = c.Close()
		},
	}
	var upAddr atomic.Pointer[string] // set by the test, read on the loop
	upAddr.Store(new(ln.Addr().String()))
	h := HandlerFuncs{
		Open: func(c *Conn) {
			cfg := clientTLSConfig()
			cfg.NextProtos = []string{"x-test"}
			if err := c.Loop().Dial("tcp", *upAddr.Load(), dialErrorFuncs{up, func(err error) { dialErr <- err }}, DialTLS(cfg)); err != nil {
				dialErr <- err
			}
		},
	}
	srv := startServing(t, h)
	client, err := net.Dial("tcp", srv.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	select {
	case st := <-upOpened:
		require.NotNil(t, st, "the dialled connection runs TLS")
		assert.Equal(t, "x-test", st.NegotiatedProtocol)
	case err := <-dialErr:
		t.Fatalf("dial failed: %v", err)
	}
	assert.Equal(t, "echo: from a callback", <-relayed)
	assert.NoError(t, <-served)

	// An upstream that is not TLS at all: the handshake fails, reported
	// to OnDialError.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer plain.Close()
	go func() {
		if c, err := plain.Accept(); err == nil {
			_, _ = c.Write([]byte("SSH-2.0-not-tls\r\n"))
			_ = c.Close()
		}
	}()
	upAddr.Store(new(plain.Addr().String()))
	client2, err := net.Dial("tcp", srv.Addr().String())
	require.NoError(t, err)
	defer client2.Close()
	err = <-dialErr
	var op *net.OpError
	require.ErrorAs(t, err, &op)
	assert.Equal(t, "dial", op.Op)
	assert.Empty(t, upOpened)
}

// dialErrorFuncs is a Handler that also implements DialErrorHandler.
type dialErrorFuncs struct {
	HandlerFuncs
	onDialError func(error)
}

func (d dialErrorFuncs) OnDialError(err error) { d.onDialError(err) }

// serveTLSOnce accepts one connection on ln with Go's crypto/tls server,
// echoes the first message back prefixed with "echo: ", and waits for the
// peer's close_notify.
func serveTLSOnce(ln net.Listener, cert tls.Certificate) error {
	raw, err := ln.Accept()
	if err != nil {
		return err
	}
	c := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"x-test"}})
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if _, err := c.Write(append([]byte("echo: "), buf[:n]...)); err != nil {
		return err
	}
	if _, err := c.Read(buf); err != io.EOF {
		return fmt.Errorf("want the close_notify (io.EOF), got %v", err)
	}
	return nil
}

// syncLoops waits until every loop of srv has finished what it was doing
// when called: a task queued on each runs after the current event.
func syncLoops(t *testing.T, srv *Server) {
	for _, l := range srv.allLoops {
		done := make(chan struct{})
		require.NoError(t, l.Submit(func() { close(done) }))
		<-done
	}
}

// TestTLSLockedLoops: the handshake's coroutine switches with a loop
// goroutine locked to its thread (WithLockOSThread): the runtime allows
// it when the coroutine was made on that thread, as it is.
func TestTLSLockedLoops(t *testing.T) {
	srv := startTLSEcho(t, nil, WithLockOSThread(true))
	c := dialTLS(t, srv.Addr(), clientTLSConfig())
	echoLoopback(t, c, "locked")
}

// TestTLSOverUnixSocket: the TLS layer does not care what carries the
// bytes: a Unix-domain listener serves TLS as a TCP one does.
func TestTLSOverUnixSocket(t *testing.T) {
	name := fmt.Sprintf("@reactor-tls-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	srv, err := NewServer("unix:"+name, HandlerFuncs{Message: func(c *Conn, in *Buffer) {
		if c.TLS() == nil {
			_, _ = c.Write([]byte("no TLS state"))
			return
		}
		_, _ = c.Write(in.Next(in.Len()))
	}}, WithLoops(1), WithTLS(serverTLSConfig()))
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	defer func() {
		require.NoError(t, srv.Shutdown(context.Background()))
		require.ErrorIs(t, <-errc, ErrServerClosed)
	}()
	raw, err := net.DialTimeout("unix", name, 10*time.Second)
	require.NoError(t, err)
	cfg := clientTLSConfig()
	cfg.ServerName = "localhost"
	c := tls.Client(raw, cfg)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	echoLoopback(t, c, "over a Unix socket")
}

// TestTLSClientDialCancelledInHandshake: a context that ends while the
// handshake waits for a silent server ends the dial with ctx.Err(), even
// with no handshake timeout to fall back on, and drops the connection:
// no OnOpen, no OnClose, nothing left open.
func TestTLSClientDialCancelledInHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := make(chan net.Conn, 1)
	go func() {
		defer cancel()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		// Cancel once the hello's first byte is here: the client is then
		// in its handshake, waiting for the ServerHello, not still
		// connecting.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var first [1]byte
		_, _ = io.ReadFull(c, first[:])
		held <- c
	}()
	var calls atomic.Int32
	h := HandlerFuncs{
		Open:  func(*Conn) { calls.Add(1) },
		Close: func(*Conn, error) { calls.Add(1) },
	}
	cl, err := NewClient(h, WithLoops(1), WithTLS(clientTLSConfig()), WithTLSHandshakeTimeout(0),
		WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer func() { assert.NoError(t, cl.Shutdown(context.Background())) }()
	c, err := cl.Dial(ctx, "tcp", ln.Addr().String())
	assert.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, c)
	sc := <-held
	defer sc.Close()
	// The client's end is closed: the server reads the rest of its hello,
	// then EOF.
	require.NoError(t, sc.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.Copy(io.Discard, sc)
	assert.NoError(t, err, "EOF after the ClientHello")
	assert.Zero(t, calls.Load())
	st := cl.Stats()
	assert.Zero(t, st.Open)
	assert.Equal(t, int64(1), st.TLS.Failed)
	assert.Equal(t, int64(1), st.DialErrors)
}
