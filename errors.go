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
	// ErrLoopStopped is returned by Run on a loop that was already stopped.
	ErrLoopStopped = errors.New("reactor: event loop stopped")
)
