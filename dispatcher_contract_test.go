// A minimal stand-in for the Dispatcher contract suite, which a colleague is
// writing on another branch: the same types and variable, so that
// dispatcher_mock_test.go compiles and its backend runs, and a few cases.
// On merge, keep the colleague's version of this file.

package reactor

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor/internal/kernel"
)

type contractBackend struct {
	name  string
	setup func(t *testing.T) contractEnv
}

type contractEnv struct {
	d Dispatcher
	k kernel.Interface // where the test creates socketpairs, writes, closes
	// waitTimeout calls d.Wait(events, timeout) and makes timeout pass on
	// d's clock.
	waitTimeout func(events []Event, timeout time.Duration) (int, error)
}

var contractBackends []contractBackend

func socketpair(t *testing.T, env contractEnv) [2]int {
	t.Helper()
	fds, err := env.k.Socketpair()
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = env.k.Close(fds[0]) // may be closed by the test already
		_ = env.k.Close(fds[1])
	})
	return fds
}

func waitNow(t *testing.T, d Dispatcher) []Event {
	t.Helper()
	ev := make([]Event, 8)
	n, err := d.Wait(ev, 0)
	require.NoError(t, err)
	return ev[:n]
}

func TestDispatcherContract(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, env contractEnv)
	}{
		{"readable after the peer writes; nothing after Delete", func(t *testing.T, env contractEnv) {
			fds := socketpair(t, env)
			require.NoError(t, env.d.Add(fds[0], EventRead))
			assert.Empty(t, waitNow(t, env.d))
			_, err := env.k.Write(fds[1], []byte("x"))
			require.NoError(t, err)
			assert.Equal(t, []Event{{fds[0], EventRead}}, waitNow(t, env.d))
			assert.Equal(t, []Event{{fds[0], EventRead}}, waitNow(t, env.d), "level-triggered")
			require.NoError(t, env.d.Delete(fds[0]))
			assert.Empty(t, waitNow(t, env.d))
		}},
		{"writable after Add; interest 0 reports nothing", func(t *testing.T, env contractEnv) {
			fds := socketpair(t, env)
			require.NoError(t, env.d.Add(fds[0], EventWrite))
			assert.Equal(t, []Event{{fds[0], EventWrite}}, waitNow(t, env.d))
			require.NoError(t, env.d.Modify(fds[0], 0))
			assert.Empty(t, waitNow(t, env.d))
		}},
		{"add twice, unknown fd", func(t *testing.T, env contractEnv) {
			fds := socketpair(t, env)
			require.NoError(t, env.d.Add(fds[0], EventRead))
			assert.Error(t, env.d.Add(fds[0], EventRead))
			assert.Error(t, env.d.Modify(fds[1], EventRead))
			assert.Error(t, env.d.Delete(fds[1]))
		}},
		{"peer close is EventRead even for EventWrite interest", func(t *testing.T, env contractEnv) {
			fds := socketpair(t, env)
			require.NoError(t, env.d.Add(fds[0], EventWrite))
			require.NoError(t, env.k.Close(fds[1]))
			ev := waitNow(t, env.d)
			require.Len(t, ev, 1)
			assert.Equal(t, EventRead|EventWrite, ev[0].Events)
		}},
		{"timeout with nothing ready", func(t *testing.T, env contractEnv) {
			n, err := env.waitTimeout(make([]Event, 4), 10*time.Millisecond)
			assert.NoError(t, err)
			assert.Zero(t, n)
		}},
		{"Wake ends a blocked Wait; Wake then Wait", func(t *testing.T, env contractEnv) {
			done := make(chan error, 1)
			started := make(chan struct{})
			go func() {
				close(started)
				_, err := env.d.Wait(make([]Event, 4), -1)
				done <- err
			}()
			<-started
			require.NoError(t, env.d.Wake())
			assert.NoError(t, <-done)
			require.NoError(t, env.d.Wake())
			n, err := env.d.Wait(make([]Event, 4), -1)
			assert.NoError(t, err)
			assert.Zero(t, n)
		}},
		{"after Close", func(t *testing.T, env contractEnv) {
			require.NoError(t, env.d.Close())
			assert.NoError(t, env.d.Close())
			_, err := env.d.Wait(make([]Event, 1), 0)
			for _, err := range []error{env.d.Add(0, EventRead), env.d.Modify(0, EventRead), env.d.Delete(0), env.d.Wake(), err} {
				assert.True(t, errors.Is(err, ErrDispatcherClosed), "%v", err)
			}
		}},
	}
	for _, b := range contractBackends {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, b.setup(t)) })
			}
		})
	}
}
