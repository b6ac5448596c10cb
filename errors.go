// This file holds the package's sentinel errors. Their texts are API: tests
// and users match them with errors.Is, and the texts appear in logs.

package reactor

import "errors"

var (
	// ErrServerClosed is returned by Serve after Shutdown or Close, and is
	// wrapped by the error OnClose receives when Close (or an expired
	// Shutdown) ended a connection before its output was flushed.
	ErrServerClosed = errors.New("reactor: server closed")
	// ErrClientClosed is returned by Client.Dial after Client.Shutdown or
	// Client.Close, reported for a dial that the stop of its loop ended,
	// and wrapped by the error OnClose receives when Client.Close (or an
	// expired Client.Shutdown) ended a connection before its output was
	// flushed.
	ErrClientClosed = errors.New("reactor: client closed")
	// ErrDialTimeout is the error of a dial that did not complete within
	// its timeout (WithDialTimeout, DialTimeout), inside the *net.OpError
	// the dial reports. It is a net.Error whose Timeout method returns
	// true.
	ErrDialTimeout error = &timeoutError{"reactor: dial timeout"}
	// ErrConnClosed is returned by Write, Close and CloseWrite on a
	// connection that is closed or closing.
	ErrConnClosed = errors.New("reactor: connection closed")
	// ErrIdleTimeout ends a connection that saw no bytes in either direction
	// for the idle timeout (WithIdleTimeout, Conn.SetIdleTimeout).
	ErrIdleTimeout = errors.New("reactor: idle timeout")
	// ErrWriteTimeout ends a connection whose pending output made no progress
	// for the write timeout (WithWriteTimeout, Conn.SetWriteTimeout): a peer
	// that does not read.
	ErrWriteTimeout = errors.New("reactor: write timeout")
	// ErrInputTooLarge ends a connection whose unconsumed input passed the
	// limit set by WithMaxInputSize.
	ErrInputTooLarge = errors.New("reactor: input too large")
	// ErrHandlerPanic ends a connection whose handler panicked; the error
	// OnClose receives also carries the panic value.
	ErrHandlerPanic = errors.New("reactor: handler panicked")
	// ErrLoopStopped is returned by Run on a loop that was already stopped,
	// and by Submit on a loop that has stopped (the task will never run).
	ErrLoopStopped = errors.New("reactor: event loop stopped")
	// ErrServerLoop is returned by EventLoop.Stop on a loop that belongs to a
	// Server or a Client, which stops its loops itself (Shutdown, Close).
	ErrServerLoop = errors.New("reactor: event loop belongs to a server; use Server.Shutdown or Server.Close")
	// ErrServerRunning is returned by Serve on a server that is already
	// serving.
	ErrServerRunning = errors.New("reactor: server already serving")
	// ErrInLoop is returned by Shutdown and Close (of a Server or a
	// Client) when called on one of its own event loops (from a Handler
	// callback, a task or a timer): the stop has begun, but it cannot be
	// waited for on the loop it has to stop; Serve returns once it is done.
	// Client.Dial returns it there too, having done nothing: it would wait
	// for the loop it blocks (use EventLoop.Dial in a callback).
	ErrInLoop = errors.New("reactor: called on the server's own event loop: stop begun, not waited for")
	// ErrTLSHandshakeTimeout ends a TLS handshake that was not done within
	// WithTLSHandshakeTimeout. A server's connection that ends so never
	// opened, so no callback sees it; it is counted in Stats.TLS.TimedOut.
	ErrTLSHandshakeTimeout = errors.New("reactor: TLS handshake timeout")
)

// timeoutError is an error that says it is a timeout, as net.Error asks.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }
