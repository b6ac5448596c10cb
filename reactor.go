// This file holds the event loop (the C design's event_loop) and the channel
// that binds a descriptor to the object handling its events. An EventLoop and
// everything registered with it are owned by the one goroutine running
// EventLoop.Run; Submit, AfterFunc, Stop and Timer.Stop are the only ways in
// from other goroutines.

package reactor

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpreactor/reactor/internal/kernel"
)

// eventHandler is implemented by what a channel is embedded in: a
// connection or an acceptor. handleEvent runs on the loop goroutine.
type eventHandler interface {
	handleEvent(ev Events)
}

// channel is the C design's channel: one descriptor and the interest the
// Dispatcher was last told, so the loop only calls Modify when it changes.
// It is embedded in the object that handles the descriptor's events (a Conn
// or an acceptor), which the loop's channel map finds by descriptor. A
// channel is owned by its loop; it does not own the descriptor (the Conn or
// acceptor does).
//
// unix is set before the channel is registered and never changes, so it may
// be read from any goroutine. It lives here, in the padding after interest,
// so that it costs a Conn nothing.
type channel struct {
	fd       int
	interest Events
	unix     bool // an AF_UNIX socket: no IP address, no TCP options
}

// Loop states.
const (
	loopIdle int32 = iota
	loopRunning
	loopStopped
)

// Defaults for a loop's buffers.
const (
	defaultReadBufferSize = 64 << 10
	initialEvents         = 128
	maxEvents             = 8192
	// timerCompactMin is how many stopped timers must pile up before the
	// loop considers compacting its heap.
	timerCompactMin = 64
)

// EventLoop is one reactor: a Dispatcher, the channels registered with it, a
// queue of tasks and a heap of timers, all driven by one goroutine calling
// Run. One iteration waits for readiness (no longer than the next timer),
// dispatches every ready channel, runs the tasks queued by Submit, fires the
// timers that are due and finally flushes, once, every connection that was
// written to during the iteration.
//
// A Server creates and runs its loops; NewEventLoop creates a standalone one,
// useful for timers and tasks or for tests. Submit, AfterFunc and Stop are
// safe from any goroutine; everything else belongs to the loop goroutine.
type EventLoop struct {
	name string
	d    Dispatcher
	k    kernel.Interface
	log  *slog.Logger
	g    *group  // what the loop's connections share; nil for a standalone loop
	srv  *Server // the server the loop belongs to, or nil

	// Owned by the loop goroutine.
	channels channelMap
	events   []Event
	timers   timerHeap
	running  []func() // the task batch being run; swapped with tasks
	readBuf  []byte   // shared by every connection of the loop for reads
	inView   Buffer   // borrows readBuf to hand fresh input to OnMessage
	iov      [][]byte // scratch for readv
	current  *Conn    // connection whose callback is running, for panic isolation
	// writing is the connection whose output the loop is writing with its
	// mu released, and writingLen how much; both guarded by that
	// connection's mu (see Conn.writeUnlocked).
	writing    *Conn
	writingLen int
	// spare is an empty output buffer kept for the next connection marked
	// inline; guarded by that connection's mu (see Conn.outBuffer).
	spare     *Buffer
	conns     int  // open connections on this loop
	recoverOn bool // recover handler panics (WithRecover)
	tracing   bool // record callbacks in the simulation's trace (see trace)
	draining  bool // graceful shutdown: stop once conns reaches 0
	tmo       loopTimeouts
	hasAccept bool    // an acceptor is registered on this loop
	dials     *dialer // dials in progress (see addDial)
	// The TLS handshakes in progress, oldest first (see admitHandshake).
	hsHead, hsTail *Conn
	hsCount        int
	waitSubs       int // main loop: sub-loops still running, it outlives them when draining

	// Shared with other goroutines.
	mu        sync.Mutex // guards tasks, incoming, timerIn and closedQ
	closedQ   bool       // the loop has stopped: Submit, AfterFunc and adopt queue nothing more
	tasks     []func()
	incoming  []*Conn     // connections handed over by the acceptor, not yet registered
	adopting  []*Conn     // the batch of incoming being registered; loop-owned
	timerIn   []*Timer    // timers created by AfterFunc, not yet in the heap
	queued    atomic.Bool // tasks, incoming or timerIn is non-empty
	flushHead atomic.Pointer[Conn]
	sleeping  atomic.Bool // the loop is in, or about to enter, Dispatcher.Wait
	stopping  atomic.Bool
	state     atomic.Int32
	timerSeq  atomic.Uint64
	numConns  atomic.Int64 // connections assigned to the loop and not yet closed
	stats     loopStats

	stoppedTimers atomic.Int32  // stopped timers still in the heap
	gid           atomic.Uint64 // the goroutine running Run (see Server.onLoop)
	done          chan struct{}
}

// NewEventLoop creates a standalone event loop over a new Dispatcher from
// factory (nil means the platform default, Epoll on Linux). Call Run to drive
// it and Stop to end it.
func NewEventLoop(factory DispatcherFactory) (*EventLoop, error) {
	if factory == nil {
		factory = defaultDispatcher
	}
	d, err := factory()
	if err != nil {
		return nil, err
	}
	return newEventLoop("loop", d, nil, slog.New(slog.DiscardHandler), defaultReadBufferSize), nil
}

func newEventLoop(name string, d Dispatcher, g *group, log *slog.Logger, readBufferSize int) *EventLoop {
	return &EventLoop{
		name:      name,
		d:         d,
		k:         kernelOf(d),
		log:       log,
		g:         g,
		events:    make([]Event, initialEvents),
		readBuf:   make([]byte, readBufferSize),
		iov:       make([][]byte, 2),
		recoverOn: true,
		done:      make(chan struct{}),
	}
}

// kernelOf returns the syscall seam that goes with d: the simulated kernel
// for the mock dispatcher (also when wrapped, see Dispatcher), the operating
// system for the others.
func kernelOf(d Dispatcher) kernel.Interface {
	if kd := unwrapTo[interface{ kernel() kernel.Interface }](d); kd != nil {
		return kd.kernel()
	}
	return kernel.OS{}
}

// simDispatcher returns the mock dispatcher d is or wraps, or nil.
func simDispatcher(d Dispatcher) *mockDispatcher {
	return unwrapTo[*mockDispatcher](d)
}

// unwrapTo returns the first of d and the Dispatchers it wraps (through
// Unwrap() Dispatcher) that is a T, or T's zero value.
func unwrapTo[T any](d Dispatcher) T {
	for range 100 { // a bound, against a wrapper that unwraps to itself
		if t, ok := d.(T); ok {
			return t
		}
		u, ok := d.(interface{ Unwrap() Dispatcher })
		if !ok {
			break
		}
		d = u.Unwrap()
	}
	var zero T
	return zero
}

// Now returns the current time on the loop's clock: monotonic time for the
// kernel backends, virtual time for the simulation. Safe from any goroutine.
func (l *EventLoop) Now() time.Duration { return l.k.Now() }

// Submit queues fn to run on the loop goroutine, after the readiness events
// of the current iteration (tasks never starve I/O: a task queued by a task
// runs in the next iteration). Tasks run in the order they were submitted;
// those from one goroutine keep that goroutine's order. Safe from any
// goroutine, including the loop's own. Once the loop has stopped, Submit
// keeps nothing and returns ErrLoopStopped: fn will never run. Tasks
// submitted while the loop stops still run.
func (l *EventLoop) Submit(fn func()) error {
	l.mu.Lock()
	if l.closedQ {
		l.mu.Unlock()
		return ErrLoopStopped
	}
	l.tasks = append(l.tasks, fn)
	l.mu.Unlock()
	l.queued.Store(true)
	l.wake()
	return nil
}

// AfterFunc schedules fn to run on the loop goroutine once d has passed on
// the loop's clock, and returns a Timer that can cancel it. Timers fire in
// deadline order; equal deadlines fire in the order they were scheduled. A
// negative d counts as 0; a d too long for the clock to reach
// (math.MaxInt64, the usual "never") never fires. Safe from any goroutine.
// On a loop that has stopped, the Timer never fires and is not kept.
func (l *EventLoop) AfterFunc(d time.Duration, fn func()) *Timer {
	t := &Timer{loop: l, when: deadlineAfter(l.k.Now(), max(d, 0)), seq: l.timerSeq.Add(1), fn: fn, index: -1}
	l.mu.Lock()
	if l.closedQ {
		l.mu.Unlock()
		t.fn = nil
		t.state.Store(timerStopped)
		return t
	}
	l.timerIn = append(l.timerIn, t)
	l.mu.Unlock()
	l.queued.Store(true)
	l.wake()
	return t
}

// Stop asks a standalone loop (NewEventLoop) to return from Run at the end
// of its current iteration. Safe from any goroutine; calling it more than
// once is harmless. The loops of a Server or a Client belong to it, which
// hands them connections: Stop refuses them with ErrServerLoop and does
// nothing (use Shutdown or Close).
func (l *EventLoop) Stop() error {
	if l.g != nil {
		return ErrServerLoop
	}
	l.stop()
	return nil
}

// stop makes Run return at the end of the current iteration.
func (l *EventLoop) stop() {
	l.stopping.Store(true)
	l.wake()
}

// Done is closed when the loop has stopped: Run is returning, every
// connection it served is closed, and its Dispatcher is being released.
func (l *EventLoop) Done() <-chan struct{} { return l.done }

// wake makes a blocked Wait return. The loop publishes sleeping before it
// checks its queues and waits, and producers publish their work before they
// read sleeping, so (with Go's sequentially consistent atomics) either the
// loop sees the work or the producer sees the loop asleep: a loop that is
// awake is never woken, which saves a syscall per cross-goroutine Submit.
func (l *EventLoop) wake() {
	if l.sleeping.Load() {
		if err := l.d.Wake(); err != nil && !errors.Is(err, ErrDispatcherClosed) {
			l.log.Error("reactor: wake-up failed", "loop", l.name, "err", err)
		}
	}
}

// Run drives the loop until Stop is called (or, in a Server shutting down,
// until its last connection has closed), then closes every connection still
// registered, closes the Dispatcher and returns. It returns an error only if
// the Dispatcher fails. Run may be called once.
func (l *EventLoop) Run() (err error) {
	if !l.state.CompareAndSwap(loopIdle, loopRunning) {
		return ErrLoopStopped
	}
	l.gid.Store(goroutineID())
	defer l.exit()
	for !l.stopping.Load() {
		if err := l.iterate(); err != nil {
			return fmt.Errorf("reactor: loop %s: %w", l.name, err)
		}
		if l.draining && l.conns == 0 && !l.hasAccept && l.waitSubs == 0 {
			break
		}
	}
	return nil
}

// iterate is one turn of the loop.
func (l *EventLoop) iterate() error {
	timeout := l.nextTimeout()
	l.sleeping.Store(true)
	if l.queued.Load() || l.flushHead.Load() != nil || l.stopping.Load() {
		timeout = 0
	}
	n, err := l.d.Wait(l.events, timeout)
	l.sleeping.Store(false)
	if err != nil {
		return err
	}
	l.dispatch(n)
	if n == len(l.events) && n < maxEvents {
		// The wait filled the slice: more may be ready than it can hold.
		l.events = make([]Event, 2*n)
	}
	l.runTasks()
	l.fireTimers()
	l.flushAll()
	l.stampActivity()
	return nil
}

// nextTimeout moves new timers into the heap and returns how long Wait may
// block: until the earliest timer or connection timeout, or forever (-1)
// when there is none.
func (l *EventLoop) nextTimeout() time.Duration {
	l.takeTimers()
	first, ok := l.nextTimeoutDeadline()
	if len(l.timers) > 0 && (!ok || l.timers[0].when < first) {
		first, ok = l.timers[0].when, true
	}
	if !ok {
		return -1
	}
	return max(first-l.k.Now(), 0)
}

// takeTimers moves timers created by AfterFunc into the heap.
func (l *EventLoop) takeTimers() {
	if !l.queued.Load() {
		return
	}
	l.mu.Lock()
	in := l.timerIn
	l.timerIn = nil
	if len(l.tasks) == 0 && len(l.incoming) == 0 {
		l.queued.Store(false)
	}
	l.mu.Unlock()
	for _, t := range in {
		if t.state.Load() == timerStopped {
			l.stoppedTimers.Add(-1)
			continue
		}
		l.timers.push(t)
	}
}

// dispatch hands every ready event to its channel. A handler panic is
// recovered (unless recovery is off), ends only the connection whose callback
// panicked, and dispatch carries on with the next event.
func (l *EventLoop) dispatch(n int) {
	for i := 0; i < n; {
		i = l.dispatchFrom(i, n)
	}
}

func (l *EventLoop) dispatchFrom(i, n int) (next int) {
	if l.recoverOn {
		defer func() {
			if r := recover(); r != nil {
				l.handlerPanicked(r)
				next = i + 1
			}
		}()
	}
	for ; i < n; i++ {
		ev := l.events[i]
		if h := l.channels.get(ev.FD); h != nil {
			h.handleEvent(ev.Events)
		}
	}
	return n
}

// runTasks registers the connections handed over by the acceptor, then runs
// the tasks queued so far. Both queues are taken under one lock, and
// connections first: a task queued after a connection was handed over (the
// server's shutdown order, say) finds it registered. Tasks queued while they
// run wait for the next iteration, so a task that requeues itself cannot
// starve I/O.
func (l *EventLoop) runTasks() {
	if l.queued.Load() {
		l.runQueued()
	}
}

// runQueued takes and runs the queues whether or not queued is set.
func (l *EventLoop) runQueued() {
	l.mu.Lock()
	l.running, l.tasks = l.tasks, l.running[:0]
	l.adopting, l.incoming = l.incoming, l.adopting[:0]
	if len(l.timerIn) == 0 {
		l.queued.Store(false)
	}
	l.mu.Unlock()
	for i := 0; i < len(l.adopting); {
		i = l.registerFrom(i)
	}
	clear(l.adopting)
	l.adopting = l.adopting[:0]
	for i := 0; i < len(l.running); {
		i = l.runTasksFrom(i)
	}
	clear(l.running) // drop references so finished closures can be collected
	l.running = l.running[:0]
}

// adopt hands a new connection to l, to be registered on l's goroutine. It
// is Submit without the closure: one allocation less per connection. It
// returns false, keeping nothing, if l has stopped.
func (l *EventLoop) adopt(c *Conn) bool {
	l.mu.Lock()
	if l.closedQ {
		l.mu.Unlock()
		return false
	}
	l.incoming = append(l.incoming, c)
	l.mu.Unlock()
	l.queued.Store(true)
	l.wake()
	return true
}

func (l *EventLoop) registerFrom(i int) (next int) {
	if l.recoverOn {
		defer func() {
			if r := recover(); r != nil {
				l.handlerPanicked(r) // OnOpen panicked: that connection ends
				next = i + 1
			}
		}()
	}
	for ; i < len(l.adopting); i++ {
		l.adopting[i].register()
	}
	return i
}

func (l *EventLoop) runTasksFrom(i int) (next int) {
	if l.recoverOn {
		defer func() {
			if r := recover(); r != nil {
				l.handlerPanicked(r)
				next = i + 1
			}
		}()
	}
	for ; i < len(l.running); i++ {
		l.running[i]()
	}
	return i
}

// fireTimers runs every timer whose deadline has passed, in deadline order,
// and ends the connections whose idle or write timeout has passed.
func (l *EventLoop) fireTimers() {
	l.expireTimeouts()
	l.takeTimers()
	if len(l.timers) == 0 {
		return
	}
	if s := int(l.stoppedTimers.Load()); s >= timerCompactMin && s > len(l.timers)/2 {
		l.stoppedTimers.Add(-int32(l.timers.compact()))
	}
	now := l.k.Now()
	for len(l.timers) > 0 && l.timers[0].when <= now {
		l.fireTimer(l.timers.pop())
	}
}

func (l *EventLoop) fireTimer(t *Timer) {
	if !t.state.CompareAndSwap(timerPending, timerFired) {
		l.stoppedTimers.Add(-1)
		return
	}
	if l.recoverOn {
		defer func() {
			if r := recover(); r != nil {
				l.handlerPanicked(r)
			}
		}()
	}
	t.fn()
}

// queueFlush puts c on the loop's list of connections to flush at the end of
// the iteration. The list is a lock-free stack: any goroutine pushes, the
// loop takes the whole list at once, so there is no ABA hazard. The caller
// guarantees c is on the list at most once (Conn.flushQueued).
func (l *EventLoop) queueFlush(c *Conn) {
	for {
		head := l.flushHead.Load()
		c.nextFlush = head
		if l.flushHead.CompareAndSwap(head, c) {
			break
		}
	}
	l.wake()
}

// flushAll flushes every connection queued since the last flush, oldest
// first. A flush can queue more work (OnWriteComplete may write); that waits
// for the next iteration, which will not block.
func (l *EventLoop) flushAll() {
	list := l.flushHead.Swap(nil)
	if list == nil {
		return
	}
	// Reverse the stack so connections flush in the order they were queued.
	var fifo *Conn
	for list != nil {
		next := list.nextFlush
		list.nextFlush = fifo
		fifo = list
		list = next
	}
	for fifo != nil {
		fifo = l.flushFrom(fifo)
	}
}

func (l *EventLoop) flushFrom(c *Conn) (rest *Conn) {
	var next *Conn
	if l.recoverOn {
		defer func() {
			if r := recover(); r != nil {
				l.handlerPanicked(r)
				rest = next // the connections after the one that panicked
			}
		}()
	}
	for c != nil {
		next = c.nextFlush
		// Clear the link before flush: once flush resets flushQueued,
		// another goroutine may push c again and write nextFlush.
		c.nextFlush = nil
		c.flush(true)
		c = next
	}
	return nil
}

// closedErr is the error of what a stop of the loop ends: ErrServerClosed,
// or ErrClientClosed on a Client's loop.
func (l *EventLoop) closedErr() error {
	if l.g != nil && l.g.closedErr != nil {
		return l.g.closedErr
	}
	return ErrServerClosed
}

// trace adds a line to the simulation's trace, interleaved with the
// simulated kernel's own records, so a test can see which callback ran
// when. Callers check l.tracing first, so that building the arguments costs
// nothing when the loop runs over a real kernel.
func (l *EventLoop) trace(format string, args ...any) {
	l.g.tracef("loop "+l.name+": "+format, args...)
}

// closeQueues runs the tasks and registers the connections queued before
// the stop took effect (and those they queue in turn, for a few rounds),
// then closes the queues: from then on Submit, AfterFunc and adopt keep
// nothing, so no task waits for ever in a loop that will not run it. Tasks
// still queued after the last round are dropped.
func (l *EventLoop) closeQueues() {
	const rounds = 8
	for i := 0; ; i++ {
		l.runQueued()
		l.mu.Lock()
		if i == rounds || len(l.tasks) == 0 && len(l.incoming) == 0 {
			l.closedQ = true
			dropped := len(l.tasks)
			late := l.incoming
			l.tasks, l.incoming, l.timerIn = nil, nil, nil
			l.mu.Unlock()
			if dropped > 0 {
				l.log.Warn("reactor: tasks dropped at loop stop", "loop", l.name, "tasks", dropped)
			}
			for _, c := range late {
				l.numConns.Add(-1)
				c.closeNow(l.closedErr()) // never registered: only closes the descriptor
			}
			return
		}
		l.mu.Unlock()
	}
}

// guard runs fn, a step that calls handlers, recovering a panic as
// dispatch does: only the connection whose callback panicked ends.
func (l *EventLoop) guard(fn func()) {
	if l.recoverOn {
		defer func() {
			if r := recover(); r != nil {
				l.handlerPanicked(r)
			}
		}()
	}
	fn()
}

// handlerPanicked ends the connection whose callback panicked, logging the
// panic with its stack, with a reset (see Conn.abort): the peer must not
// take a reply the crash cut short for a complete one. The loop and every
// other connection carry on.
func (l *EventLoop) handlerPanicked(r any) {
	c := l.current
	l.current = nil
	stack := debug.Stack()
	l.log.Error("reactor: handler panicked", "loop", l.name, "panic", r, "stack", string(stack))
	if l.tracing {
		l.trace("panic %v", r)
	}
	if c != nil {
		c.abort(fmt.Errorf("%w: %v", ErrHandlerPanic, r))
	}
}

// exit releases what the loop holds when Run returns: every connection still
// open is closed (their OnClose receives ErrServerClosed, or ErrClientClosed
// on a Client's loop: their output, if any, is lost), after the dials in
// progress have failed with the same error, then the acceptors and the
// Dispatcher. Done is closed just
// before the Dispatcher: over a stepped simulation, closing the Dispatcher
// is what tells a driver waiting in Shutdown to look again, so the loop must
// already count as stopped by then.
func (l *EventLoop) exit() {
	l.closeQueues()
	l.failDials(l.closedErr())
	l.channels.each(func(h eventHandler) {
		switch h := h.(type) {
		case *Conn:
			h.closeNow(l.closedErr())
		case *acceptor:
			h.close()
		}
	})
	l.state.Store(loopStopped)
	if s := l.srv; s != nil && s.acceptLoop != nil && s.acceptLoop != l {
		// The main loop waits for its sub-loops before it stops, so that
		// a hard stop ordered during a graceful one can still be forwarded
		// through it (see Server.stopAll).
		main := s.acceptLoop
		_ = main.Submit(func() { main.waitSubs-- }) // a stopped main loop waits for nothing
	}
	close(l.done)
	if err := l.d.Close(); err != nil {
		l.log.Error("reactor: closing dispatcher", "loop", l.name, "err", err)
	}
}
