// This file holds the package's sentinel errors. Their texts are API: tests
// and users match them with errors.Is, and the texts appear in logs.

package reactor

import "errors"

var (
	// ErrServerClosed is returned by Serve after Shutdown or Close, and is
	// wrapped by the error OnClose receives when Close (or an expired
	// Shutdown) ended a connection before its output was flushed.
	ErrServerClosed = errors.New("reactor: server closed")
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
	// Server: the server stops its loops (Shutdown, Close).
	ErrServerLoop = errors.New("reactor: event loop belongs to a server; use Server.Shutdown or Server.Close")
	// ErrServerRunning is returned by Serve on a server that is already
	// serving.
	ErrServerRunning = errors.New("reactor: server already serving")
	// ErrInLoop is returned by Server.Shutdown and Server.Close when called
	// on one of the server's own event loops (from a Handler callback, a
	// task or a timer): the stop has begun, but it cannot be waited for on
	// the loop it has to stop. Serve returns once it is done.
	ErrInLoop = errors.New("reactor: called on the server's own event loop: stop begun, not waited for")
	// ErrTLSHandshakeTimeout ends a TLS handshake that was not done within
	// WithTLSHandshakeTimeout. A server's connection that ends so never
	// opened, so no callback sees it; it is counted in Stats.TLS.TimedOut.
	ErrTLSHandshakeTimeout = errors.New("reactor: TLS handshake timeout")
)
