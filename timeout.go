// This file holds the idle and write timeouts. They are kept off the timer
// heap on purpose: a connection's activity would otherwise cost a heap update
// per message. Instead each loop keeps, per distinct timeout duration, a
// list of connections ordered by their last activity. Activity moves a
// connection to the back of its list (a few pointer writes, no allocation),
// so the front of each list is the next to expire; the loop's wait never
// outlasts the earliest front's deadline, which makes the timeouts exact on
// the loop's clock (virtual time included). Lists and links are owned by the
// loop goroutine.
//
// Activity is stamped with the clock read once, at the end of the loop
// iteration it happened in (stampActivity), not when it happens: one clock
// read per iteration rather than one per message, and a stamp that is never
// earlier than the activity, so a timeout never fires early. (A stamp read
// at the start of the iteration would be, by as long as the iteration ran:
// milliseconds when a burst of connections arrives at once.) It may fire
// late by the rest of that iteration.

package reactor

import (
	"fmt"
	"math"
	"time"
)

// Timeout kinds.
const (
	idleTimeout = iota
	writeTimeout
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

// connTimeouts is allocated only for connections that have a timeout, so a
// server without timeouts pays one nil pointer per connection.
type connTimeouts struct {
	d    [numTimeouts]time.Duration // 0: off
	link [numTimeouts]timeoutLink
}

// timeoutList is a doubly linked list of connections sharing one timeout
// kind and duration, least recently active first.
type timeoutList struct {
	kind       int
	d          time.Duration
	head, tail *Conn
	pending    *Conn // first of the links at the back still stampPending; nil if none
}

// pushBack appends c, active now; its time is stamped at the end of the
// iteration.
func (tl *timeoutList) pushBack(c *Conn) {
	ln := &c.tmo.link[tl.kind]
	ln.list, ln.since, ln.prev, ln.next = tl, stampPending, tl.tail, nil
	if tl.pending == nil {
		tl.pending = c
	}
	if tl.tail != nil {
		tl.tail.tmo.link[tl.kind].next = c
	} else {
		tl.head = c
	}
	tl.tail = c
}

// moveToBack records activity of c, which is on tl. A link already active
// in this iteration stays where it is: every link of the pending run gets
// the same stamp, so their order among themselves does not matter, and a
// connection read from and written to in one iteration moves once, not
// twice.
func (tl *timeoutList) moveToBack(c *Conn) {
	if c.tmo.link[tl.kind].since == stampPending {
		return
	}
	tl.remove(c)
	tl.pushBack(c)
}

func (tl *timeoutList) remove(c *Conn) {
	ln := &c.tmo.link[tl.kind]
	if tl.pending == c {
		tl.pending = ln.next
	}
	if ln.prev != nil {
		ln.prev.tmo.link[tl.kind].next = ln.next
	} else {
		tl.head = ln.next
	}
	if ln.next != nil {
		ln.next.tmo.link[tl.kind].prev = ln.prev
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
	since := tl.head.tmo.link[tl.kind].since
	if since == stampPending {
		return 0, false
	}
	return deadlineAfter(since, tl.d), true
}

// stamp gives the links active in the current iteration their time.
func (tl *timeoutList) stamp(now time.Duration) {
	for c := tl.pending; c != nil; c = c.tmo.link[tl.kind].next {
		c.tmo.link[tl.kind].since = now
	}
	tl.pending = nil
}

// timeoutList returns the loop's list for kind and d, creating it. Servers
// use one or two distinct durations, so a linear search of a short slice
// beats a map.
func (l *EventLoop) timeoutList(kind int, d time.Duration) *timeoutList {
	for _, tl := range l.tmoLists {
		if tl.kind == kind && tl.d == d {
			return tl
		}
	}
	tl := &timeoutList{kind: kind, d: d}
	l.tmoLists = append(l.tmoLists, tl)
	return tl
}

// stampActivity gives the activity of the iteration that is ending its
// time, reading the clock once if there was any. The loop calls it at the
// end of every iteration.
func (l *EventLoop) stampActivity() {
	var now time.Duration
	read := false
	for _, tl := range l.tmoLists {
		if tl.pending == nil {
			continue
		}
		if !read {
			now, read = l.k.Now(), true
		}
		tl.stamp(now)
	}
}

// nextTimeoutDeadline returns the earliest deadline among the timeout lists.
func (l *EventLoop) nextTimeoutDeadline() (time.Duration, bool) {
	var first time.Duration
	found := false
	for _, tl := range l.tmoLists {
		if d, ok := tl.deadline(); ok && (!found || d < first) {
			first, found = d, true
		}
	}
	return first, found
}

// expireTimeouts closes every connection whose timeout has passed.
func (l *EventLoop) expireTimeouts() {
	if len(l.tmoLists) == 0 {
		return
	}
	now := l.k.Now()
	for _, tl := range l.tmoLists {
		for {
			dl, ok := tl.deadline()
			if !ok || dl > now {
				break
			}
			c := tl.head
			if tl.kind == idleTimeout {
				c.closeNow(fmt.Errorf("%w: no bytes for %v", ErrIdleTimeout, tl.d))
			} else {
				c.closeNow(fmt.Errorf("%w: output stalled for %v with %d bytes pending", ErrWriteTimeout, tl.d, c.Buffered()))
			}
			if tl.head == c {
				tl.remove(c) // closeNow unlinks; this guards against a loop
			}
		}
	}
}

// setTimeout sets (d > 0) or clears (d == 0) one of c's timeouts, counting
// from now. Loop goroutine.
func (c *Conn) setTimeout(kind int, d time.Duration) {
	if c.state != connOpen {
		return
	}
	if c.tmo == nil {
		if d == 0 {
			return
		}
		c.tmo = &connTimeouts{}
	}
	if ln := &c.tmo.link[kind]; ln.list != nil {
		ln.list.remove(c)
	}
	c.tmo.d[kind] = d
	if d == 0 {
		return
	}
	if kind == idleTimeout || c.waitW {
		c.loop.timeoutList(kind, d).pushBack(c)
	}
}

// touch records activity: bytes moved in either direction. It restarts the
// idle timeout, and the write timeout when wrote is true and output remains.
func (c *Conn) touch(wrote bool) {
	t := c.tmo
	if t == nil {
		return
	}
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
	t := c.tmo
	if t == nil || t.d[writeTimeout] == 0 {
		return
	}
	ln := &t.link[writeTimeout]
	switch {
	case pending && ln.list == nil:
		c.loop.timeoutList(writeTimeout, t.d[writeTimeout]).pushBack(c)
	case !pending && ln.list != nil:
		ln.list.remove(c)
	}
}

// untrack removes c from every timeout list; closeNow calls it.
func (c *Conn) untrack() {
	if c.tmo == nil {
		return
	}
	for kind := range numTimeouts {
		if ln := &c.tmo.link[kind]; ln.list != nil {
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
