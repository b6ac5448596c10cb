package reactor

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/sim"
)

// The mock joins the Dispatcher contract suite (dispatcher_contract_test.go)
// over a free-running simulated kernel: one poller, one goroutine at a time,
// Wait blocking as epoll_wait does but in virtual time.
func init() {
	contractBackends = append(contractBackends, contractBackend{name: "mock", setup: setupMockContract})
}

func setupMockContract(t *testing.T) contractEnv {
	k := sim.New(sim.Config{Seed: 1})
	d, err := newMockDispatcher(k)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Close()) })
	return contractEnv{d: d, k: k, waitTimeout: func(events []Event, timeout time.Duration) (int, error) {
		return mockWaitTimeout(d, events, timeout)
	}}
}

// mockWaitTimeout runs d.Wait on another goroutine and, once it is blocked
// (not before: the deadline is Now()+timeout when Wait starts), advances
// the virtual clock by timeout; it returns Wait's result. If Wait returns
// without blocking, the clock does not move. timeout must be ≥ 0.
func mockWaitTimeout(d *mockDispatcher, events []Event, timeout time.Duration) (int, error) {
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	blocked := d.p.Blocked() // taken before Wait starts, so its blocking cannot be missed
	go func() {
		n, err := d.Wait(events, timeout)
		res <- result{n, err}
	}()
	select {
	case r := <-res:
		return r.n, r.err
	case <-blocked:
	}
	d.k.Advance(timeout)
	r := <-res
	return r.n, r.err
}

func TestMockWaitTimeoutAdvancesVirtualTime(t *testing.T) {
	k := sim.New(sim.Config{})
	d, err := newMockDispatcher(k)
	require.NoError(t, err)
	defer d.Close()
	n, err := mockWaitTimeout(d, make([]Event, 1), 250*time.Millisecond)
	assert.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, 250*time.Millisecond, k.Now(), "exactly the timeout, never real time")

	fds, err := k.Socketpair()
	require.NoError(t, err)
	require.NoError(t, d.Add(fds[0], EventWrite))
	n, err = mockWaitTimeout(d, make([]Event, 1), time.Hour)
	assert.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, 250*time.Millisecond, k.Now(), "Wait did not block: the clock stays")
}

func TestMockDispatcherConversions(t *testing.T) {
	k := sim.New(sim.Config{})
	d, err := newMockDispatcher(k)
	require.NoError(t, err)
	defer d.Close()
	assert.Same(t, k, d.simKernel())
	assert.Same(t, k, d.kernel())

	fds, err := k.Socketpair()
	require.NoError(t, err)
	a, b := fds[0], fds[1]
	require.NoError(t, d.Add(a, EventRead|EventWrite))
	ev := make([]Event, 1)
	n, err := d.Wait(ev, 0)
	require.NoError(t, err)
	assert.Equal(t, []Event{{a, EventWrite}}, ev[:n])

	_, err = k.Write(b, []byte("x"))
	require.NoError(t, err)
	ev = make([]Event, 4) // longer than before: the scratch buffer grows
	n, err = d.Wait(ev, 0)
	require.NoError(t, err)
	assert.Equal(t, []Event{{a, EventRead | EventWrite}}, ev[:n])
	assert.Equal(t, "RW", ev[0].Events.String())

	require.NoError(t, d.Modify(a, EventRead))
	n, err = d.Wait(ev, 0)
	require.NoError(t, err)
	assert.Equal(t, []Event{{a, EventRead}}, ev[:n])

	err = d.Add(a, EventRead)
	var se *os.SyscallError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "epoll_ctl", se.Syscall)
	assert.ErrorIs(t, err, unix.EEXIST)
	assert.ErrorIs(t, d.Delete(b), unix.ENOENT)
	assert.ErrorIs(t, d.Add(99, EventRead), unix.EBADF)
	assert.ErrorIs(t, d.Add(a, Events(4)), unix.EINVAL)
	_, err = d.Wait(nil, 0)
	assert.ErrorIs(t, err, unix.EINVAL)

	require.NoError(t, d.Close())
	assert.NoError(t, d.Close())
	_, err = d.Wait(ev, 0)
	assert.Same(t, ErrDispatcherClosed, err)
	assert.Same(t, ErrDispatcherClosed, d.Wake())
}

func TestSimDispatcherFactory(t *testing.T) {
	s := NewSim(1)
	var f DispatcherFactory = s.Dispatcher
	d1, err := f()
	require.NoError(t, err)
	d2, err := f()
	require.NoError(t, err)
	assert.Same(t, s.k, d1.(*mockDispatcher).simKernel(), "one network for every loop")
	assert.Same(t, s.k, d2.(*mockDispatcher).simKernel())
	assert.True(t, s.k.Stepped())
	require.NoError(t, d1.Close())
	require.NoError(t, d2.Close())

	s.k.SetFDLimit(3)
	_, err = s.Dispatcher()
	assert.ErrorIs(t, err, unix.EMFILE)
}

func TestSimWaitReturnsOnlyInATurn(t *testing.T) {
	s := NewSim(1)
	d, err := s.Dispatcher()
	require.NoError(t, err)
	res := make(chan error, 1)
	go func() {
		n, err := d.Wait(make([]Event, 1), -1)
		if err == nil && n != 0 {
			err = fmt.Errorf("%d events, want 0", n)
		}
		res <- err
		// The loop's turn lasts until it waits again or closes.
		if err := d.Close(); err != nil {
			res <- err
		}
	}()
	assert.False(t, s.k.Step(), "parked, with no work")
	require.NoError(t, d.Wake())
	select {
	case err := <-res:
		t.Fatalf("Wait returned before its turn: %v", err)
	default:
	}
	assert.True(t, s.k.Step(), "a turn, ended by the loop's Close")
	assert.NoError(t, <-res, "the turn ended the Wait")
	select {
	case err := <-res:
		t.Errorf("close: %v", err)
	default:
	}
}

// simEchoLoop is an event loop over the Dispatcher interface, as the server
// will be: it accepts, echoes, and closes at EOF, making every socket call
// through the dispatcher's kernel, and traces the events each Wait returns.
func simEchoLoop(d Dispatcher, lfd int, stop <-chan struct{}, errs chan<- error, wg *sync.WaitGroup) {
	defer wg.Done()
	md := d.(*mockDispatcher)
	k, sk := md.kernel(), md.simKernel()
	fail := func(format string, args ...any) { errs <- fmt.Errorf(format, args...) }
	if err := d.Add(lfd, EventRead); err != nil {
		fail("add listener: %v", err)
	}
	open := map[int]bool{}
	events := make([]Event, 2)
	buf := make([]byte, 16)
	for {
		n, err := d.Wait(events, -1)
		if err != nil {
			fail("wait: %v", err)
			return
		}
		sk.Tracef("events %v", events[:n])
		select {
		case <-stop:
			for _, fd := range slices.Sorted(maps.Keys(open)) { // sorted: map order is random

				_ = d.Delete(fd)
				_ = k.Close(fd)
			}
			if err := d.Close(); err != nil {
				fail("close: %v", err)
			}
			return
		default:
		}
		for _, ev := range events[:n] {
			if ev.FD == lfd {
				for {
					fd, _, err := k.Accept(lfd)
					if err != nil {
						break
					}
					open[fd] = true
					if err := d.Add(fd, EventRead); err != nil {
						fail("add: %v", err)
					}
				}
				continue
			}
			for {
				n, err := k.Read(ev.FD, buf)
				if err == unix.EAGAIN {
					break
				}
				if err != nil || n == 0 {
					_ = d.Delete(ev.FD)
					_ = k.Close(ev.FD)
					delete(open, ev.FD)
					break
				}
				if _, err := k.Write(ev.FD, buf[:n]); err != nil {
					fail("write: %v", err)
				}
			}
		}
	}
}

// simEchoRun runs two echo loops over a Sim with SO_REUSEPORT listeners,
// drives a script of clients and returns the trace.
func simEchoRun(t *testing.T, seed int64) string {
	s := NewSim(seed)
	stop := make(chan struct{})
	errs := make(chan error, 100)
	var wg sync.WaitGroup
	var ds []Dispatcher
	for range 2 {
		d, err := s.Dispatcher()
		require.NoError(t, err)
		ds = append(ds, d)
	}
	for _, d := range ds {
		lfd, _, err := s.k.Listen("tcp", "127.0.0.1:8000", true, 0)
		require.NoError(t, err)
		wg.Add(1)
		go simEchoLoop(d, lfd, stop, errs, &wg)
	}
	var clients []*sim.Conn
	for i := range 6 {
		c, err := s.k.Dial("127.0.0.1:8000")
		require.NoError(t, err)
		_, err = c.Write([]byte(strings.Repeat(fmt.Sprint(i), 10+i)))
		require.NoError(t, err)
		clients = append(clients, c)
	}
	s.k.RunUntilIdle()
	for i, c := range clients {
		assert.Equal(t, strings.Repeat(fmt.Sprint(i), 10+i), string(c.ReadAll()))
		require.NoError(t, c.CloseWrite())
	}
	s.k.RunUntilIdle()
	close(stop)
	for _, d := range ds {
		require.NoError(t, d.Wake())
	}
	s.k.RunUntilIdle()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return s.k.TraceText()
}

func TestSimSameSeedSameEventOrder(t *testing.T) {
	a, b := simEchoRun(t, 9), simEchoRun(t, 9)
	assert.True(t, a == b, "two runs with seed 9 differ:\n%s", firstDifference(a, b))
	assert.Contains(t, a, "events [{")

	distinct := map[string]bool{}
	for seed := range int64(10) {
		distinct[simEchoRun(t, seed)] = true
	}
	assert.Greater(t, len(distinct), 1, "the seed changes the order")
}

func firstDifference(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return fmt.Sprintf("line %d:\n\t%s\n\t%s", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(la), len(lb))
}

func TestMockWaitAndWakeDoNotAllocate(t *testing.T) {
	k := sim.New(sim.Config{})
	d, err := newMockDispatcher(k)
	require.NoError(t, err)
	defer d.Close()
	for range 3 {
		fds, err := k.Socketpair()
		require.NoError(t, err)
		require.NoError(t, d.Add(fds[0], EventWrite))
	}
	ev := make([]Event, 8)
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		if n, err := d.Wait(ev, 0); n != 3 || err != nil {
			panic("unexpected Wait result")
		}
	}), "Wait with events ready")
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		_ = d.Wake()
		_, _ = d.Wait(ev[:1], -1)
	}), "Wake and the Wait it ends")
}
