package sim

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func newPoller(t *testing.T, k *Kernel) *Poller {
	t.Helper()
	p, err := k.NewPoller()
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, p.Close()) })
	return p
}

// waitResult runs p.Wait on another goroutine; the returned function
// collects its result.
func waitAsync(p *Poller, events []Ready, timeout time.Duration) func() (int, error) {
	type result struct {
		n   int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		n, err := p.Wait(events, timeout)
		ch <- result{n, err}
	}()
	return func() (int, error) {
		r := <-ch
		return r.n, r.err
	}
}

func TestFreeWaitBlocksUntilReady(t *testing.T) {
	k := New(Config{})
	p := newPoller(t, k)
	fds, err := k.Socketpair()
	require.NoError(t, err)
	require.NoError(t, p.Add(fds[0], Read))
	ev := make([]Ready, 4)
	wait := waitAsync(p, ev, -1)
	<-p.Blocked()
	_, err = k.Write(fds[1], []byte("x"))
	require.NoError(t, err)
	n, err := wait()
	require.NoError(t, err)
	assert.Equal(t, []Ready{{fds[0], Read}}, ev[:n])
}

func TestFreeWaitTimesOutInVirtualTime(t *testing.T) {
	k := New(Config{})
	p := newPoller(t, k)
	n, err := p.Wait(make([]Ready, 1), 0)
	assert.NoError(t, err, "timeout 0 polls")
	assert.Zero(t, n)

	wait := waitAsync(p, make([]Ready, 1), 50*time.Millisecond)
	<-p.Blocked()
	k.Advance(49 * time.Millisecond)
	select {
	case <-p.Blocked(): // still blocked: the deadline has not come
	default:
		t.Error("Wait returned before its deadline")
	}
	k.Advance(time.Millisecond)
	n, err = wait()
	assert.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, 50*time.Millisecond, k.Now())
}

func TestFreeWake(t *testing.T) {
	k := New(Config{})
	p := newPoller(t, k)
	ev := make([]Ready, 1)

	wait := waitAsync(p, ev, -1)
	<-p.Blocked()
	require.NoError(t, p.Wake())
	n, err := wait()
	assert.NoError(t, err)
	assert.Zero(t, n)

	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, p.Wake())
		}()
	}
	wg.Wait()
	n, err = p.Wait(ev, -1)
	assert.NoError(t, err, "a Wake before Wait makes it return at once")
	assert.Zero(t, n)
	wait = waitAsync(p, ev, 10*time.Millisecond)
	<-p.Blocked()
	k.Advance(10 * time.Millisecond)
	n, err = wait()
	assert.NoError(t, err, "the Wakes collapsed into one")
	assert.Zero(t, n)
}

func TestWaitReportsEveryReadyDescriptorInTurn(t *testing.T) {
	k := New(Config{Seed: 5})
	p := newPoller(t, k)
	var fds []int
	for range 7 {
		pair, err := k.Socketpair()
		require.NoError(t, err)
		require.NoError(t, p.Add(pair[0], Write))
		fds = append(fds, pair[0])
	}
	for _, size := range []int{1, 2, 3} {
		seen := map[int]int{}
		ev := make([]Ready, size)
		for range (len(fds) + size - 1) / size {
			n, err := p.Wait(ev, 0)
			require.NoError(t, err)
			require.Equal(t, min(size, len(fds)), n)
			for _, e := range ev[:n] {
				seen[e.FD]++
			}
		}
		assert.Len(t, seen, len(fds), "with %d per Wait, none starves", size)
	}
}

func TestWaitOrderIsDrawnFromTheSeed(t *testing.T) {
	order := func(seed int64) []Ready {
		k := New(Config{Seed: seed})
		p := newPoller(t, k)
		for range 6 {
			pair, err := k.Socketpair()
			require.NoError(t, err)
			require.NoError(t, p.Add(pair[0], Write))
		}
		ev := make([]Ready, 6)
		n, err := p.Wait(ev, 0)
		require.NoError(t, err)
		require.Equal(t, 6, n)
		return ev
	}
	assert.Equal(t, order(1), order(1))
	differs := false
	for seed := int64(2); seed < 10; seed++ {
		differs = differs || !assert.ObjectsAreEqual(order(1), order(seed))
	}
	assert.True(t, differs)
}

func TestPollerRegistrationErrors(t *testing.T) {
	k := New(Config{})
	p, err := k.NewPoller()
	require.NoError(t, err)
	fds, err := k.Socketpair()
	require.NoError(t, err)
	require.NoError(t, p.Add(fds[0], Read))
	assert.Equal(t, unix.EEXIST, p.Add(fds[0], Write))
	assert.Equal(t, unix.ENOENT, p.Modify(fds[1], Read))
	assert.Equal(t, unix.ENOENT, p.Delete(fds[1]))
	assert.Equal(t, unix.EINVAL, p.Modify(fds[0], 8))
	require.NoError(t, p.Modify(fds[0], Write))
	require.NoError(t, p.Delete(fds[0]))
	assert.Equal(t, unix.ENOENT, p.Delete(fds[0]))
	_, err = p.Wait(nil, 0)
	assert.Equal(t, unix.EINVAL, err)

	wait := waitAsync(p, make([]Ready, 1), -1)
	<-p.Blocked()
	_, err = p.Wait(make([]Ready, 1), 0)
	assert.Equal(t, unix.EINVAL, err, "one Wait at a time")
	require.NoError(t, p.Close())
	_, err = wait()
	assert.ErrorIs(t, err, ErrPollerClosed, "Close ends a blocked Wait")

	assert.NoError(t, p.Close(), "Close twice")
	for name, err := range map[string]error{
		"Add":    p.Add(fds[0], Read),
		"Modify": p.Modify(fds[0], Read),
		"Delete": p.Delete(fds[0]),
		"Wake":   p.Wake(),
		"Wait":   second(p.Wait(make([]Ready, 1), 0)),
	} {
		assert.ErrorIs(t, err, ErrPollerClosed, name)
	}
	select {
	case <-p.Blocked():
	default:
		t.Error("Blocked of a closed poller must not block")
	}
	assert.Equal(t, []int{fds[0], fds[1]}, k.OpenFDs(), "the poller's descriptor is freed")
}

func TestWaitAndWakeDoNotAllocate(t *testing.T) {
	k := New(Config{})
	p := newPoller(t, k)
	for range 4 {
		pair, err := k.Socketpair()
		require.NoError(t, err)
		require.NoError(t, p.Add(pair[0], Read|Write))
	}
	ev := make([]Ready, 8)
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		if n, err := p.Wait(ev, 0); n != 4 || err != nil {
			panic("unexpected Wait result")
		}
	}), "Wait with events ready")
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		_ = p.Wake()
		_, _ = p.Wait(ev[:1], -1)
	}), "Wake")
}

func TestHugeTimeoutDoesNotWrapAround(t *testing.T) {
	for _, stepped := range []bool{false, true} {
		t.Run(fmt.Sprint("stepped=", stepped), func(t *testing.T) {
			k := New(Config{Stepped: stepped})
			k.Advance(time.Second)
			p := newPoller(t, k)
			wait := waitAsync(p, make([]Ready, 1), math.MaxInt64)
			<-p.Blocked()
			if stepped {
				assert.False(t, k.Step(), "no deadline in the past: no work")
			}
			k.Advance(time.Hour)
			select {
			case <-p.Blocked():
			default:
				t.Error("Wait timed out: its deadline wrapped around")
			}
			require.NoError(t, p.Wake())
			turn := make(chan bool, 1)
			if stepped {
				// The turn lasts until the poller waits again or closes.
				go func() { turn <- k.Step() }()
			}
			n, err := wait()
			assert.NoError(t, err)
			assert.Zero(t, n)
			if stepped {
				require.NoError(t, p.Close())
				assert.True(t, <-turn)
			}
		})
	}
}
