package reactor

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The operations FuzzBuffer decodes from its input, one byte each, followed
// by their arguments.
const (
	opWrite = iota
	opWriteString
	opWriteByte
	opNext
	opDiscard
	opPeek
	opRead
	opPrepend
	opGrow
	opReset
	opIndexByte
	opIndex
	opIndexCRLF
	opSetLimit
	opWriteTo
	opBorrow
	opReadFD
	opWriteFD
	opWriteSelf    // Write a slice of the Buffer's own readable bytes
	opPrependSelf  // Prepend a slice of the Buffer's own readable bytes
	opWriteNextRet // Write back what Next just returned
	opRecycle      // putBuffer, then getBuffer
	numOps
)

// fuzzInput hands out the fuzz input byte by byte; past its end it returns
// zeros, so every input decodes to some sequence of operations.
type fuzzInput struct {
	data []byte
	pos  int
}

func (in *fuzzInput) more() bool { return in.pos < len(in.data) }

func (in *fuzzInput) byte() byte {
	if !in.more() {
		return 0
	}
	in.pos++
	return in.data[in.pos-1]
}

// count returns a length or count argument: mostly small, sometimes
// negative, sometimes a few kilobytes, to reach every branch around Len
// and the storage size.
func (in *fuzzInput) count() int {
	c := int(int8(in.byte()))
	if in.byte()&1 != 0 {
		c *= 37
	}
	return c
}

// payload returns bytes to write: taken from the input (so the fuzzer
// controls where '\r' and '\n' fall), or a long generated run that makes
// the Buffer grow.
func (in *fuzzInput) payload() []byte {
	n := int(in.byte())
	if n&1 != 0 {
		p := make([]byte, n*16)
		seed := in.byte()
		for i := range p {
			p[i] = "ab\r\nc"[(i+int(seed))%5] + byte(i/5%3)
		}
		return p
	}
	n /= 2
	end := min(in.pos+n, len(in.data))
	p := bytes.Clone(in.data[in.pos:end])
	in.pos = end
	return p
}

// bufferModel runs operations against a Buffer and against a plain byte
// slice holding what the Buffer should hold, and compares them.
type bufferModel struct {
	b     *Buffer
	want  []byte // the readable bytes b should hold
	limit int    // the limit b should have
	// lent is the memory last lent with borrow (with capacity beyond its
	// length), and lentCopy what it held: a Buffer must never write to
	// memory it borrows.
	lent, lentCopy []byte
	k              fakeKernel
	iov            [][]byte
	lastNext       []byte // what the last Next returned, still valid
}

func (m *bufferModel) room() int {
	if m.limit == 0 {
		return int(^uint(0) >> 1)
	}
	return m.limit - len(m.want)
}

func (m *bufferModel) step(t *testing.T, in *fuzzInput) {
	b := m.b
	op := in.byte() % numOps
	if op != opWriteNextRet {
		m.lastNext = nil
	}
	switch op {
	case opWrite, opWriteString, opPrepend:
		p := in.payload()
		var n int
		var err error
		switch op {
		case opWrite:
			n, err = b.Write(p)
		case opWriteString:
			n, err = b.WriteString(string(p))
		case opPrepend:
			err = b.Prepend(p)
			if err == nil {
				n = len(p)
			}
		}
		if len(p) > 0 && len(p) > m.room() {
			require.ErrorIs(t, err, ErrBufferFull, "op %d of %d bytes, room %d", op, len(p), m.room())
			require.Zero(t, n)
			return
		}
		require.NoError(t, err)
		require.Equal(t, len(p), n)
		if op == opPrepend {
			m.want = append(p, m.want...)
		} else {
			m.want = append(m.want, p...)
		}

	case opWriteByte:
		c := in.byte()
		err := b.WriteByte(c)
		if m.room() < 1 {
			require.ErrorIs(t, err, ErrBufferFull)
			return
		}
		require.NoError(t, err)
		m.want = append(m.want, c)

	case opNext, opDiscard, opPeek:
		n := in.count()
		k := min(max(n, 0), len(m.want))
		switch op {
		case opNext:
			got := b.Next(n)
			require.Equal(t, string(m.want[:k]), string(got), "Next(%d)", n)
			require.Equal(t, len(got), cap(got), "Next's slice reaches the free space")
			m.lastNext = got
		case opPeek:
			got := b.Peek(n)
			require.Equal(t, string(m.want[:k]), string(got), "Peek(%d)", n)
			require.Equal(t, len(got), cap(got), "Peek's slice reaches the free space")
			return
		case opDiscard:
			b.Discard(n)
		}
		m.want = m.want[k:]

	case opRead:
		p := make([]byte, in.byte())
		n, err := b.Read(p)
		k := min(len(p), len(m.want))
		require.Equal(t, k, n)
		if len(p) > 0 && len(m.want) == 0 {
			require.ErrorIs(t, err, io.EOF)
		} else {
			require.NoError(t, err)
		}
		require.Equal(t, string(m.want[:k]), string(p[:n]))
		m.want = m.want[k:]

	case opGrow:
		n := in.count()
		b.Grow(n)
		grant := min(n, m.room())
		if grant <= 0 {
			return
		}
		require.GreaterOrEqual(t, b.Available(), grant, "Grow(%d)", n)
		if in.byte()&1 != 0 {
			// Grow's promise: that many bytes fit without moving.
			before := unsafe.SliceData(b.buf)
			p := bytes.Repeat([]byte{'g'}, grant)
			_, err := b.Write(p)
			require.NoError(t, err)
			require.Same(t, before, unsafe.SliceData(b.buf), "Write after Grow reallocated")
			m.want = append(m.want, p...)
		}

	case opReset:
		b.Reset()
		m.want = m.want[:0]

	case opIndexByte:
		c := in.byte()
		require.Equal(t, bytes.IndexByte(m.want, c), b.IndexByte(c))

	case opIndex:
		sep := in.payload()
		if len(sep) > 8 {
			sep = sep[:in.byte()%8]
		}
		require.Equal(t, bytes.Index(m.want, sep), b.Index(sep), "Index(%q)", sep)

	case opIndexCRLF:
		require.Equal(t, bytes.Index(m.want, []byte("\r\n")), b.IndexCRLF())

	case opSetLimit:
		n := int(in.byte())*8 - 16
		b.SetLimit(n)
		m.limit = max(n, 0)

	case opWriteTo:
		w := &limitedWriter{max: int(in.byte())}
		if in.byte()&1 != 0 {
			w.err = errors.New("fuzz")
		}
		n, err := b.WriteTo(w)
		k := min(w.max, len(m.want))
		require.Equal(t, int64(k), n)
		switch {
		case len(m.want) == 0:
			require.NoError(t, err)
		case w.err != nil:
			require.ErrorIs(t, err, w.err)
		case k < len(m.want):
			require.ErrorIs(t, err, io.ErrShortWrite)
		default:
			require.NoError(t, err)
		}
		require.Equal(t, string(m.want[:k]), string(w.got))
		m.want = m.want[k:]

	case opBorrow:
		p := in.payload()
		m.lent = make([]byte, len(p), len(p)+int(in.byte()%16))
		copy(m.lent, p)
		m.lentCopy = bytes.Clone(m.lent[:cap(m.lent)])
		b.borrow(m.lent)
		m.want = bytes.Clone(p)

	case opReadFD:
		m.readFD(t, in)

	case opWriteFD:
		m.k = fakeKernel{writeMax: int(in.byte())}
		if in.byte()%8 == 0 {
			m.k.writeErr = unix.EAGAIN
		}
		n, err := b.writeFD(&m.k, 5)
		k := len(m.want)
		switch {
		case m.k.writeErr != nil && k > 0:
			k = 0
			require.ErrorIs(t, err, unix.EAGAIN)
		case m.k.writeMax > 0:
			k = min(k, m.k.writeMax)
			require.NoError(t, err)
		default:
			require.NoError(t, err)
		}
		require.Equal(t, k, n)
		require.Equal(t, string(m.want[:k]), string(m.k.written))
		require.Equal(t, min(len(m.want), 1), m.k.writeCalls, "a system call only for something to write")
		m.want = m.want[k:]

	case opWriteSelf, opPrependSelf:
		i, j := int(in.byte()), int(in.byte())
		i, j = min(i, len(m.want)), min(j, len(m.want))
		i, j = min(i, j), max(i, j)
		p := b.Bytes()[i:j]
		q := bytes.Clone(m.want[i:j])
		var err error
		if op == opWriteSelf {
			_, err = b.Write(p)
		} else {
			err = b.Prepend(p)
		}
		if len(q) > 0 && len(q) > m.room() {
			require.ErrorIs(t, err, ErrBufferFull)
			return
		}
		require.NoError(t, err)
		if op == opWriteSelf {
			m.want = append(m.want, q...)
		} else {
			m.want = append(q, m.want...)
		}

	case opWriteNextRet:
		// The slice Next returned is valid until the next change, and that
		// change may be writing it back.
		p := m.lastNext
		m.lastNext = nil
		q := bytes.Clone(p)
		_, err := b.Write(p)
		if len(q) > 0 && len(q) > m.room() {
			require.ErrorIs(t, err, ErrBufferFull)
			return
		}
		require.NoError(t, err)
		m.want = append(m.want, q...)

	case opRecycle:
		putBuffer(b)
		m.b = getBuffer()
		m.want, m.limit = m.want[:0], 0
	}
}

// readFD runs one readFD over a fake kernel with one scripted arrival.
func (m *bufferModel) readFD(t *testing.T, in *fuzzInput) {
	b := m.b
	var arrival fakeRead
	switch in.byte() % 8 {
	case 0:
		// end of file: empty data
	case 1:
		arrival.err = unix.ECONNRESET
	default:
		arrival.data = in.payload()
	}
	spare := make([]byte, int(in.byte())*4)
	if b.borrowed && in.byte()&1 != 0 {
		// As in the event loop: the spare buffer is the borrowed memory.
		spare = m.lent[:cap(m.lent)]
	}
	m.k = fakeKernel{reads: []fakeRead{arrival}}
	n, err := b.readFD(&m.k, 5, spare, m.iov)
	if unsafe.SliceData(spare) == unsafe.SliceData(m.lent) {
		// The kernel, not the Buffer, wrote there.
		m.lentCopy = bytes.Clone(m.lent[:cap(m.lent)])
	}
	require.Equal(t, [][]byte{nil, nil}, m.iov, "scratch cleared")
	if m.room() <= 0 {
		require.ErrorIs(t, err, ErrBufferFull)
		require.Zero(t, n)
		require.Zero(t, m.k.readvCalls, "no system call when full")
		return
	}
	require.Equal(t, 1, m.k.readvCalls)
	require.Positive(t, m.k.lastSpace, "readv with no room would look like EOF")
	require.LessOrEqual(t, m.k.lastSpace, m.room(), "readv offered more than the limit")
	require.ErrorIs(t, err, arrival.err)
	if arrival.err == nil {
		require.NoError(t, err)
	}
	require.LessOrEqual(t, n, len(arrival.data))
	if len(arrival.data) > 0 {
		require.Positive(t, n)
	}
	if len(spare) >= len(arrival.data) && m.limit == 0 {
		require.Equal(t, len(arrival.data), n, "spare had room for everything")
	}
	m.want = append(m.want, arrival.data[:n]...)
}

// check compares the Buffer with the model and checks its invariants.
func (m *bufferModel) check(t *testing.T) {
	b := m.b
	checkInvariants(t, b)
	require.Equal(t, len(m.want), b.Len())
	if !bytes.Equal(m.want, b.Bytes()) { // cheap first: this runs after every step
		require.Equal(t, string(m.want), string(b.Bytes()))
	}
	require.Equal(t, m.limit, b.limit)
	require.Equal(t, len(b.buf)-b.w, b.Available())
	require.Equal(t, len(b.buf), b.Cap())
	if m.lent != nil && !bytes.Equal(m.lentCopy, m.lent[:cap(m.lent)]) {
		t.Fatalf("the Buffer wrote to borrowed memory:\n was %q\n now %q", m.lentCopy, m.lent[:cap(m.lent)])
	}
}

// fuzzOps encodes a sequence of operations with their argument bytes, for
// the seed corpus.
func fuzzOps(ops ...[]byte) []byte { return bytes.Join(ops, nil) }

func op(code int, args ...byte) []byte { return append([]byte{byte(code)}, args...) }

func FuzzBuffer(f *testing.F) {
	// Payload arguments: an even length byte 2n takes the next n input
	// bytes; an odd one generates 16 times as many bytes.
	text := func(s string) []byte { return append([]byte{byte(2 * len(s))}, s...) }
	f.Add(fuzzOps(op(opWrite, text("GET / HTTP/1.1\r\nHost: x\r\n\r\n")...), op(opIndexCRLF), op(opNext, 16, 0), op(opIndexCRLF)))
	f.Add(fuzzOps(op(opWrite, 31, 0), op(opDiscard, 100, 1), op(opWrite, 31, 1), op(opWrite, 31, 2), op(opNext, 3, 0)))
	f.Add(fuzzOps(op(opWriteString, text("body")...), op(opPrepend, text("12345678")...), op(opPrepend, text("abcdefghijk")...), op(opRead, 5)))
	f.Add(fuzzOps(op(opSetLimit, 3), op(opWrite, text("12345678")...), op(opWriteByte, 'x'), op(opPrepend, text("abcdefghij")...), op(opReadFD, 2, 0, 10)))
	f.Add(fuzzOps(op(opBorrow, append(text("borrowed\r\nbytes"), 9)...), op(opNext, 3, 0), op(opPrepend, text("ab")...), op(opIndexByte, 'b')))
	f.Add(fuzzOps(op(opBorrow, append(text("lent"), 4)...), op(opReadFD, 2, 7, 200, 1), op(opWriteFD, 3, 1), op(opWriteFD, 0, 0)))
	f.Add(fuzzOps(op(opWrite, 61, 3), op(opNext, 100, 1), op(opWriteNextRet), op(opWriteSelf, 0, 200), op(opPrependSelf, 10, 20)))
	f.Add(fuzzOps(op(opGrow, 100, 1, 1), op(opWriteTo, 7, 0), op(opReset), op(opGrow, 200, 1, 1), op(opRecycle), op(opWriteString, text("x")...)))
	f.Add(fuzzOps(op(opReadFD, 2, 201, 0), op(opReadFD, 3, 50), op(opReadFD, 1, 0), op(opIndex, text("\r\n")...), op(opWriteTo, 255, 1)))

	f.Fuzz(func(t *testing.T, data []byte) {
		m := &bufferModel{b: new(Buffer), iov: make([][]byte, 2)}
		in := &fuzzInput{data: data}
		for steps := 0; in.more() && steps < 500; steps++ {
			m.step(t, in)
			m.check(t)
		}
	})
}
