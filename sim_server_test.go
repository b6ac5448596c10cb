package reactor

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServerOverSimSmoke(t *testing.T) {
	s := NewSim(1)
	h := HandlerFuncs{Message: func(c *Conn, in *Buffer) { _, _ = c.Write(in.Next(in.Len())) }}
	srv, err := NewServer("127.0.0.1:80", h, WithDispatcher(s.Dispatcher), WithLoops(2))
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	c, err := s.k.Dial("127.0.0.1:80")
	require.NoError(t, err)
	_, _ = c.Write([]byte("hello"))
	s.k.RunUntilIdle()
	assert.Equal(t, "hello", string(c.ReadAll()))
	require.NoError(t, srv.Shutdown(context.Background()))
	require.ErrorIs(t, <-errc, ErrServerClosed)
	t.Log(s.k.TraceText())
}
