// This file holds Buffer (the C design's buffer): the byte buffer behind
// every connection's input and output, the two hooks that move bytes between
// a Buffer and a socket through the kernel seam (readFD, writeFD), and the
// pool that lends Buffers to connections only while they hold data.

package reactor

import (
	"bytes"
	"errors"
	"io"
	"math"
	"slices"
	"sync"
	"unsafe"

	"github.com/tcpreactor/reactor/internal/kernel"
)

const (
	// prependSize is the room kept free in front of the readable bytes of
	// a Buffer's own storage, so that a protocol can put a length header in
	// front of a message it has already written without moving the message
	// (muduo's kCheapPrepend). Eight bytes hold any fixed-width integer.
	prependSize = 8

	// minAlloc is the smallest storage a Buffer allocates, prepend space
	// included. Connection buffers come from a pool and keep the size they
	// grew to, so this only sets how the very first writes go.
	minAlloc = 256

	// maxPooledCap is the largest storage putBuffer keeps in the pool. A
	// Buffer that grew past it during a burst is dropped instead, so that
	// one large message does not pin a megabyte per connection for ever.
	maxPooledCap = 1 << 20

	// minReadSpace is how much free space readFD makes in a Buffer when it
	// has neither free space nor a spare buffer to read into: a readv(2)
	// with no room at all would return 0, which means end of file.
	minReadSpace = 4096
)

// ErrBufferFull is returned by Write, WriteString, WriteByte, Prepend and
// readFD when accepting the bytes would make a Buffer hold more readable
// bytes than its limit. Nothing is written in that case.
var ErrBufferFull = errors.New("reactor: buffer full")

// errInvalidWrite is returned by Buffer.WriteTo when the io.Writer reports a
// count that is negative or larger than what it was given; like io.Copy,
// WriteTo then treats the write as having taken nothing.
var errInvalidWrite = errors.New("reactor: invalid write result")

// Buffer is a byte buffer with a readable region and free space behind it,
// and a little reserved space in front of it (muduo's buffer layout):
//
//	+----------------+------------------+------------------+
//	| prependable    |  readable bytes  |  free space      |
//	+----------------+------------------+------------------+
//	0                r                  w             len(buf)
//
// Writes append at w, reads consume from r. When the free space runs out,
// the readable bytes are first moved back to the front if that is cheap
// (they fill at most half of the storage), and only otherwise is the storage
// reallocated, at twice its size; so writes cost amortised O(1) per byte and
// a Buffer that has grown to its working size allocates nothing more. When
// every readable byte has been consumed, r and w return to the front at no
// cost.
//
// The zero value is an empty Buffer with no limit, ready to use; it
// allocates on its first write. A Buffer must not be copied: the copy would
// share its storage.
//
// Ownership: a Buffer is not safe for concurrent use. Each connection's
// input and output Buffers belong to the connection's event loop and are
// touched only on that loop's goroutine. The Buffer handed to
// Handler.OnMessage is valid only during the callback: the handler consumes
// (Next, Discard, Read) what it uses and leaves the rest, which the
// connection keeps and hands again, with the bytes that arrive next, to the
// following call. A handler must not keep the Buffer, or slices of it, after
// it returns.
//
// Slices returned by Bytes, Peek and Next alias the Buffer's storage: they
// are valid only until the next call that writes to or consumes from the
// Buffer (Write, WriteString, WriteByte, Prepend, Grow, Next, Discard, Read,
// WriteTo, Reset). Copy what must outlive that. Their capacity ends at their
// length, so appending to one reallocates it rather than overwriting the
// Buffer's free space. Such a slice may be passed back to the same Buffer's
// Write or Prepend.
//
// Limit: a Buffer made by NewBuffer(n), or given SetLimit(n), with n > 0
// never accepts more than n readable bytes. A write that would pass the
// limit writes nothing and returns ErrBufferFull (writes are all or
// nothing); Grow grows at most to the limit. The limit counts readable bytes
// only, not the storage (which also holds the prepend space and bytes
// already consumed). Lowering the limit below Len drops nothing: writes fail
// until the reader has consumed enough.
type Buffer struct {
	// buf is the storage; len(buf) == cap(buf) always. buf[r:w] are the
	// readable bytes, buf[w:] the free space, buf[:r] the prepend space
	// (which includes bytes already consumed).
	buf  []byte
	r, w int
	// limit is the most readable bytes the Buffer accepts; 0 means none.
	limit int
	// borrowed reports that buf is someone else's memory, lent by borrow:
	// the Buffer reads it but never writes to it, and moves to storage of
	// its own before its first write. While borrowed, w == len(buf).
	borrowed bool
}

// NewBuffer returns an empty Buffer that never holds more than limit
// readable bytes; limit <= 0 means no limit. It allocates no storage until
// the first write.
func NewBuffer(limit int) *Buffer {
	b := new(Buffer)
	b.SetLimit(limit)
	return b
}

// SetLimit sets the most readable bytes b accepts; n <= 0 removes the
// limit. A limit below Len drops nothing: writes fail with ErrBufferFull
// until enough has been consumed.
func (b *Buffer) SetLimit(n int) {
	b.limit = max(n, 0)
}

// Len returns the number of readable bytes.
func (b *Buffer) Len() int { return b.w - b.r }

// Cap returns the size of b's storage: prepend space, readable bytes and
// free space together. It is 0 before the first write.
func (b *Buffer) Cap() int { return len(b.buf) }

// Available returns the free space behind the readable bytes: how many
// bytes can be written without moving or reallocating anything. It ignores
// the limit, which may refuse a write that would fit.
func (b *Buffer) Available() int { return len(b.buf) - b.w }

// Bytes returns the readable bytes without consuming them. The slice is
// valid until the next change to b.
func (b *Buffer) Bytes() []byte { return b.buf[b.r:b.w:b.w] }

// Peek returns up to n readable bytes without consuming them: fewer when
// Len < n, none when n <= 0. The slice is valid until the next change to b.
func (b *Buffer) Peek(n int) []byte {
	n = min(max(n, 0), b.Len())
	return b.buf[b.r : b.r+n : b.r+n]
}

// Next consumes up to n readable bytes and returns them: fewer when
// Len < n, none when n <= 0. The slice is valid until the next change to b.
func (b *Buffer) Next(n int) []byte {
	p := b.Peek(n)
	b.consume(len(p))
	return p
}

// Discard consumes up to n readable bytes: all of them when n >= Len,
// none when n <= 0.
func (b *Buffer) Discard(n int) {
	b.consume(min(max(n, 0), b.Len()))
}

// Read consumes up to len(p) bytes into p, as io.Reader. It returns io.EOF
// when b is empty and len(p) > 0; a Buffer has no end, so io.EOF here only
// means "nothing more for now".
func (b *Buffer) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.Len() == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.buf[b.r:b.w])
	b.consume(n)
	return n, nil
}

// WriteTo writes the readable bytes to w with one call of w.Write and
// consumes what w took, as io.WriterTo. If w takes less than all of them
// without an error, WriteTo returns io.ErrShortWrite; the rest stays in b.
func (b *Buffer) WriteTo(w io.Writer) (int64, error) {
	n := b.Len()
	if n == 0 {
		return 0, nil
	}
	m, err := w.Write(b.Bytes())
	if m < 0 || m > n {
		// A broken Writer; consuming a guess could lose bytes.
		return 0, errInvalidWrite
	}
	b.consume(m)
	if err == nil && m < n {
		err = io.ErrShortWrite
	}
	return int64(m), err
}

// consume drops the first n readable bytes; 0 <= n <= Len. Once nothing
// is left, the next writes start at the front again: this is what keeps a
// Buffer that is drained as fast as it is filled from ever moving bytes.
func (b *Buffer) consume(n int) {
	b.r += n
	if b.r < b.w {
		return
	}
	if b.borrowed {
		// Forget the lent memory now that nothing in it is ours to read.
		b.buf, b.borrowed = nil, false
	}
	b.r, b.w = 0, 0
	if b.buf != nil {
		b.r, b.w = prependSize, prependSize
	}
}

// Reset empties b. It keeps b's own storage and its limit; memory lent by
// borrow is forgotten.
func (b *Buffer) Reset() {
	b.consume(b.Len())
}

// Write appends p, as io.Writer. It returns (0, ErrBufferFull), writing
// nothing, if p does not fit under the limit; otherwise (len(p), nil).
func (b *Buffer) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := b.reserve(len(p), p); err != nil {
		return 0, err
	}
	b.w += copy(b.buf[b.w:], p)
	return len(p), nil
}

// WriteString appends s, as io.StringWriter, with the limit as for Write.
func (b *Buffer) WriteString(s string) (int, error) {
	if len(s) == 0 {
		return 0, nil
	}
	if err := b.reserve(len(s), nil); err != nil {
		return 0, err
	}
	b.w += copy(b.buf[b.w:], s)
	return len(s), nil
}

// WriteByte appends c, as io.ByteWriter. It returns ErrBufferFull if b is
// at its limit.
func (b *Buffer) WriteByte(c byte) error {
	if err := b.reserve(1, nil); err != nil {
		return err
	}
	b.buf[b.w] = c
	b.w++
	return nil
}

// Prepend puts p in front of the readable bytes, for length headers and
// the like written after the message they describe. It uses the space in
// front of the readable bytes, which is at least the reserved prepend space
// (8 bytes) in a Buffer's own storage and more once bytes have been consumed;
// if that is too small it moves the readable bytes back (or reallocates) to
// make room, which costs O(Len). It returns ErrBufferFull, writing nothing,
// if p does not fit under the limit.
func (b *Buffer) Prepend(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if b.limit > 0 && len(p) > b.limit-b.Len() {
		return ErrBufferFull
	}
	if b.r < len(p) || b.borrowed {
		b.makeRoom(len(p)+prependSize, 0, p)
	}
	b.r -= len(p)
	copy(b.buf[b.r:], p)
	return nil
}

// Grow makes sure that at least n bytes can be written without another
// allocation (Available() >= n). With a limit, it grows only as far as the
// limit allows (Available() >= min(n, limit-Len)). n <= 0 does nothing.
// Like bytes.Buffer.Grow it panics if n is too large to allocate.
func (b *Buffer) Grow(n int) {
	if b.limit > 0 {
		n = min(n, b.limit-b.Len())
	}
	if n > len(b.buf)-b.w {
		b.makeRoom(prependSize, n, nil)
	}
}

// reserve makes room for n more readable bytes behind the current ones, or
// returns ErrBufferFull if the limit forbids them. src, if not nil, is the
// data about to be copied in; it may alias b's storage.
func (b *Buffer) reserve(n int, src []byte) error {
	if b.limit > 0 && n > b.limit-b.Len() {
		return ErrBufferFull
	}
	if n > len(b.buf)-b.w {
		b.makeRoom(prependSize, n, src)
	}
	return nil
}

// makeRoom rearranges b so that there are at least front bytes in front of
// the readable bytes and back bytes of free space behind them, in storage of
// b's own. It moves the readable bytes within the storage when they fit and
// fill at most half of it (so the move is paid for by the at least as many
// bytes written since the last one), and reallocates otherwise, doubling, so
// growth is amortised. src is data the caller is about to copy in (nil if
// none): if it lies in b's storage, moving bytes there would corrupt it, so
// makeRoom reallocates and leaves the old storage, and src, untouched.
func (b *Buffer) makeRoom(front, back int, src []byte) {
	n := b.Len()
	need := front + n + back
	if need < 0 { // overflow: only a Grow with an absurd n gets here
		panic("reactor: Buffer too large")
	}
	if !b.borrowed && need <= len(b.buf) && n <= len(b.buf)/2 && !overlaps(src, b.buf) {
		copy(b.buf[front:], b.buf[b.r:b.w])
		b.r, b.w = front, front+n
		return
	}
	size := minAlloc
	if !b.borrowed {
		// Borrowed memory is usually a large shared read buffer of which
		// only a little is left over; doubling its size would be waste.
		size = max(size, 2*len(b.buf))
	}
	if b.limit > 0 && b.limit <= math.MaxInt-prependSize {
		// (A limit so large that adding the prepend space overflows is
		// no limit on the storage: without the check the sum would wrap
		// negative and every growth would be an exact fit, quadratic.)
		size = min(size, prependSize+b.limit)
	}
	size = max(size, need)
	// slices.Grow rounds the capacity up to the allocator's size class:
	// those bytes are ours anyway.
	nb := slices.Grow([]byte(nil), size)
	nb = nb[:cap(nb)]
	copy(nb[front:], b.buf[b.r:b.w])
	b.buf, b.r, b.w, b.borrowed = nb, front, front+n, false
}

// overlaps reports whether p and q share any byte of memory. It compares
// addresses only, without dereferencing them.
func overlaps(p, q []byte) bool {
	if len(p) == 0 || len(q) == 0 {
		return false
	}
	p0 := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	q0 := uintptr(unsafe.Pointer(unsafe.SliceData(q)))
	return p0 < q0+uintptr(len(q)) && q0 < p0+uintptr(len(p))
}

// IndexByte returns the index of the first c in the readable bytes, or -1.
func (b *Buffer) IndexByte(c byte) int {
	return bytes.IndexByte(b.buf[b.r:b.w], c)
}

// Index returns the index of the first sep in the readable bytes, or -1;
// an empty sep is found at 0.
func (b *Buffer) Index(sep []byte) int {
	return bytes.Index(b.buf[b.r:b.w], sep)
}

// IndexCRLF returns the index of the first "\r\n" in the readable bytes,
// or -1: the end of a line in HTTP, SMTP, Redis and most text protocols.
func (b *Buffer) IndexCRLF() int {
	return bytes.Index(b.buf[b.r:b.w], []byte("\r\n"))
}

// readFD reads from the socket fd into b with one readv(2) through k: into
// b's free space first and then into spare, the event loop's shared read
// buffer, so that a connection's own Buffer never needs to be large in
// advance and an idle one can stay small. Whatever landed in spare is then
// appended to b, growing it. iov is caller-owned scratch with at least two
// elements, reused so that the call allocates nothing; readFD clears what it
// put there before returning, so the scratch keeps no storage alive.
//
// It returns the bytes read and Readv's error as is (unix.EAGAIN, ...);
// (0, nil) means end of file. With a limit, it reads at most limit-Len
// bytes, and if that is 0 it returns (0, ErrBufferFull) without a system
// call. spare may be the very memory b borrows (see borrow): readFD first
// copies borrowed bytes to storage of b's own.
func (b *Buffer) readFD(k kernel.Interface, fd int, spare []byte, iov [][]byte) (int, error) {
	room := -1 // how much the limit lets in; -1: no limit
	if b.limit > 0 {
		room = b.limit - b.Len()
		if room <= 0 {
			return 0, ErrBufferFull
		}
	}
	if b.borrowed {
		// The lent memory may be spare itself: copy it out first.
		b.makeRoom(prependSize, 0, nil)
	}
	free := b.buf[b.w:]
	if room >= 0 {
		free = free[:min(len(free), room)]
		spare = spare[:min(len(spare), room-len(free))]
	}
	if len(free)+len(spare) == 0 {
		// With no room at all, readv(2) would return 0: end of file.
		b.Grow(minReadSpace)
		free = b.buf[b.w:]
		if room >= 0 {
			free = free[:min(len(free), room)]
		}
	}
	iov[0], iov[1] = free, spare
	n, err := k.Readv(fd, iov[:2])
	iov[0], iov[1] = nil, nil
	n = min(max(n, 0), len(free)+len(spare)) // never trust a count blindly
	if n <= len(free) {
		b.w += n
		return n, err
	}
	b.w += len(free)
	// The limit was applied to spare above, so this cannot fail.
	_, _ = b.Write(spare[:n-len(free)])
	return n, err
}

// readFrom makes room for at least space more bytes and reads once from
// r into the free space, keeping what r returned whatever its error: the
// TLS layer reads plaintext from crypto/tls so, which may return bytes
// and an error together. It returns what r returned.
func (b *Buffer) readFrom(r io.Reader, space int) (int, error) {
	b.Grow(space)
	n, err := r.Read(b.buf[b.w:])
	n = min(max(n, 0), len(b.buf)-b.w) // never trust a count blindly
	b.w += n
	return n, err
}

// writeFD writes b's readable bytes to the socket fd with one write(2)
// through k and consumes what the kernel took. It returns the bytes written
// and Write's error as is (unix.EAGAIN on a full socket buffer, ...). An
// empty b makes no system call and returns (0, nil).
func (b *Buffer) writeFD(k kernel.Interface, fd int) (int, error) {
	if b.Len() == 0 {
		return 0, nil
	}
	n, err := k.Write(fd, b.Bytes())
	n = min(max(n, 0), b.Len())
	b.consume(n)
	return n, err
}

// borrow points b at p, which holds len(p) readable bytes, without copying
// them: the event loop uses it to hand bytes it read into its shared read
// buffer to a handler directly. b gets no prepend space and never writes to
// p: its first write (or Prepend, Grow, readFD) copies the readable bytes to
// storage of its own. b drops its previous contents and storage, and keeps
// its limit, which p may exceed. p must stay unchanged while b refers to
// it, that is until b has been emptied or written to; after that b no
// longer refers to p.
func (b *Buffer) borrow(p []byte) {
	b.buf, b.r, b.w, b.borrowed = nil, 0, 0, false
	if len(p) > 0 {
		b.buf, b.w, b.borrowed = p[:len(p):len(p)], len(p), true
	}
}

// bufferPool holds empty Buffers for connections. A connection takes one
// only when it has bytes to keep between events and gives it back once it is
// empty, so an idle connection holds no buffer memory. sync.Pool is safe for
// every loop to share and, being cleared by the garbage collector, gives
// memory back after a burst. (The output of an OnMessage that its inline
// flush sends whole goes through one spare Buffer per loop instead; see
// Conn.outBuffer.)
var bufferPool = sync.Pool{New: func() any { return new(Buffer) }}

// getBuffer returns an empty Buffer with no limit, from the pool when it
// has one. The caller owns it until putBuffer.
func getBuffer() *Buffer {
	return bufferPool.Get().(*Buffer)
}

// putBuffer empties b, removes its limit and returns it to the pool; b
// must not be used afterwards. Buffers whose storage grew past maxPooledCap
// are left to the garbage collector instead. putBuffer(nil) does nothing.
func putBuffer(b *Buffer) {
	if b != nil && b.recycle() {
		bufferPool.Put(b)
	}
}

// recycle empties b and removes its limit, for reuse by another
// connection, and reports whether b is worth keeping: false when its
// storage grew past maxPooledCap, which is then better left to the garbage
// collector.
func (b *Buffer) recycle() bool {
	if len(b.buf) > maxPooledCap {
		return false
	}
	b.Reset()
	b.limit = 0
	return true
}
