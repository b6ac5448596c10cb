// Package graceful runs the example servers (echo, chat, http) from start
// to stop the same way: serve until a signal arrives, then shut down
// gracefully within a time limit, close hard at once on a second signal,
// and tell the caller whether the shutdown was graceful, so that main exits
// non-zero when it was not.
package graceful

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tcpreactor/reactor"
)

// Server is what Run needs of a *reactor.Server.
type Server interface {
	Serve() error
	Shutdown(ctx context.Context) error
	Close() error
}

var _ Server = (*reactor.Server)(nil)

// ErrInterrupted is returned by Run when a second signal cut the graceful
// shutdown short: the server was closed hard, and output not yet flushed
// was lost.
var ErrInterrupted = errors.New("graceful: shutdown interrupted by a second signal; closed hard")

// Run serves srv until Serve fails or stop delivers a signal. On the signal
// it shuts srv down gracefully (reactor.Server.Shutdown: stop accepting,
// flush what was written, close), allowing it timeout; a second signal
// during the shutdown closes srv hard at once. Run returns only when Serve
// has returned, so every goroutine of srv has exited and every log line has
// been written, and it returns:
//
//   - nil if the graceful shutdown completed;
//   - an error wrapping the context's error (context.DeadlineExceeded) if
//     the shutdown ran out of time and srv was closed hard;
//   - an error wrapping ErrInterrupted if a second signal closed srv hard;
//   - Serve's error if Serve failed by itself, before any signal.
//
// stop should be buffered, as signal.Notify requires; Run reads at most
// two signals from it. log receives a line when the shutdown starts and
// when a second signal cuts it short.
func Run(srv Server, stop <-chan os.Signal, timeout time.Duration, log *slog.Logger) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	var sig os.Signal
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case sig = <-stop:
	}
	log.Info("shutting down", "signal", sig, "timeout", timeout)

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	var err error
	select {
	case err = <-shut:
		if err != nil {
			err = fmt.Errorf("graceful shutdown did not finish within %v; closed hard: %w", timeout, err)
		}
	case sig = <-stop:
		log.Warn("second signal: closing at once", "signal", sig)
		err = fmt.Errorf("%w (%v)", ErrInterrupted, sig)
		if cerr := srv.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close: %w", cerr))
		}
		<-shut // returns once Close has stopped the loops
	}
	if serr := <-served; !errors.Is(serr, reactor.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve: %w", serr))
	}
	return err
}
