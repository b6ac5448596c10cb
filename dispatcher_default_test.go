package reactor

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDefaultDispatcherFollowsBuildTag: without a WithDispatcher option a
// server runs over epoll, or over poll in a build with -tags reactor_poll.
// wantDefaultDispatcher comes from a test file built under the same tag.
func TestDefaultDispatcherFollowsBuildTag(t *testing.T) {
	d, err := defaultDispatcher()
	require.NoError(t, err)
	assert.Equal(t, wantDefaultDispatcher, fmt.Sprintf("%T", d))
	require.NoError(t, d.Close())

	srv, err := NewServer("127.0.0.1:0", HandlerFuncs{}, WithLoops(2))
	require.NoError(t, err)
	defer func() { require.NoError(t, srv.Close()) }()
	for _, l := range srv.allLoops {
		assert.Equal(t, wantDefaultDispatcher, fmt.Sprintf("%T", l.d), "loop %s", l.name)
	}
}
