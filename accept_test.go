package reactor

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/sim"
)

// A persistent accept error other than descriptor exhaustion (ENOBUFS,
// ENOMEM: the kernel short of memory) used to make the level-triggered loop
// retry on every iteration, spinning and logging a line each time. It now
// backs off as for EMFILE and logs once per episode.
func TestSimPersistentAcceptErrorBacksOff(t *testing.T) {
	for _, errno := range []unix.Errno{unix.ENOBUFS, unix.ENOMEM} {
		t.Run(unix.ErrnoName(errno), func(t *testing.T) {
			logs := &logCapture{}
			rec := newRecorder()
			r := startSim(t, 3, rec, WithLoops(0), WithLogger(slog.New(logs)))
			id := r.s.k.Inject(sim.Fault{Op: sim.OpAccept, Err: errno})
			cl := r.dial()
			steps := 0
			for ; steps < 1000 && r.s.k.Step(); steps++ {
			}
			require.Less(t, steps, 1000, "the loop keeps retrying a failing accept")
			assert.Len(t, logs.matching("accept failing"), 1)
			assert.Nil(t, rec.conn(cl))

			// Still failing after the back-off: tried again, not logged
			// again.
			r.s.k.Advance(acceptBackoffMin)
			assert.Len(t, logs.matching("accept failing"), 1)
			r.s.k.RemoveFault(id)
			r.s.k.Advance(acceptBackoffMax)
			assert.NotNil(t, rec.conn(cl), "accepting resumed")
			assert.Len(t, logs.matching("accepting again"), 1)
			assert.GreaterOrEqual(t, r.srv.Stats().AcceptErrors, int64(2))
			require.NoError(t, cl.Close())
		})
	}
}
