package tour

import (
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// addr is where the servers of these tests listen, in the simulation.
const addr = "127.0.0.1:7"

// serve starts h over a new Sim with seed, and stops it (checking that the
// shutdown went well) when the test ends.
func serve(t *testing.T, seed int64, h reactor.Handler, opts ...reactor.Option) *reactor.Sim {
	t.Helper()
	s := reactor.NewSim(seed)
	opts = append([]reactor.Option{
		reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(2),
		reactor.WithLogger(slog.New(slog.DiscardHandler)),
	}, opts...)
	srv, err := reactor.NewServer(addr, h, opts...)
	require.NoError(t, err)
	stop := s.Start(srv)
	t.Cleanup(func() { assert.NoError(t, stop()) })
	return s
}

// dial connects a client.
func dial(t *testing.T, s *reactor.Sim) *reactor.SimConn {
	t.Helper()
	c, err := s.Dial(addr)
	require.NoError(t, err)
	return c
}

// send writes p as the client, and lets the server run until idle.
func send(t *testing.T, s *reactor.Sim, c *reactor.SimConn, p string) {
	t.Helper()
	_, err := c.WriteString(p)
	require.NoError(t, err)
	s.RunUntilIdle()
}

// closed reports whether the server has closed c in order: its FIN has
// arrived, with no reset.
func closed(c *reactor.SimConn) bool {
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF && !c.WasReset()
}
