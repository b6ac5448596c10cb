package reactor_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// simCrowd runs a fixed script over a Sim with the given seed: a server with
// four sub-loops (five loops in all, each on its own goroutine) and 100
// clients that arrive while the loops already run, send a line each, get it
// echoed, then end in three ways (half-close, more bytes then close,
// reset). It checks what every client received and returns the trace. The
// script does not depend on the seed; only the simulation's choices do.
func simCrowd(t *testing.T, seed int64) string {
	s := reactor.NewSim(seed)
	tr := newConnTracker()
	srv, err := reactor.NewServer(simAddr, tr.handler(simEcho()),
		reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(4),
		reactor.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	stop := s.Start(srv)

	clients := make([]*reactor.SimConn, 100)
	for i := range clients {
		clients[i] = simDial(t, s)
		_, err := clients[i].WriteString(fmt.Sprintf("hello from %d\n", i))
		require.NoError(t, err)
		if i%7 == 6 {
			// A few turns while clients are still arriving, so that the
			// accepting loop and the serving loops interleave.
			s.Step()
			s.Step()
		}
	}
	s.RunUntilIdle()
	for i, c := range clients {
		assert.Equal(t, fmt.Sprintf("hello from %d\n", i), string(c.ReadAll()), "client %d", i)
		switch i % 3 {
		case 0:
			assert.NoError(t, c.CloseWrite())
		case 1:
			_, err := c.WriteString("bye\n")
			assert.NoError(t, err)
		case 2:
			assert.NoError(t, c.Reset())
		}
	}
	s.RunUntilIdle()
	for i, c := range clients {
		switch i % 3 {
		case 0:
			assert.True(t, c.EOF(), "client %d: the server closed after the FIN", i)
		case 1:
			assert.Equal(t, "bye\n", string(c.ReadAll()), "client %d", i)
			assert.NoError(t, c.Close())
		}
	}
	s.RunUntilIdle()
	require.NoError(t, stop())
	tr.verifyPairs(t)
	assert.Empty(t, s.OpenFDs())
	return s.Trace()
}

// simDiff describes where two traces first differ.
func simDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return fmt.Sprintf("line %d:\n\t%s\n\t%s", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("one is a prefix of the other (%d and %d lines)", len(la), len(lb))
}

func TestSimSameSeedSameTrace(t *testing.T) {
	a := simCrowd(t, 1)
	b := simCrowd(t, 1)
	require.True(t, a == b, "two runs with seed 1 differ at %s", simDiff(a, b))
	for _, want := range []string{"turn p5", "note loop 3: OnMessage", "reset c3", "OnClose"} {
		assert.Contains(t, a, want, "the scenario reaches every loop and every ending")
	}

	distinct := map[string]bool{a: true}
	for seed := int64(2); seed <= 20; seed++ {
		distinct[simCrowd(t, seed)] = true
	}
	assert.GreaterOrEqual(t, len(distinct), 2, "the seed changes the interleaving")
	t.Logf("20 seeds, %d distinct traces", len(distinct))
}

// The simulation works inside a testing/synctest bubble too: the loops'
// goroutines block only on what synctest counts as durably blocking
// (channels made in the bubble, sync.Cond), and the trace is the same as
// outside it, byte for byte.
func TestSimInsideSynctest(t *testing.T) {
	outside := simCrowd(t, 5)
	var inside string
	synctest.Test(t, func(t *testing.T) {
		inside = simCrowd(t, 5)
		synctest.Wait() // every goroutine Start made has exited or is durably blocked
	})
	assert.True(t, inside == outside, "the bubble changed the run at %s", simDiff(inside, outside))
}
