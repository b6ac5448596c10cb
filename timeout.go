// This file holds the connections' timeouts (idle and write). They are kept
// off the timer heap on purpose: a connection's activity would otherwise
// cost a heap update per message. Instead each loop keeps, per timeout kind
// and duration in use, a list of connections ordered by their last activity.
// Activity moves a connection to the back of its list (a few pointer writes,
// no allocation), so the front of each list is the next to expire.
//
// The lists sit in a heap ordered by their front's deadline: the loop's wait
// never outlasts the earliest, which makes the timeouts exact on the loop's
// clock (virtual time included), and expiry finds what is due without
// looking at the other lists. They are found by kind and duration in a map,
// and freed when they empty: a server whose clients choose their own
// timeout (MQTT's keep-alive) uses thousands of durations, and a loop must
// neither keep a list for every duration ever used nor walk them all in
// every iteration.
//
// Activity is stamped with the clock read once, at the end of the loop
// iteration it happened in (stampActivity), not when it happens: one clock
// read per iteration rather than one per message, and a stamp that is never
// earlier than the activity, so a timeout never fires early. (A stamp read
// at the start of the iteration would be, by as long as the iteration ran:
// milliseconds when a burst of connections arrives at once.) It may fire
// late by the rest of that iteration. Only the lists that changed during
// the iteration (dirty) are stamped and moved in the heap then, so an
// iteration costs what its activity costs, however many lists there are.
// Until then a changed list's place in the heap may be too early (a change
// only ever postpones a front's deadline), never too late; expiry looks at
// the front itself before closing it.
//
// Everything here is owned by the loop goroutine, but for SetIdleTimeout
// and SetWriteTimeout.

package reactor

import (
	"fmt"
	"maps"
	"math"
	"time"
)

// Timeout kinds. A kind's clock starts when setTimeout sets it (a write
// timeout's, only while output is pending) and restarts only when touch
// moves it; a new kind takes a constant here and a case in Conn.timedOut.
const (
	idleTimeout = iota
	writeTimeout
	// phaseTimeout bounds a phase that idle and write timeouts do not
	// cover: the PROXY header (WithProxyHeaderTimeout) and the TLS
	// handshake before OnOpen (WithTLSHandshakeTimeout), or the lingering
	// close after the output (see Conn.linger). A connection is in at most
	// one of them at a time, so they share one link rather than adding a
	// timeoutLink (32 bytes) each to every connExt (136 bytes, the
	// allocator's 144-byte size class).
	phaseTimeout
	numTimeouts
)

// timeoutLink is a connection's place in one timeout list.
type timeoutLink struct {
	list       *timeoutList
	prev, next *Conn
	since      time.Duration // last activity (idle) or progress (write), loop clock; or stampPending
}

// stampPending is the since of a link whose activity happened during the
// current iteration; stampActivity replaces it with the iteration's end.
const stampPending = time.Duration(math.MaxInt64)

// connTimeouts is a connection's part in the timeout lists. It lives in
// the connection's extension (connExt), allocated only for connections that
// have a timeout, linger, use TLS or wait for a PROXY header, so a plain
// server without timeouts pays one nil pointer per connection.
type connTimeouts struct {
	d        [phaseTimeout]time.Duration // idle and write, 0: off (a phase's is its list's)
	link     [numTimeouts]timeoutLink
	lingered int // input discarded while lingering
}

// timeoutKey names a timeout list: its kind and duration.
type timeoutKey struct {
	kind int
	d    time.Duration
}

// timeoutList is a doubly linked list of connections sharing one timeout
// kind and duration, least recently active first.
type timeoutList struct {
	timeoutKey
	head, tail *Conn
	pending    *Conn        // first of the links at the back still stampPending; nil if none
	seq        uint64       // creation order, which orders lists with equal deadlines
	index      int          // position in the loop's heap of lists; -1 when not in it
	dirty      bool         // changed in this iteration: on the loop's dirty chain
	nextDirty  *timeoutList // the dirty chain
}

// loopTimeouts is a loop's timeout lists. Invariant between iterations
// (after stampActivity): every list in lists has connections, none is
// dirty, and each is in heap under its front's exact deadline.
type loopTimeouts struct {
	lists map[timeoutKey]*timeoutList
	peak  int // the most lists held since lists was last made
	heap  deadlineHeap[*timeoutList]
	dirty *timeoutList   // lists changed in this iteration, chained through nextDirty
	spare []*timeoutList // freed lists kept for reuse, at most maxSpareLists
	seq   uint64         // lists created
}

const (
	// maxSpareLists bounds the freed lists a loop keeps for reuse. A list
	// empties and fills again whenever the only connection with its write
	// timeout stalls anew; reuse spares an allocation per stall.
	maxSpareLists = 64
	// shrinkMin is the size below which the map and heap of lists are
	// never made smaller.
	shrinkMin = 256
)

// pushBack appends c, active now; its time is stamped at the end of the
// iteration.
func (tl *timeoutList) pushBack(c *Conn) {
	tl.link(c)
	c.loop.tmo.changed(tl)
}

// remove takes c, which is on tl, off it.
func (tl *timeoutList) remove(c *Conn) {
	tl.unlink(c)
	c.loop.tmo.changed(tl)
}

// moveToBack records activity of c, which is on tl. A link already active
// in this iteration stays where it is: every link of the pending run gets
// the same stamp, so their order among themselves does not matter, and a
// connection read from and written to in one iteration moves once, not
// twice.
func (tl *timeoutList) moveToBack(c *Conn) {
	if c.x.link[tl.kind].since == stampPending {
		return
	}
	tl.unlink(c)
	tl.link(c)
	c.loop.tmo.changed(tl)
}

func (tl *timeoutList) link(c *Conn) {
	ln := &c.x.link[tl.kind]
	ln.list, ln.since, ln.prev, ln.next = tl, stampPending, tl.tail, nil
	if tl.pending == nil {
		tl.pending = c
	}
	if tl.tail != nil {
		tl.tail.x.link[tl.kind].next = c
	} else {
		tl.head = c
	}
	tl.tail = c
}

func (tl *timeoutList) unlink(c *Conn) {
	ln := &c.x.link[tl.kind]
	if tl.pending == c {
		tl.pending = ln.next
	}
	if ln.prev != nil {
		ln.prev.x.link[tl.kind].next = ln.next
	} else {
		tl.head = ln.next
	}
	if ln.next != nil {
		ln.next.x.link[tl.kind].prev = ln.prev
	} else {
		tl.tail = ln.prev
	}
	*ln = timeoutLink{}
}

// deadline returns when the front of the list expires, and false if the list
// is empty or its front was active in the current iteration (then so was
// every connection behind it).
func (tl *timeoutList) deadline() (time.Duration, bool) {
	if tl.head == nil {
		return 0, false
	}
	since := tl.head.x.link[tl.kind].since
	if since == stampPending {
		return 0, false
	}
	return deadlineAfter(since, tl.d), true
}

// stamp gives the links active in the current iteration their time.
func (tl *timeoutList) stamp(now time.Duration) {
	for c := tl.pending; c != nil; c = c.x.link[tl.kind].next {
		c.x.link[tl.kind].since = now
	}
	tl.pending = nil
}

// list returns the loop's list for kind and d, creating it.
func (t *loopTimeouts) list(kind int, d time.Duration) *timeoutList {
	key := timeoutKey{kind, d}
	if tl := t.lists[key]; tl != nil {
		return tl
	}
	var tl *timeoutList
	if n := len(t.spare); n > 0 {
		tl = t.spare[n-1]
		t.spare[n-1] = nil
		t.spare = t.spare[:n-1]
	} else {
		tl = new(timeoutList)
	}
	t.seq++
	*tl = timeoutList{timeoutKey: key, seq: t.seq, index: -1}
	if t.lists == nil {
		t.lists = make(map[timeoutKey]*timeoutList)
	}
	t.lists[key] = tl
	t.peak = max(t.peak, len(t.lists))
	return tl
}

// changed puts tl on the dirty chain, once per iteration.
func (t *loopTimeouts) changed(tl *timeoutList) {
	if !tl.dirty {
		tl.dirty, tl.nextDirty = true, t.dirty
		t.dirty = tl
	}
}

// free forgets tl, which is empty, and keeps it for reuse. The map and the
// heap are made anew once they hold less than an eighth of what they have
// room for (Go maps never shrink), so their memory follows the lists in use.
func (t *loopTimeouts) free(tl *timeoutList) {
	if tl.index >= 0 {
		t.heap.remove(tl.index)
		if c := cap(t.heap); c >= shrinkMin && len(t.heap) <= c/8 {
			t.heap = append(deadlineHeap[*timeoutList](nil), t.heap...)
		}
	}
	delete(t.lists, tl.timeoutKey)
	if t.peak >= shrinkMin && len(t.lists) <= t.peak/8 {
		m := make(map[timeoutKey]*timeoutList, len(t.lists))
		maps.Copy(m, t.lists)
		t.lists, t.peak = m, len(m)
	}
	if len(t.spare) < maxSpareLists {
		*tl = timeoutList{}
		if t.spare == nil {
			t.spare = make([]*timeoutList, 0, maxSpareLists)
		}
		t.spare = append(t.spare, tl)
	}
}

// stampActivity gives the activity of the iteration that is ending its
// time, reading the clock once if there was any, and puts every list
// changed in the iteration in its place in the heap, or frees it if it
// emptied. The loop calls it at the end of every iteration.
func (l *EventLoop) stampActivity() {
	t := &l.tmo
	var now time.Duration
	read := false
	for t.dirty != nil {
		tl := t.dirty
		t.dirty, tl.dirty, tl.nextDirty = tl.nextDirty, false, nil
		if tl.head == nil {
			t.free(tl)
			continue
		}
		if tl.pending != nil {
			if !read {
				now, read = l.k.Now(), true
			}
			tl.stamp(now)
		}
		dl, _ := tl.deadline() // stamped: the front is not pending
		if tl.index >= 0 {
			t.heap.update(tl.index, dl)
		} else {
			t.heap.push(dl, tl.seq, &tl.index, tl)
		}
	}
}

// nextTimeoutDeadline returns the earliest deadline among the timeout lists.
func (l *EventLoop) nextTimeoutDeadline() (time.Duration, bool) {
	if len(l.tmo.heap) == 0 {
		return 0, false
	}
	return l.tmo.heap[0].when, true
}

// expireTimeouts ends every connection whose timeout has passed, in
// deadline order. A list the iteration changed may sit in the heap under an
// earlier deadline than its front's: it is put in its place (only then is
// the top the earliest), or taken out if it has no stamped front
// (stampActivity puts it back).
func (l *EventLoop) expireTimeouts() {
	t := &l.tmo
	if len(t.heap) == 0 {
		return
	}
	now := l.k.Now()
	for len(t.heap) > 0 && t.heap[0].when <= now {
		tl := t.heap[0].item
		dl, ok := tl.deadline()
		switch {
		case !ok:
			t.heap.remove(0) // changed, so dirty: stampActivity puts it back
		case dl > t.heap[0].when:
			t.heap.update(0, dl) // and look again: another list may come first
		default:
			c := tl.head
			c.timedOut(tl.kind, tl.d)
			if tl.head == c {
				tl.remove(c) // closeNow unlinks; this guards against a loop
			}
		}
	}
}

// timedOut ends c, whose timeout of kind, lasting d, has passed. Should a
// kind leave c open, c is taken off that timeout's list: it fires once.
func (c *Conn) timedOut(kind int, d time.Duration) {
	switch kind {
	case idleTimeout:
		c.closeNow(fmt.Errorf("%w: no bytes for %v", ErrIdleTimeout, d))
	case writeTimeout:
		c.closeNow(fmt.Errorf("%w: output stalled for %v with %d bytes pending", ErrWriteTimeout, d, c.Buffered()))
	case phaseTimeout:
		switch {
		case c.state != connHandshake:
			c.lingerExpired()
		case c.proxyPending():
			c.closeNow(fmt.Errorf("%w: no complete header after %v", errProxyHeaderLate, d))
		default:
			c.closeNow(fmt.Errorf("%w: not done after %v", ErrTLSHandshakeTimeout, d))
		}
	}
}

// setTimeout sets (d > 0) or clears (d == 0) one of c's timeouts, counting
// from now. Loop goroutine.
//
// Only an open connection takes one: a lingering connection has only its
// linger deadline (startLinger), and a closed one none.
func (c *Conn) setTimeout(kind int, d time.Duration) {
	if c.state != connOpen {
		return
	}
	if c.x == nil {
		if d == 0 {
			return
		}
		c.ext()
	}
	if ln := &c.x.link[kind]; ln.list != nil {
		ln.list.remove(c)
	}
	c.x.d[kind] = d
	if d == 0 {
		return
	}
	if kind != writeTimeout || c.waitW {
		c.loop.tmo.list(kind, d).pushBack(c)
	}
}

// startLinger starts the linger deadline of a connection that has just
// begun lingering, d from now; its other timeouts are already off.
func (c *Conn) startLinger(d time.Duration) {
	c.ext().lingered = 0
	c.startPhase(d)
}

// startPhase starts the deadline of the phase the connection has just
// entered, its PROXY header, its TLS handshake or its lingering close, d
// from now (see phaseTimeout).
func (c *Conn) startPhase(d time.Duration) {
	c.endPhase()
	c.loop.tmo.list(phaseTimeout, d).pushBack(c)
}

// endPhase stops the deadline of the connection's phase, if it has one.
func (c *Conn) endPhase() {
	if x := c.x; x != nil {
		if tl := x.link[phaseTimeout].list; tl != nil {
			tl.remove(c)
		}
	}
}

// touch records activity: bytes moved in either direction. It restarts the
// idle timeout, and the write timeout when wrote is true and output remains.
func (c *Conn) touch(wrote bool) {
	if c.x != nil { // the check inlines; a plain connection has no timeouts to move
		c.touchTimeouts(wrote)
	}
}

func (c *Conn) touchTimeouts(wrote bool) {
	t := c.x
	if tl := t.link[idleTimeout].list; tl != nil {
		tl.moveToBack(c)
	}
	if tl := t.link[writeTimeout].list; wrote && tl != nil {
		tl.moveToBack(c)
	}
}

// writePending starts (pending) or stops (!pending) the write timeout's
// clock. The clock runs only while output waits for the kernel.
func (c *Conn) writePending(pending bool) {
	if c.x != nil { // as in touch
		c.writeClock(pending)
	}
}

func (c *Conn) writeClock(pending bool) {
	t := c.x
	if t.d[writeTimeout] == 0 {
		return
	}
	ln := &t.link[writeTimeout]
	switch {
	case pending && ln.list == nil:
		c.loop.tmo.list(writeTimeout, t.d[writeTimeout]).pushBack(c)
	case !pending && ln.list != nil:
		ln.list.remove(c)
	}
}

// untrack removes c from every timeout list; closeNow calls it.
func (c *Conn) untrack() {
	if c.x == nil {
		return
	}
	for kind := range numTimeouts {
		if ln := &c.x.link[kind]; ln.list != nil {
			ln.list.remove(c)
		}
	}
}

// SetIdleTimeout sets this connection's idle timeout (see WithIdleTimeout),
// counting from now; 0 turns it off. Safe from any goroutine: the change is
// made on the connection's loop, before its next iteration ends.
func (c *Conn) SetIdleTimeout(d time.Duration) {
	c.loop.Submit(func() { c.setTimeout(idleTimeout, max(d, 0)) })
}

// SetWriteTimeout sets this connection's write timeout (see
// WithWriteTimeout); 0 turns it off. Safe from any goroutine: the change is
// made on the connection's loop, before its next iteration ends.
func (c *Conn) SetWriteTimeout(d time.Duration) {
	c.loop.Submit(func() { c.setTimeout(writeTimeout, max(d, 0)) })
}
