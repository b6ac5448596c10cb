package reactor

// The Dispatcher contract suite: one table of cases (contractCases), run by
// TestDispatcherContract over every backend in contractBackends. Another
// file adds a backend with an init function that appends to
// contractBackends (the mock does, from dispatcher_mock_test.go).
//
// Tests that only make sense for the kernel backends (real time, errno
// values, races with the real Close) follow the suite, and the benchmarks
// close the file.

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/kernel"
)

// contractBackend is one Dispatcher implementation under test.
type contractBackend struct {
	name string
	// setup returns a fresh Dispatcher and its environment for one test
	// case, and arranges (t.Cleanup) for the Dispatcher to be closed when
	// the case ends. Close is called even if the case closed it already.
	setup func(t *testing.T) contractEnv
}

// contractEnv is what a case needs to drive one backend.
type contractEnv struct {
	d Dispatcher
	k kernel.Interface // where the test creates socketpairs, writes, closes
	// waitTimeout calls d.Wait(events, timeout) and makes timeout pass on
	// d's clock: the kernel backends just block for real; the mock advances
	// its virtual clock.
	waitTimeout func(events []Event, timeout time.Duration) (int, error)
}

// contractBackends lists the backends TestDispatcherContract runs over.
var contractBackends = []contractBackend{
	{name: "epoll", setup: kernelSetup(Epoll)},
	{name: "poll", setup: kernelSetup(Poll)},
}

// kernelSetup is the setup of a backend that waits on real descriptors.
func kernelSetup(f DispatcherFactory) func(t *testing.T) contractEnv {
	return func(t *testing.T) contractEnv {
		d, err := f()
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, d.Close()) })
		return contractEnv{d: d, k: kernel.OS{}, waitTimeout: d.Wait}
	}
}

// contractCases is the suite. Each case gets a fresh environment.
var contractCases = []struct {
	name string
	run  func(t *testing.T, env contractEnv)
}{
	{"add modify delete", testAddModifyDelete},
	{"add twice is an error", testAddTwice},
	{"modify or delete of an unknown fd is an error", testUnknownFD},
	{"readable after the peer writes", testReadable},
	{"writable right after Add", testWritable},
	{"interest 0 reports nothing", testInterestZero},
	{"nothing after Delete", testNothingAfterDelete},
	{"delete among many", testDeleteAmongMany},
	{"peer close reported as EventRead", testPeerClose},
	{"timeout with nothing ready", testTimeout},
	{"Wake ends a blocked Wait", testWakeBlocked},
	{"Wake before Wait", testWakeBeforeWait},
	{"concurrent Wakes collapse", testWakesCollapse},
	{"more ready than fit: none starved", testNoStarvation},
	{"10000 descriptors", testManyFDs},
	{"every method fails after Close", testClosed},
	{"Wait and Wake allocate nothing", testNoAllocs},
}

func TestDispatcherContract(t *testing.T) {
	for _, b := range contractBackends {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range contractCases {
				t.Run(c.name, func(t *testing.T) {
					c.run(t, b.setup(t))
				})
			}
		})
	}
}

// waitBound bounds every wait for something that should happen at once.
const waitBound = 10 * time.Second

// fdSet tracks the socketpairs of one case, so that the case can close some
// itself and the rest are closed when it ends.
type fdSet struct {
	env  contractEnv
	open map[int]bool
}

func newFDSet(t *testing.T, env contractEnv) *fdSet {
	s := &fdSet{env: env, open: make(map[int]bool)}
	t.Cleanup(func() {
		for fd := range s.open {
			// The contract wants a descriptor deleted before it is closed.
			// Most are not registered or the dispatcher is closed already,
			// so the error is expected and deliberately dropped.
			_ = env.d.Delete(fd)
			assert.NoError(t, env.k.Close(fd))
		}
	})
	return s
}

// pair returns a new socketpair.
func (s *fdSet) pair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := s.env.k.Socketpair()
	require.NoError(t, err)
	s.open[fds[0]], s.open[fds[1]] = true, true
	return fds[0], fds[1]
}

// close closes fd now.
func (s *fdSet) close(t *testing.T, fd int) {
	t.Helper()
	require.True(t, s.open[fd], "fd %d is not open", fd)
	delete(s.open, fd)
	require.NoError(t, s.env.k.Close(fd))
}

// send writes p to fd, all at once.
func send(t *testing.T, env contractEnv, fd int, p string) {
	t.Helper()
	n, err := env.k.Write(fd, []byte(p))
	require.NoError(t, err)
	require.Equal(t, len(p), n)
}

// ready makes one Wait(events, 0) with room for size events and returns
// what it reported by descriptor, failing on a duplicate.
func ready(t *testing.T, env contractEnv, size int) map[int]Events {
	t.Helper()
	events := make([]Event, size)
	n, err := env.d.Wait(events, 0)
	require.NoError(t, err)
	require.LessOrEqual(t, n, size)
	got := make(map[int]Events, n)
	for _, ev := range events[:n] {
		_, dup := got[ev.FD]
		require.False(t, dup, "fd %d reported twice in one Wait", ev.FD)
		got[ev.FD] = ev.Events
	}
	return got
}

// none is an empty ready set, for comparisons.
var none = map[int]Events{}

func testAddModifyDelete(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	a, b := fds.pair(t)
	d := env.d

	require.NoError(t, d.Add(a, EventRead))
	assert.Equal(t, none, ready(t, env, 8), "nothing to read yet")
	send(t, env, b, "x")
	assert.Equal(t, map[int]Events{a: EventRead}, ready(t, env, 8))

	steps := []struct {
		interest Events
		want     map[int]Events
	}{
		{EventRead | EventWrite, map[int]Events{a: EventRead | EventWrite}},
		{EventWrite, map[int]Events{a: EventWrite}},
		{0, none},
		{EventRead, map[int]Events{a: EventRead}},
	}
	for _, s := range steps {
		require.NoError(t, d.Modify(a, s.interest))
		assert.Equal(t, s.want, ready(t, env, 8), "after Modify(%v)", s.interest)
	}

	require.NoError(t, d.Delete(a))
	assert.Equal(t, none, ready(t, env, 8))
	require.NoError(t, d.Add(a, EventWrite), "a deleted fd can be added again")
	assert.Equal(t, map[int]Events{a: EventWrite}, ready(t, env, 8))
}

func testAddTwice(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	a, b := fds.pair(t)
	require.NoError(t, env.d.Add(a, EventRead))
	assert.Error(t, env.d.Add(a, EventRead))
	assert.Error(t, env.d.Add(a, EventWrite))

	// The failed Adds changed nothing.
	send(t, env, b, "x")
	assert.Equal(t, map[int]Events{a: EventRead}, ready(t, env, 8))
}

func testUnknownFD(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	a, _ := fds.pair(t)
	assert.Error(t, env.d.Modify(a, EventRead), "never added")
	assert.Error(t, env.d.Delete(a), "never added")

	require.NoError(t, env.d.Add(a, EventWrite))
	require.NoError(t, env.d.Delete(a))
	assert.Error(t, env.d.Modify(a, EventRead), "deleted")
	assert.Error(t, env.d.Delete(a), "deleted")
	assert.Equal(t, none, ready(t, env, 8))
}

func testReadable(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	a, b := fds.pair(t)
	require.NoError(t, env.d.Add(a, EventRead))
	assert.Equal(t, none, ready(t, env, 8))

	send(t, env, b, "hello")
	// A Wait that may block returns at once, since a is ready.
	events := make([]Event, 8)
	r := awaitWait(t, env, startWait(env, events, -1))
	require.NoError(t, r.err)
	assert.Equal(t, []Event{{FD: a, Events: EventRead}}, events[:r.n])

	// Level-triggered: still readable until read.
	assert.Equal(t, map[int]Events{a: EventRead}, ready(t, env, 8))
	assert.Equal(t, map[int]Events{a: EventRead}, ready(t, env, 8))
	buf := make([]byte, 16)
	n, err := env.k.Read(a, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:n]))
	assert.Equal(t, none, ready(t, env, 8), "drained")
}

func testWritable(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	a, _ := fds.pair(t)
	require.NoError(t, env.d.Add(a, EventWrite))
	assert.Equal(t, map[int]Events{a: EventWrite}, ready(t, env, 8))
	assert.Equal(t, map[int]Events{a: EventWrite}, ready(t, env, 8), "level-triggered")
}

func testInterestZero(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	a, b := fds.pair(t)
	require.NoError(t, env.d.Add(a, 0))
	assert.Equal(t, none, ready(t, env, 8), "writable but not asked for")
	send(t, env, b, "x")
	assert.Equal(t, none, ready(t, env, 8), "readable but not asked for")
	n, err := env.waitTimeout(make([]Event, 8), 10*time.Millisecond)
	require.NoError(t, err)
	assert.Zero(t, n)
}

func testNothingAfterDelete(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	a, b := fds.pair(t)
	require.NoError(t, env.d.Add(a, EventRead|EventWrite))
	send(t, env, b, "x")
	assert.Equal(t, map[int]Events{a: EventRead | EventWrite}, ready(t, env, 8))
	require.NoError(t, env.d.Delete(a))
	assert.Equal(t, none, ready(t, env, 8))
	n, err := env.waitTimeout(make([]Event, 8), 10*time.Millisecond)
	require.NoError(t, err)
	assert.Zero(t, n)
}

// testDeleteAmongMany deletes descriptors from the middle and the end of a
// set and modifies the survivors, checking the rest stay intact (for poll,
// it exercises the swap-remove and the index that follows a moved entry).
func testDeleteAmongMany(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	const n = 6
	var local [n]int
	want := map[int]Events{}
	for i := range local {
		a, b := fds.pair(t)
		local[i] = a
		require.NoError(t, env.d.Add(a, EventRead))
		send(t, env, b, "x")
		want[a] = EventRead
	}
	assert.Equal(t, want, ready(t, env, 2*n))

	for _, i := range []int{1, n - 1, 0} {
		require.NoError(t, env.d.Delete(local[i]))
		delete(want, local[i])
		assert.Equal(t, want, ready(t, env, 2*n), "after deleting fd %d", local[i])
	}
	for fd := range want {
		require.NoError(t, env.d.Modify(fd, EventRead|EventWrite))
		want[fd] = EventRead | EventWrite
		assert.Equal(t, want, ready(t, env, 2*n), "after modifying fd %d", fd)
	}
	for fd := range want {
		require.NoError(t, env.d.Delete(fd))
		delete(want, fd)
		assert.Equal(t, want, ready(t, env, 2*n), "after deleting fd %d", fd)
	}
	require.NoError(t, env.d.Add(local[1], EventRead), "re-added after the shuffle")
	assert.Equal(t, map[int]Events{local[1]: EventRead}, ready(t, env, 2*n))
}

// testPeerClose: when the peer of a socketpair closes, the socket is
// readable (EOF) and no longer writable (EPIPE); the contract reports that
// as EventRead and EventWrite together whatever the interest, even 0.
func testPeerClose(t *testing.T, env contractEnv) {
	for _, interest := range []Events{EventWrite, EventRead, 0} {
		t.Run(fmt.Sprintf("interest %v", interest), func(t *testing.T) {
			fds := newFDSet(t, env)
			a, b := fds.pair(t)
			require.NoError(t, env.d.Add(a, interest))
			fds.close(t, b)
			assert.Equal(t, map[int]Events{a: EventRead | EventWrite}, ready(t, env, 8))

			// What the caller then learns by reading and writing.
			n, err := env.k.Read(a, make([]byte, 8))
			assert.NoError(t, err)
			assert.Zero(t, n, "EOF")
			_, err = env.k.Write(a, []byte("x"))
			assert.ErrorIs(t, err, unix.EPIPE)
			require.NoError(t, env.d.Delete(a))
		})
	}
}

func testTimeout(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	a, _ := fds.pair(t)
	require.NoError(t, env.d.Add(a, EventRead)) // registered, never ready
	events := make([]Event, 8)
	n, err := env.waitTimeout(events, 10*time.Millisecond)
	require.NoError(t, err)
	assert.Zero(t, n)
	n, err = env.d.Wait(events, 0)
	require.NoError(t, err)
	assert.Zero(t, n)
}

// waitResult is what a Wait run on another goroutine returned.
type waitResult struct {
	n   int
	err error
}

// startWait runs env.d.Wait(events, timeout) on a new goroutine and returns
// where its result will arrive. It returns after that goroutine has
// started (not necessarily entered Wait: that cannot be observed).
func startWait(env contractEnv, events []Event, timeout time.Duration) <-chan waitResult {
	started := make(chan struct{})
	done := make(chan waitResult, 1)
	go func() {
		close(started)
		n, err := env.d.Wait(events, timeout)
		done <- waitResult{n, err}
	}()
	<-started
	return done
}

// awaitWait receives the result of a startWait. If none comes within
// waitBound it wakes the Wait (so the goroutine does not outlive the test),
// then fails.
func awaitWait(t *testing.T, env contractEnv, done <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(waitBound):
	}
	assert.NoError(t, env.d.Wake(), "unblocking a stuck Wait")
	r := <-done
	require.Failf(t, "Wait did not return", "within %v (it returned %d, %v after a second Wake)", waitBound, r.n, r.err)
	return r
}

func testWakeBlocked(t *testing.T, env contractEnv) {
	for _, timeout := range []time.Duration{-1, time.Hour} {
		t.Run(fmt.Sprintf("timeout %v", timeout), func(t *testing.T) {
			fds := newFDSet(t, env)
			a, _ := fds.pair(t)
			require.NoError(t, env.d.Add(a, EventRead)) // never ready
			done := startWait(env, make([]Event, 8), timeout)
			require.NoError(t, env.d.Wake())
			r := awaitWait(t, env, done)
			require.NoError(t, r.err)
			assert.Zero(t, r.n, "a Wake is not an Event")
			assert.Equal(t, none, ready(t, env, 8), "the Wake was consumed")
			require.NoError(t, env.d.Delete(a))
		})
	}
}

func testWakeBeforeWait(t *testing.T, env contractEnv) {
	for _, timeout := range []time.Duration{-1, time.Hour} {
		t.Run(fmt.Sprintf("timeout %v", timeout), func(t *testing.T) {
			require.NoError(t, env.d.Wake())
			r := awaitWait(t, env, startWait(env, make([]Event, 8), timeout))
			require.NoError(t, r.err)
			assert.Zero(t, r.n)
			assert.Equal(t, none, ready(t, env, 8), "the Wake was consumed")
		})
	}
}

// testWakesCollapse: 1000 concurrent Wakes make one Wait return, and
// nothing is left for the next.
func testWakesCollapse(t *testing.T, env contractEnv) {
	const wakers = 1000
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, wakers)
	for range wakers {
		wg.Go(func() {
			<-start
			if err := env.d.Wake(); err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}

	r := awaitWait(t, env, startWait(env, make([]Event, 8), -1))
	require.NoError(t, r.err)
	assert.Zero(t, r.n)
	assert.Equal(t, none, ready(t, env, 8), "the Wakes collapsed into one")
}

// testNoStarvation: with three descriptors ready and room for one event,
// successive Waits take turns: each round of three reports all three.
func testNoStarvation(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	all := map[int]bool{}
	for range 3 {
		a, b := fds.pair(t)
		require.NoError(t, env.d.Add(a, EventRead))
		send(t, env, b, "x")
		all[a] = true
	}
	for round := range 3 {
		seen := map[int]bool{}
		for range 3 {
			got := ready(t, env, 1)
			require.Len(t, got, 1, "round %d", round)
			for fd, ev := range got {
				assert.Equal(t, EventRead, ev)
				seen[fd] = true
			}
		}
		assert.Equal(t, all, seen, "round %d reports every ready fd", round)
	}
}

// testManyFDs registers 10 000 descriptors (5 000 socketpairs, both ends),
// makes them all readable, and checks that one big Wait reports them all,
// and so do successive Waits with a smaller slice.
func testManyFDs(t *testing.T, env contractEnv) {
	const pairs = 5000
	raiseNoFile(t, 2*pairs+100)
	fds := newFDSet(t, env)
	all := map[int]bool{}
	for range pairs {
		a, b := fds.pair(t)
		for _, fd := range []int{a, b} {
			require.NoError(t, env.d.Add(fd, EventRead))
			send(t, env, fd, "x") // makes the other end readable
			all[fd] = true
		}
	}

	got := ready(t, env, 2*pairs+100)
	assert.Len(t, got, 2*pairs)
	for fd, ev := range got {
		if !assert.True(t, all[fd], "fd %d was never registered", fd) ||
			!assert.Equal(t, EventRead, ev, "fd %d", fd) {
			break
		}
	}

	const slice = 1000
	seen := map[int]bool{}
	for i := range 2 * pairs / slice {
		got := ready(t, env, slice)
		require.Len(t, got, slice, "Wait %d", i)
		for fd := range got {
			seen[fd] = true
		}
	}
	assert.Len(t, seen, 2*pairs, "%d Waits of %d report all %d", 2*pairs/slice, slice, 2*pairs)
}

// raiseNoFile makes sure the process may have need descriptors open,
// raising the soft RLIMIT_NOFILE to the hard limit for the test, or skips
// the test if the hard limit is too low.
func raiseNoFile(t *testing.T, need uint64) {
	t.Helper()
	var old unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &old))
	if old.Max < need {
		t.Skipf("needs %d open descriptors; the hard RLIMIT_NOFILE is %d", need, old.Max)
	}
	if old.Cur >= old.Max {
		return
	}
	raised := unix.Rlimit{Cur: old.Max, Max: old.Max}
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &raised))
	t.Cleanup(func() { assert.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &old)) })
}

func testClosed(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	a, b := fds.pair(t)
	d := env.d
	require.NoError(t, d.Add(a, EventRead))
	send(t, env, b, "x")

	require.NoError(t, d.Close())
	assert.NoError(t, d.Close(), "Close twice")

	events := make([]Event, 8)
	calls := []struct {
		name string
		err  error
	}{
		{"Add", d.Add(b, EventRead)},
		{"Add registered", d.Add(a, EventRead)},
		{"Modify", d.Modify(a, EventWrite)},
		{"Delete", d.Delete(a)},
		{"Wake", d.Wake()},
		{"Wait 0", second(d.Wait(events, 0))},
		{"Wait timeout", second(env.waitTimeout(events, 10*time.Millisecond))},
		{"Wait -1", second(d.Wait(events, -1))},
	}
	for _, c := range calls {
		assert.ErrorIs(t, c.err, ErrDispatcherClosed, c.name)
	}
	assert.NoError(t, d.Close(), "Close a third time")
}

// second returns the error of a Wait.
func second(_ int, err error) error { return err }

func testNoAllocs(t *testing.T, env contractEnv) {
	fds := newFDSet(t, env)
	a, b := fds.pair(t)
	c, _ := fds.pair(t)
	require.NoError(t, env.d.Add(a, EventRead))
	require.NoError(t, env.d.Add(c, EventRead)) // never ready
	send(t, env, b, "x")
	events := make([]Event, 64)

	measure := func(name string, want int, fn func() (int, error)) {
		t.Helper()
		var n int
		var err error
		allocs := testing.AllocsPerRun(100, func() {
			m, e := fn()
			if e != nil && err == nil {
				err = e
			}
			n = m
		})
		require.NoError(t, err, name)
		assert.Equal(t, want, n, name)
		assert.Zero(t, allocs, name)
	}
	measure("Wait with events ready", 1, func() (int, error) { return env.d.Wait(events, 0) })
	measure("Wake", 0, func() (int, error) { return 0, env.d.Wake() })
	measure("Wake then Wait", 1, func() (int, error) {
		if err := env.d.Wake(); err != nil {
			return 0, err
		}
		return env.d.Wait(events, -1) // returns at once: a is ready, and woken
	})
	require.NoError(t, env.d.Delete(a))
	measure("Wait with nothing ready", 0, func() (int, error) { return env.d.Wait(events, 0) })
}

// kernelBackends are the backends that wait on real descriptors, for the
// tests below that depend on the kernel.
var kernelBackends = []struct {
	name string
	f    DispatcherFactory
}{
	{"epoll", Epoll},
	{"poll", Poll},
}

// TestKernelWaitTimeout: a Wait with a timeout never returns before the
// timeout has passed, including timeouts that are not whole milliseconds
// (epoll rounds up, so a loop waiting for a timer cannot spin), and after
// Wakes that an earlier Wait consumed (a wake-up left pending, the eventfd
// not drained, would end every later Wait at once).
func TestKernelWaitTimeout(t *testing.T) {
	for _, kb := range kernelBackends {
		for _, timeout := range []time.Duration{500 * time.Microsecond, 2500 * time.Microsecond, 10 * time.Millisecond} {
			for _, wakes := range []int{0, 1, 100} {
				t.Run(fmt.Sprintf("%s %v after %d wakes", kb.name, timeout, wakes), func(t *testing.T) {
					env := kernelSetup(kb.f)(t)
					events := make([]Event, 4)
					if wakes > 0 {
						for range wakes {
							require.NoError(t, env.d.Wake())
						}
						n, err := env.d.Wait(events, -1)
						require.NoError(t, err)
						require.Zero(t, n)
					}
					start := time.Now()
					n, err := env.d.Wait(events, timeout)
					elapsed := time.Since(start)
					require.NoError(t, err)
					assert.Zero(t, n)
					assert.GreaterOrEqual(t, elapsed, timeout)
				})
			}
		}
	}
}

func TestCeilMillis(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int
	}{
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{2500 * time.Microsecond, 3},
		{time.Second, 1000},
		{(1<<31 - 1) * time.Millisecond, 1<<31 - 1},
		{1 << 62, 1<<31 - 1},
		{1<<63 - 1, 1<<31 - 1},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, ceilMillis(tt.d), "ceilMillis(%v)", tt.d)
	}
}

// TestKernelErrors: both kernel backends give the same errno for the same
// mistake (poll mimics epoll_ctl), and reject an empty events slice.
func TestKernelErrors(t *testing.T) {
	for _, kb := range kernelBackends {
		t.Run(kb.name, func(t *testing.T) {
			env := kernelSetup(kb.f)(t)
			fds := newFDSet(t, env)
			a, _ := fds.pair(t)
			require.NoError(t, env.d.Add(a, EventRead))
			assert.ErrorIs(t, env.d.Add(a, EventRead), unix.EEXIST)
			assert.ErrorIs(t, env.d.Add(-1, EventRead), unix.EBADF)
			_, b := fds.pair(t)
			assert.ErrorIs(t, env.d.Modify(b, EventRead), unix.ENOENT)
			assert.ErrorIs(t, env.d.Delete(b), unix.ENOENT)
			assert.ErrorIs(t, env.d.Delete(-1), unix.EBADF)

			n, err := env.d.Wait(nil, 0)
			assert.Zero(t, n)
			assert.ErrorIs(t, err, errNoEventSlots)
		})
	}
}

// TestKernelWakeCloseRace runs Wakes from other goroutines while the
// dispatcher is closed (run it with -race). Every Wake returns nil or
// ErrDispatcherClosed, once Close has returned only the latter, and no Wake
// writes to a descriptor number that Close released and the process reused.
func TestKernelWakeCloseRace(t *testing.T) {
	for _, kb := range kernelBackends {
		t.Run(kb.name, func(t *testing.T) {
			for range 20 {
				d, err := kb.f()
				require.NoError(t, err)
				var wg sync.WaitGroup
				stop := make(chan struct{})
				errs := make(chan error, 4)
				for range 4 {
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							if err := d.Wake(); err != nil && !errors.Is(err, ErrDispatcherClosed) {
								errs <- err
								return
							}
							// Let the test goroutine run even with
							// GOMAXPROCS=1, where spinning wakers would hold
							// the only P until preempted.
							runtime.Gosched()
						}
					})
				}
				// Let the wakers get going, draining a wake-up in between so
				// that they take the slow path (the eventfd write) too.
				for range 10 {
					_, err := d.Wait(make([]Event, 1), -1)
					require.NoError(t, err)
				}
				require.NoError(t, d.Close())
				// While the wakers go on, take the descriptor numbers Close
				// released (the lowest free ones): no Wake may write to them.
				reused, err := kernel.OS{}.Socketpair()
				require.NoError(t, err)
				assert.ErrorIs(t, d.Wake(), ErrDispatcherClosed)
				close(stop)
				wg.Wait()
				close(errs)
				for err := range errs {
					assert.NoError(t, err)
				}
				for i, fd := range reused {
					n, err := kernel.OS{}.Read(reused[1-i], make([]byte, 8))
					assert.Equal(t, unix.EAGAIN, err, "fd %d was written %d bytes after Close", fd, n)
				}
				assert.NoError(t, kernel.OS{}.Close(reused[0]))
				assert.NoError(t, kernel.OS{}.Close(reused[1]))
			}
		})
	}
}

// benchDispatcher creates a kernel Dispatcher with registered socketpairs,
// ready of which are readable, for the benchmarks.
func benchDispatcher(b *testing.B, f DispatcherFactory, registered, readyN int) Dispatcher {
	b.Helper()
	k := kernel.OS{}
	d, err := f()
	require.NoError(b, err)
	b.Cleanup(func() { assert.NoError(b, d.Close()) })
	for i := range registered {
		fds, err := k.Socketpair()
		require.NoError(b, err)
		b.Cleanup(func() {
			assert.NoError(b, d.Delete(fds[0]))
			assert.NoError(b, k.Close(fds[0]))
			assert.NoError(b, k.Close(fds[1]))
		})
		require.NoError(b, d.Add(fds[0], EventRead))
		if i < readyN {
			_, err := k.Write(fds[1], []byte("x"))
			require.NoError(b, err)
		}
	}
	return d
}

// BenchmarkDispatcherWait is Wait(0) with some of the registered
// descriptors ready: epoll costs what is ready, poll what is registered.
func BenchmarkDispatcherWait(b *testing.B) {
	shapes := []struct{ registered, ready int }{
		{1, 1}, {16, 16}, {256, 256}, {1024, 1}, {1024, 1024},
	}
	for _, kb := range kernelBackends {
		for _, s := range shapes {
			b.Run(fmt.Sprintf("%s/registered=%d/ready=%d", kb.name, s.registered, s.ready), func(b *testing.B) {
				d := benchDispatcher(b, kb.f, s.registered, s.ready)
				events := make([]Event, s.registered)
				b.ReportAllocs()
				for b.Loop() {
					n, err := d.Wait(events, 0)
					if err != nil || n != s.ready {
						b.Fatalf("Wait = %d, %v; want %d ready", n, err, s.ready)
					}
				}
			})
		}
	}
}

// BenchmarkDispatcherWakeWait is a Wake followed by the Wait it wakes, on
// one goroutine: the cost of the eventfd round trip.
func BenchmarkDispatcherWakeWait(b *testing.B) {
	for _, kb := range kernelBackends {
		b.Run(kb.name, func(b *testing.B) {
			d := benchDispatcher(b, kb.f, 1, 0)
			events := make([]Event, 8)
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Wake(); err != nil {
					b.Fatal(err)
				}
				if n, err := d.Wait(events, -1); err != nil || n != 0 {
					b.Fatalf("Wait = %d, %v; want 0", n, err)
				}
			}
		})
	}
}

// TestKernelTCPPeerClose pins down what the kernel backends report when a
// TCP peer closes a connection that is registered for EventWrite only
// (epollInterest explains why EPOLLRDHUP is not asked for): the FIN alone
// shows as writable, and the write after it draws a reset, reported as
// EventRead|EventWrite. Both are deliberate: see epollInterest.
func TestKernelTCPPeerClose(t *testing.T) {
	k := kernel.OS{}
	for _, kb := range kernelBackends {
		t.Run(kb.name, func(t *testing.T) {
			env := kernelSetup(kb.f)(t)
			lfd, sa, err := k.Listen("tcp4", "127.0.0.1:0", false, 0)
			require.NoError(t, err)
			defer func() { assert.NoError(t, k.Close(lfd)) }()
			require.NoError(t, env.d.Add(lfd, EventRead))
			sa4 := sa.(*unix.SockaddrInet4)
			peer, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", sa4.Port))
			require.NoError(t, err)
			defer func() { _ = peer.Close() }() // closed below; this is for early failures

			events := make([]Event, 4)
			n, err := env.d.Wait(events, waitBound)
			require.NoError(t, err)
			require.Equal(t, []Event{{FD: lfd, Events: EventRead}}, events[:n], "connection pending")
			fd, _, err := k.Accept(lfd)
			require.NoError(t, err)
			defer func() { assert.NoError(t, k.Close(fd)) }()
			require.NoError(t, env.d.Delete(lfd))
			require.NoError(t, env.d.Add(fd, EventWrite))
			defer func() { assert.NoError(t, env.d.Delete(fd)) }()

			require.NoError(t, peer.Close())
			// The FIN is not observable through the dispatcher under
			// interest EventWrite, so wait for it with poll(2) on EPOLLRDHUP.
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
			n, err = unix.Poll(pfd, int(waitBound.Milliseconds()))
			require.NoError(t, err)
			require.Equal(t, 1, n, "FIN within %v", waitBound)
			assert.Equal(t, map[int]Events{fd: EventWrite}, ready(t, env, 4), "after the FIN")

			_, err = k.Write(fd, []byte("x"))
			require.NoError(t, err, "the peer's FIN does not stop our writes")
			deadline := time.Now().Add(waitBound)
			for {
				n, err = env.d.Wait(events, time.Until(deadline))
				require.NoError(t, err)
				require.NotZero(t, n, "no reset reported within %v", waitBound)
				if events[0].Events == EventRead|EventWrite {
					break
				}
				require.Equal(t, []Event{{FD: fd, Events: EventWrite}}, events[:n])
				// Still only writable: the reset is on its way. Wait for it
				// without spinning, with poll(2) on POLLERR|POLLHUP.
				pfd := []unix.PollFd{{Fd: int32(fd), Events: 0}}
				_, err = unix.Poll(pfd, int(time.Until(deadline).Milliseconds()))
				require.NoError(t, err)
			}
			// What the caller learns: the FIN came first, so a read says EOF
			// (the kernel reports a reset in CLOSE_WAIT as EPIPE, not
			// ECONNRESET), and writing fails.
			n, err = k.Read(fd, make([]byte, 8))
			assert.Zero(t, n)
			assert.NoError(t, err)
			_, err = k.Write(fd, []byte("x"))
			assert.Equal(t, unix.EPIPE, err)
		})
	}
}
