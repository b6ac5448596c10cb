package reactor_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// These tests are the lossless-close guarantee over real loopback sockets:
// a reply much larger than the kernel's socket buffers, a client that reads
// it slowly through a 16 KiB receive buffer, and input from the client that
// the server never reads (a pipelined request, a request sent before a
// banner). Closing a socket with unread input makes Linux send RST, and the
// RST drops what is still queued for the client; before the lingering close
// the client got about 13 MiB of 16 and then "connection reset by peer".

const (
	bigReply   = 16 << 20
	slowRcvBuf = 16 << 10
)

// pattern fills p with a position-dependent byte pattern, so that a client
// can check every byte of what it got, not only the count.
func pattern(p []byte, off int) {
	for i := range p {
		p[i] = byte((off + i) * 7 / 3)
	}
}

func bigPayload() []byte {
	p := make([]byte, bigReply)
	pattern(p, 0)
	return p
}

// readAllChecked reads r to EOF, closes c as a client does at EOF, and
// checks the bytes against pattern. It fails the test if the connection
// ends with an error (a reset) instead of EOF, or if the bytes differ.
func readAllChecked(t *testing.T, c net.Conn, r io.Reader, want int) {
	t.Helper()
	got, err := io.ReadAll(r)
	_ = c.Close()
	require.NoError(t, err, "the client must see EOF, not a reset, after %d of %d bytes", len(got), want)
	require.Len(t, got, want)
	exp := make([]byte, want)
	pattern(exp, 0)
	require.True(t, string(got) == string(exp), "reply bytes differ")
}

// closeRecorder records OnClose's error for the connections that asked for
// the big reply (marked with their context); the others (the probes of
// waitListenerClosed) are not waited for.
type closeRecorder struct {
	errc chan error
}

func newCloseRecorder() *closeRecorder { return &closeRecorder{errc: make(chan error, 1)} }

func (r *closeRecorder) closed(c *reactor.Conn, err error) {
	if c.Context() == r {
		r.errc <- err
	}
}

func TestLingeringCloseDeliversEverything(t *testing.T) {
	payload := bigPayload()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Run("Close after reply with a pipelined request unread", func(t *testing.T) {
				rec := newCloseRecorder()
				h := reactor.HandlerFuncs{
					Message: func(c *reactor.Conn, in *reactor.Buffer) {
						i := in.IndexByte('\n')
						if i < 0 {
							return
						}
						in.Discard(i + 1)
						c.SetContext(rec)
						_, _ = c.Write(payload)
						_ = c.Close()
					},
					Close: rec.closed,
				}
				srv := serve(t, h, reactor.WithDispatcher(be.f), reactor.WithLoops(1))
				c := dialSmallWindow(t, srv, slowRcvBuf)
				defer c.Close()
				_, err := c.Write([]byte("GET\n"))
				require.NoError(t, err)
				br := bufio.NewReaderSize(c, 1)
				_, err = br.Peek(1) // the server has answered, and called Close
				require.NoError(t, err)
				// The next request arrives after Close: the server never
				// reads it.
				_, err = c.Write([]byte("GET again\n"))
				require.NoError(t, err)
				readAllChecked(t, c, br, bigReply)
				assert.NoError(t, <-rec.errc)
			})

			t.Run("Close in OnOpen after a banner, request unread", func(t *testing.T) {
				rec := newCloseRecorder()
				h := reactor.HandlerFuncs{
					Open: func(c *reactor.Conn) {
						c.SetContext(rec)
						_, _ = c.Write(payload) // "busy: try later", at length
						_ = c.Close()
					},
					Close: rec.closed,
				}
				srv := serve(t, h, reactor.WithDispatcher(be.f), reactor.WithLoops(1))
				c := dialSmallWindow(t, srv, slowRcvBuf)
				defer c.Close()
				_, err := c.Write([]byte("HELLO\n"))
				require.NoError(t, err)
				readAllChecked(t, c, c, bigReply)
				assert.NoError(t, <-rec.errc)
			})

			t.Run("graceful Shutdown of a paused connection", func(t *testing.T) {
				rec := newCloseRecorder()
				h := reactor.HandlerFuncs{
					Message: func(c *reactor.Conn, in *reactor.Buffer) {
						if i := in.IndexByte('\n'); i >= 0 {
							in.Discard(i + 1)
							c.SetContext(rec)
							_, _ = c.Write(payload) // passes the high-water mark: reading pauses
						}
					},
					Close: rec.closed,
				}
				srv, err := reactor.NewServer("127.0.0.1:0", h, reactor.WithDispatcher(be.f), reactor.WithLoops(0))
				require.NoError(t, err)
				served := make(chan error, 1)
				go func() { served <- srv.Serve() }()

				c := dialSmallWindow(t, srv, slowRcvBuf)
				defer c.Close()
				_, err = c.Write([]byte("GET\n"))
				require.NoError(t, err)
				br := bufio.NewReaderSize(c, 1)
				_, err = br.Peek(1)
				require.NoError(t, err)
				_, err = c.Write([]byte("GET again\n")) // waits unread: the connection is paused
				require.NoError(t, err)

				shut := make(chan error, 1)
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
					defer cancel()
					shut <- srv.Shutdown(ctx)
				}()
				waitListenerClosed(t, srv.Addr().String())
				readAllChecked(t, c, br, bigReply)
				assert.NoError(t, <-rec.errc)
				assert.NoError(t, <-shut)
				assert.ErrorIs(t, <-served, reactor.ErrServerClosed)
			})
		})
	}
}

// waitListenerClosed waits until connecting to addr is refused: with
// WithLoops(0) the one loop closes its listener and drains its connections
// in the same task, so a refused connect means the drain has begun. Each
// attempt is a full connect, not a sleep; the count only bounds a bug.
func waitListenerClosed(t *testing.T, addr string) {
	t.Helper()
	for range 100000 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			// Refused, or reset while it waited in the closed listener's
			// queue.
			if !errors.Is(err, syscall.ECONNRESET) {
				require.ErrorIs(t, err, syscall.ECONNREFUSED)
			}
			return
		}
		// Accepted just before the listener closed: it is drained too.
		_ = c.Close()
	}
	t.Fatal("the listener never closed")
}

// A peer that sends without end after we close is not waited for without
// end: past LingerMaxBytes the connection is reset and OnClose says why.
func TestLingerByteBudget(t *testing.T) {
	rec := newCloseRecorder()
	h := reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			c.SetContext(rec)
			_ = c.Close()
		},
		Close: rec.closed,
	}
	srv := serve(t, h, reactor.WithLoops(1))
	c := dial(t, srv)
	defer c.Close()
	chunk := make([]byte, 64<<10)
	var err error
	for sent := 0; sent <= 2*reactor.LingerMaxBytes && err == nil; sent += len(chunk) {
		_, err = c.Write(chunk)
	}
	got := <-rec.errc
	assert.ErrorIs(t, got, reactor.ErrInputTooLarge)
	st := srv.Stats()
	assert.Equal(t, int64(1), st.Closed.InputTooLarge)
	if err != nil {
		assert.True(t, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE), "%v", err)
	}
}

// A connection whose handler panicked ends with a reset the peer sees, over
// real sockets too (SO_LINGER 0): a FIN would make a reply cut short by the
// crash look complete.
func TestPanicEndsWithAReset(t *testing.T) {
	h := reactor.HandlerFuncs{
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			in.Discard(in.Len())
			_, _ = c.Write([]byte("part of a reply"))
		},
		WriteComplete: func(*reactor.Conn) { panic("deliberate") }, // after the part was sent
	}
	srv := serve(t, h, reactor.WithLoops(1), reactor.WithLogger(slog.New(slog.DiscardHandler)))
	c := dial(t, srv)
	defer c.Close()
	_, err := c.Write([]byte("GET\n"))
	require.NoError(t, err)
	got, err := io.ReadAll(c)
	assert.ErrorIs(t, err, syscall.ECONNRESET, "got %q", got)
}
