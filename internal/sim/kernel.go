// This file holds Kernel: the simulated kernel's state (descriptor table,
// clock, random source, change signal) and its configuration. Every field is
// guarded by Kernel.mu; every method is safe from any goroutine.

package sim

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/kernel"
)

var _ kernel.Interface = (*Kernel)(nil)

// Default values of Config fields left zero.
const (
	// DefaultReceiveBuffer is the size of each endpoint's receive buffer:
	// how many bytes written to it arrive before the rest waits in the
	// writer's send buffer (and a writer with a full send buffer gets short
	// counts, then EAGAIN).
	DefaultReceiveBuffer = 64 << 10
	// DefaultSendBuffer is the size of each server-side TCP descriptor's
	// send buffer: how many bytes a write accepts beyond the peer's free
	// receive window, to wait in flight until the peer reads (see
	// Config.SendBuffer).
	DefaultSendBuffer = 16 << 10
	// DefaultBacklog is the accept queue length of a listener created with a
	// backlog ≤ 0.
	DefaultBacklog = 128
	// DefaultMaxSteps bounds RunUntilIdle and RunUntil (see Config.MaxSteps).
	DefaultMaxSteps = 1_000_000
	// DefaultParkTimeout bounds, in real time, how long a driver waits for a
	// poller to call Wait (see Config.ParkTimeout).
	DefaultParkTimeout = 30 * time.Second
)

// Config chooses how a Kernel behaves. The zero value is a free-running
// kernel seeded with 0.
type Config struct {
	// Seed seeds the kernel's one random source. Every random choice the
	// kernel makes draws from it, so a run is a function of the seed and of
	// the script that drives it.
	Seed int64
	// Stepped selects the stepped scheduler: a poller's Wait returns only
	// when a driver (Step, RunUntilIdle, Advance, RunUntil) gives it a turn.
	// Otherwise the kernel is free-running: Wait blocks until something is
	// ready, like epoll_wait. See the package documentation.
	Stepped bool
	// ReceiveBuffer is the size in bytes of the receive buffer of each end
	// of each new connection, in both directions (0 means
	// DefaultReceiveBuffer). SetsockoptInt(SO_RCVBUF) changes it for one
	// server-side descriptor and Conn.SetReceiveWindow for one client.
	ReceiveBuffer int
	// SendBuffer is the size in bytes of the send buffer of each new
	// server-side TCP descriptor (0 means DefaultSendBuffer; a negative
	// value means none). A write takes as much as the peer's free receive
	// window plus the free send buffer; bytes in the send buffer are in
	// flight, and move into the peer's receive buffer as it reads. A reset
	// loses them, which is how closing a socket with unread input loses
	// the end of a reply. SetsockoptInt(SO_SNDBUF) changes it for one
	// descriptor. A client's send queue is unbounded, a socketpair has
	// none.
	//
	// The default, 16 KiB, is Linux's initial SO_SNDBUF (tcp_wmem[1]).
	// Linux grows it as a connection runs, to megabytes over loopback; a
	// bigger default would be closer to that but would change how many
	// bytes a server can write to a client that does not read before
	// EAGAIN, which many tests count exactly, by more. With -1 a write
	// takes exactly the peer's free window and nothing is ever in flight.
	SendBuffer int
	// NoTrace starts the kernel with its trace off; SetTrace turns it on.
	// The trace costs memory for every operation and an allocation for
	// every turn, so big runs and allocation measurements turn it off.
	NoTrace bool
	// MaxSteps is how many steps RunUntilIdle and RunUntil take before they
	// conclude that the simulation is livelocked and panic (0 means
	// DefaultMaxSteps).
	MaxSteps int
	// ParkTimeout is how long, in real time, a driver waits for a running
	// poller to call Wait before it panics with a diagnostic (0 means
	// DefaultParkTimeout). It never changes behaviour: it turns a hang
	// into a message that names the poller.
	ParkTimeout time.Duration
}

// Kernel is a simulated socket layer: a descriptor table, listening sockets,
// connections with bounded buffers, a virtual clock, a seeded random source,
// injected faults, virtual epoll instances (Pollers) and, in stepped mode,
// the scheduler that decides which poller's event loop runs.
//
// It implements kernel.Interface, so the code that runs over the real
// kernel runs over it unchanged. All its state, and the state of every
// Poller and Conn it creates, sits behind one mutex: every method is safe for
// concurrent use, and every operation is atomic with respect to every other.
type Kernel struct {
	mu sync.Mutex // guards every field below and all state of the kernel's files, connections, pollers and faults

	cfg     Config
	stepped bool // fixed at New

	now time.Duration // the virtual clock; moves only by Advance/AdvanceTo
	rng *rand.Rand    // the one random source; PCG seeded from cfg.Seed

	// Descriptor table. files[fd] is nil when fd is free; 0, 1 and 2 are
	// never handed out (they are stdio in a real process).
	files   []*file
	freeFDs fdHeap // free numbers below len(files), so the lowest is reused first
	fdLimit int    // 0: none; otherwise fd numbers must be < fdLimit (RLIMIT_NOFILE)
	maxOpen int    // 0: none; otherwise at most maxOpen descriptors may be open (SetMaxOpen)

	listeners      []*listener // bound, not yet closed
	nextPort       int         // where the search for a free port (":0") starts
	nextClientPort int         // next default client port
	ephemeral      int         // next local port of a connecting descriptor (see nextEphemeral)
	extListeners   int         // Listeners made by tests so far; a Listener's number is its rank
	clients        int         // Conns dialled so far; a Conn's id is its rank

	pollers     []*Poller // live pollers in creation order
	pollerSeq   int       // pollers created so far; a Poller's id is its rank
	cands       []*Poller // scratch for pickLocked
	turn        *Poller   // the poller holding the turn (stepped), or nil
	turnSeq     uint64    // turns granted so far
	freeWaiters int       // free mode: pollers blocked in Wait, to wake on changes

	// Change notification for drivers (see sched.go). gen counts state
	// changes; extWaiters are woken at every change, parkWaiters when a
	// poller parks, closes or is created.
	gen         uint64
	extWaiters  waitList
	parkWaiters waitList
	spareTimer  *time.Timer   // a stopped park timer, reused by the next step
	closedCh    chan struct{} // always closed; returned by Blocked when there is nothing to wait for

	faults       []*faultState // every fault injected, by id-1
	activeFaults int           // faults not yet exhausted or removed

	traceOn bool
	seq     uint64 // records made so far
	trace   []Record
}

// New returns a kernel configured by cfg. It starts no goroutine.
func New(cfg Config) *Kernel {
	if cfg.ReceiveBuffer <= 0 {
		cfg.ReceiveBuffer = DefaultReceiveBuffer
	}
	switch {
	case cfg.SendBuffer == 0:
		cfg.SendBuffer = DefaultSendBuffer
	case cfg.SendBuffer < 0:
		cfg.SendBuffer = 0
	}
	if cfg.MaxSteps <= 0 {
		cfg.MaxSteps = DefaultMaxSteps
	}
	if cfg.ParkTimeout <= 0 {
		cfg.ParkTimeout = DefaultParkTimeout
	}
	k := &Kernel{
		cfg:     cfg,
		stepped: cfg.Stepped,
		// The second PCG word is a fixed odd constant: the seed alone
		// selects the stream.
		rng:            rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15)),
		files:          make([]*file, 3),
		nextPort:       firstServerPort,
		nextClientPort: firstClientPort,
		closedCh:       make(chan struct{}),
		traceOn:        !cfg.NoTrace,
	}
	close(k.closedCh)
	return k
}

// Stepped reports whether the kernel runs the stepped scheduler.
func (k *Kernel) Stepped() bool { return k.stepped }

// Now returns the virtual time: 0 when the kernel was created, moved only
// by Advance and AdvanceTo. It is the clock event loops schedule timers on.
func (k *Kernel) Now() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.now
}

// SetFDLimit makes the creation of a descriptor numbered n or above fail with
// EMFILE, as RLIMIT_NOFILE does (descriptors 0-2 count as stdio's, so the
// first one handed out is 3). Accept, Listen, Socketpair and NewPoller
// create descriptors. n = 0 removes the limit. Descriptors already open
// stay open.
func (k *Kernel) SetFDLimit(n int) {
	k.lock()
	defer k.unlock()
	k.fdLimit = max(n, 0)
}

// SetMaxOpen makes the creation of a descriptor fail with EMFILE while n
// descriptors are open (0-2, which are never handed out, do not count).
// It is SetFDLimit counted in descriptors instead of descriptor numbers:
// since the lowest free number is always taken the two agree, except
// when descriptors numbered above a lowered limit are still open. A test
// that wants "k more descriptors" sets len(OpenFDs())+k. n = 0 removes the
// limit; descriptors already open stay open.
func (k *Kernel) SetMaxOpen(n int) {
	k.lock()
	defer k.unlock()
	k.maxOpen = max(n, 0)
}

// OpenFDs returns the descriptors open now, in increasing order: a test
// can check that a server closed everything it opened.
func (k *Kernel) OpenFDs() []int {
	k.mu.Lock()
	defer k.mu.Unlock()
	var fds []int
	for fd, f := range k.files {
		if f != nil {
			fds = append(fds, fd)
		}
	}
	return fds
}

// Notify tells drivers blocked in RunUntil that something outside the
// simulation changed, so that they evaluate their done function again. Code
// whose progress RunUntil's done observes, and which changes that state
// without any kernel call after it (a goroutine that exits after closing
// its poller, say), calls Notify after the change.
func (k *Kernel) Notify() {
	k.lock()
	defer k.unlock()
}

// lock and unlock bracket every operation that may change state. unlock
// publishes the change: it wakes free-mode Waits so they look again, and
// drivers waiting in RunUntil for an external change (see changedLocked).
// Methods that only read use k.mu directly.
func (k *Kernel) lock() { k.mu.Lock() }

func (k *Kernel) unlock() {
	k.changedLocked()
	k.mu.Unlock()
}

// changedLocked records that the kernel state may have changed: gen moves
// on (RunUntil compares it, so a change between its look and its wait is
// never lost), drivers waiting for a change are woken, and free-mode
// pollers blocked in Wait are signalled to look again.
func (k *Kernel) changedLocked() {
	k.gen++
	k.extWaiters.wakeAll()
	if k.freeWaiters > 0 {
		for _, p := range k.pollers {
			if p.blocked {
				p.cond.Signal()
			}
		}
	}
}

// fileKind says what a descriptor refers to.
type fileKind uint8

const (
	fileListener fileKind = iota + 1
	fileSocket
	filePoller
)

// file is one entry of the descriptor table.
type file struct {
	fd     int
	kind   fileKind
	lis    *listener // fileListener
	ep     *endpoint // fileSocket
	poller *Poller   // filePoller
	regs   []*reg    // the pollers it is registered with, removed at close as epoll does
	opts   map[[2]int]int
	abort  bool // SO_LINGER on with 0 seconds: close sends RST
}

// setOptLocked records the value of a socket option for Sockopt.
func (f *file) setOptLocked(level, opt, value int) {
	if f.opts == nil {
		f.opts = make(map[[2]int]int)
	}
	f.opts[[2]int{level, opt}] = value
}

// fileLocked returns the open file fd, or EBADF.
func (k *Kernel) fileLocked(fd int) (*file, unix.Errno) {
	if fd < 0 || fd >= len(k.files) || k.files[fd] == nil {
		return nil, unix.EBADF
	}
	return k.files[fd], 0
}

// allocFDLocked installs f at the lowest free descriptor number, or returns
// EMFILE when that number is at or above the limit or as many descriptors
// as SetMaxOpen allows are open. Like Linux, the lowest
// free number is always taken, so numbers are reused as soon as they are
// closed: a server must not confuse a new connection with an old one that
// had the same descriptor.
func (k *Kernel) allocFDLocked(f *file) (int, unix.Errno) {
	fd := len(k.files)
	if k.freeFDs.Len() > 0 {
		fd = k.freeFDs[0]
	}
	if k.fdLimit > 0 && fd >= k.fdLimit {
		return -1, unix.EMFILE
	}
	if open := len(k.files) - 3 - k.freeFDs.Len(); k.maxOpen > 0 && open >= k.maxOpen {
		return -1, unix.EMFILE
	}
	if fd == len(k.files) {
		k.files = append(k.files, f)
	} else {
		heap.Pop(&k.freeFDs)
		k.files[fd] = f
	}
	f.fd = fd
	return fd, 0
}

// freeFDLocked removes fd from the table and from every poller it is
// registered with.
func (k *Kernel) freeFDLocked(f *file) {
	for _, r := range slices.Clone(f.regs) {
		r.p.removeRegLocked(r)
	}
	k.files[f.fd] = nil
	heap.Push(&k.freeFDs, f.fd)
}

// fdHeap is a min-heap of free descriptor numbers.
type fdHeap []int

func (h fdHeap) Len() int           { return len(h) }
func (h fdHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h fdHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *fdHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *fdHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// errOf turns an errno into an error, nil for 0. (A zero unix.Errno stored
// in an error interface would not compare equal to nil.)
func errOf(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// addTime returns now+d for d ≥ 0 (now for d < 0), saturating instead of
// overflowing: a Wait with a timeout of "forever" expressed as a huge
// duration must not wrap around into the past and time out at once.
func addTime(now, d time.Duration) time.Duration {
	if d <= 0 {
		return now
	}
	if d > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + d
}
