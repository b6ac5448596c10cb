package reactor

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/kernel"
)

// enosysKernel is a kernel.Interface whose every call fails with ENOSYS.
// Test kernels embed it and override the calls they serve.
type enosysKernel struct{}

var _ kernel.Interface = enosysKernel{}

func (enosysKernel) Listen(string, string, bool, int) (int, unix.Sockaddr, error) {
	return -1, nil, unix.ENOSYS
}
func (enosysKernel) DupListener(int) (int, unix.Sockaddr, error) { return -1, nil, unix.ENOSYS }
func (enosysKernel) Accept(int) (int, netip.AddrPort, error) {
	return -1, netip.AddrPort{}, unix.ENOSYS
}
func (enosysKernel) Connect(unix.Sockaddr) (int, error)       { return -1, unix.ENOSYS }
func (enosysKernel) Socketpair() ([2]int, error)              { return [2]int{-1, -1}, unix.ENOSYS }
func (enosysKernel) Read(int, []byte) (int, error)            { return 0, unix.ENOSYS }
func (enosysKernel) Readv(int, [][]byte) (int, error)         { return 0, unix.ENOSYS }
func (enosysKernel) Peek(int, []byte) (int, error)            { return 0, unix.ENOSYS }
func (enosysKernel) Write(int, []byte) (int, error)           { return 0, unix.ENOSYS }
func (enosysKernel) Writev(int, [][]byte) (int, error)        { return 0, unix.ENOSYS }
func (enosysKernel) Shutdown(int, int) error                  { return unix.ENOSYS }
func (enosysKernel) Close(int) error                          { return unix.ENOSYS }
func (enosysKernel) SetsockoptInt(int, int, int, int) error   { return unix.ENOSYS }
func (enosysKernel) SetLinger(int, int) error                 { return unix.ENOSYS }
func (enosysKernel) GetsockoptInt(int, int, int) (int, error) { return 0, unix.ENOSYS }
func (enosysKernel) Getsockname(int) (unix.Sockaddr, error)   { return nil, unix.ENOSYS }
func (enosysKernel) Getpeername(int) (unix.Sockaddr, error)   { return nil, unix.ENOSYS }
func (enosysKernel) Now() time.Duration                       { return 0 }

// fakeRead is one arrival on a fakeKernel socket: data, or an error if err
// is set. An empty data with a nil err is the peer's end of file.
type fakeRead struct {
	data []byte
	err  error
}

// fakeKernel serves Readv from a script of arrivals and records Write. A
// Readv returns at most one arrival; an arrival larger than the iovecs is
// served over several calls, as a socket would. Past the script Readv
// returns EAGAIN, or starts the script over if cycle is set.
type fakeKernel struct {
	enosysKernel
	reads []fakeRead
	cycle bool
	next  int // index of the arrival being served
	off   int // bytes of reads[next] already served

	readvCalls int
	lastSpace  int // total length of the iovecs of the last Readv

	writeMax   int   // most bytes one Write takes; 0: all
	writeErr   error // returned by every Write if set
	discard    bool  // do not record written bytes (benchmarks)
	written    []byte
	writeCalls int
}

func (k *fakeKernel) Readv(_ int, iov [][]byte) (int, error) {
	k.readvCalls++
	k.lastSpace = 0
	for _, v := range iov {
		k.lastSpace += len(v)
	}
	if k.next >= len(k.reads) {
		if !k.cycle || len(k.reads) == 0 {
			return 0, unix.EAGAIN
		}
		k.next = 0
	}
	r := k.reads[k.next]
	if r.err != nil {
		k.next++
		return 0, r.err
	}
	n := 0
	for _, v := range iov {
		n += copy(v, r.data[k.off+n:])
	}
	k.off += n
	if k.off == len(r.data) {
		k.next, k.off = k.next+1, 0
	}
	return n, nil
}

func (k *fakeKernel) Write(_ int, p []byte) (int, error) {
	k.writeCalls++
	if k.writeErr != nil {
		return 0, k.writeErr
	}
	n := len(p)
	if k.writeMax > 0 {
		n = min(n, k.writeMax)
	}
	if !k.discard {
		k.written = append(k.written, p[:n]...)
	}
	return n, nil
}

// unixKernel passes Readv and Write to the real system calls, to check
// readFD and writeFD against the kernel's own iovec handling.
type unixKernel struct{ enosysKernel }

func (unixKernel) Readv(fd int, iov [][]byte) (int, error) {
	n, err := unix.Readv(fd, iov)
	return max(n, 0), err
}

func (unixKernel) Write(fd int, p []byte) (int, error) {
	n, err := unix.Write(fd, p)
	return max(n, 0), err
}

// storage returns the address of b's storage, to tell whether an operation
// moved it to new memory.
func storage(b *Buffer) *byte { return unsafe.SliceData(b.buf) }

// filled returns a Buffer holding s, written in one go.
func filled(t *testing.T, s string) *Buffer {
	t.Helper()
	b := new(Buffer)
	_, err := b.WriteString(s)
	require.NoError(t, err)
	return b
}

// checkInvariants asserts the representation invariants of b.
func checkInvariants(t *testing.T, b *Buffer) {
	t.Helper()
	require.True(t, 0 <= b.r && b.r <= b.w && b.w <= len(b.buf), "r=%d w=%d len=%d", b.r, b.w, len(b.buf))
	require.Equal(t, len(b.buf), cap(b.buf), "storage length and capacity")
	if b.borrowed {
		require.Equal(t, len(b.buf), b.w, "a borrowed buffer has no free space")
		require.NotZero(t, b.Len(), "a borrowed buffer is not empty")
	} else if b.buf != nil {
		require.GreaterOrEqual(t, len(b.buf), prependSize)
	}
}

func TestBufferZeroValue(t *testing.T) {
	var b Buffer
	assert.Zero(t, b.Len())
	assert.Zero(t, b.Cap())
	assert.Zero(t, b.Available())
	assert.Empty(t, b.Bytes())
	assert.Empty(t, b.Next(10))
	assert.Empty(t, b.Peek(10))
	assert.Equal(t, -1, b.IndexCRLF())
	assert.Equal(t, -1, b.IndexByte('x'))
	assert.Equal(t, -1, b.Index([]byte("x")))
	assert.Equal(t, 0, b.Index(nil))
	n, err := b.Read(make([]byte, 1))
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, io.EOF)
	b.Discard(5)
	b.Reset()
	assert.Zero(t, b.Cap(), "nothing above needs storage")

	n, err = b.Write([]byte("hi"))
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, "hi", string(b.Bytes()))
	assert.GreaterOrEqual(t, b.Cap(), minAlloc)
	checkInvariants(t, &b)
}

func TestBufferWrite(t *testing.T) {
	big := strings.Repeat("0123456789", 100)
	tests := []struct {
		name   string
		before string
		limit  int
		write  string
		want   string
		err    error
	}{
		{name: "into empty", write: "abc", want: "abc"},
		{name: "append", before: "abc", write: "def", want: "abcdef"},
		{name: "nothing", before: "abc", write: "", want: "abc"},
		{name: "grows", before: "abc", write: big, want: "abc" + big},
		{name: "exactly to the limit", before: "abc", limit: 6, write: "def", want: "abcdef"},
		{name: "past the limit", before: "abc", limit: 5, write: "def", want: "abc", err: ErrBufferFull},
		{name: "nothing at the limit", before: "abc", limit: 3, write: "", want: "abc"},
	}
	writers := []struct {
		name  string
		write func(b *Buffer, s string) (int, error)
	}{
		{"Write", func(b *Buffer, s string) (int, error) { return b.Write([]byte(s)) }},
		{"WriteString", (*Buffer).WriteString},
		{"WriteByte", func(b *Buffer, s string) (int, error) {
			for i := range len(s) {
				if err := b.WriteByte(s[i]); err != nil {
					return i, err
				}
			}
			return len(s), nil
		}},
	}
	for _, w := range writers {
		for _, tt := range tests {
			t.Run(w.name+"/"+tt.name, func(t *testing.T) {
				b := filled(t, tt.before)
				b.SetLimit(tt.limit)
				n, err := w.write(b, tt.write)
				if tt.err != nil {
					// WriteByte writes byte by byte, so it stops at the limit;
					// Write and WriteString write nothing.
					assert.ErrorIs(t, err, tt.err)
					if w.name == "WriteByte" {
						assert.Equal(t, tt.limit-len(tt.before), n)
						assert.Equal(t, tt.limit, b.Len())
						return
					}
					assert.Zero(t, n)
				} else {
					assert.NoError(t, err)
					assert.Equal(t, len(tt.write), n)
				}
				assert.Equal(t, tt.want, string(b.Bytes()))
				checkInvariants(t, b)
			})
		}
	}
}

func TestBufferConsume(t *testing.T) {
	const content = "hello world"
	tests := []struct {
		name string
		n    int
		want string // consumed (Next, Discard) or shown (Peek)
	}{
		{"negative", -1, ""},
		{"zero", 0, ""},
		{"some", 5, "hello"},
		{"all", len(content), content},
		{"more than all", len(content) + 1, content},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := filled(t, content)
			assert.Equal(t, tt.want, string(b.Peek(tt.n)), "Peek")
			assert.Equal(t, content, string(b.Bytes()), "Peek consumed")

			assert.Equal(t, tt.want, string(b.Next(tt.n)), "Next")
			assert.Equal(t, content[len(tt.want):], string(b.Bytes()), "after Next")
			checkInvariants(t, b)

			b = filled(t, content)
			b.Discard(tt.n)
			assert.Equal(t, content[len(tt.want):], string(b.Bytes()), "after Discard")
			checkInvariants(t, b)
		})
	}
}

func TestBufferSlicesDoNotReachFreeSpace(t *testing.T) {
	b := filled(t, "abcdef")
	for name, p := range map[string][]byte{"Bytes": b.Bytes(), "Peek": b.Peek(3)} {
		_ = append(p, 'X')
		assert.Equal(t, "abcdef", string(b.Bytes()), name)
		_, err := b.WriteString("g")
		require.NoError(t, err)
		assert.Equal(t, "abcdefg", string(b.Bytes()), name)
		b.Discard(b.Len())
		_, err = b.WriteString("abcdef")
		require.NoError(t, err)
	}
}

func TestBufferNextSurvivesDraining(t *testing.T) {
	// Draining moves r and w back to the front but writes nothing, so the
	// slice Next returned stays good until the next write.
	b := filled(t, "line\r\n")
	p := b.Next(6)
	assert.Zero(t, b.Len())
	assert.Equal(t, "line\r\n", string(p))
	assert.Equal(t, prependSize, b.r, "an empty buffer starts over at the front")
}

func TestBufferRead(t *testing.T) {
	tests := []struct {
		name    string
		content string
		size    int
		want    string
		err     error
	}{
		{"empty into nothing", "", 0, "", nil},
		{"empty", "", 4, "", io.EOF},
		{"into nothing", "abc", 0, "", nil},
		{"part", "abcdef", 4, "abcd", nil},
		{"exactly", "abcd", 4, "abcd", nil},
		{"short", "ab", 4, "ab", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := filled(t, tt.content)
			p := make([]byte, tt.size)
			n, err := b.Read(p)
			assert.Equal(t, tt.err, err)
			assert.Equal(t, tt.want, string(p[:n]))
			assert.Equal(t, tt.content[n:], string(b.Bytes()))
		})
	}
}

// limitedWriter takes at most max bytes per Write and reports count (if set)
// instead of the truth, and err.
type limitedWriter struct {
	got   []byte
	max   int
	count *int
	err   error
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	n := min(len(p), w.max)
	w.got = append(w.got, p[:n]...)
	if w.count != nil {
		return *w.count, w.err
	}
	return n, w.err
}

func TestBufferWriteTo(t *testing.T) {
	errBoom := errors.New("boom")
	neg, huge := -1, 100
	tests := []struct {
		name    string
		content string
		w       *limitedWriter
		n       int64
		err     error
		left    string
	}{
		{"empty", "", &limitedWriter{max: 10}, 0, nil, ""},
		{"all", "hello", &limitedWriter{max: 10}, 5, nil, ""},
		{"short", "hello", &limitedWriter{max: 2}, 2, io.ErrShortWrite, "llo"},
		{"error", "hello", &limitedWriter{max: 1, err: errBoom}, 1, errBoom, "ello"},
		{"negative count", "hello", &limitedWriter{max: 5, count: &neg}, 0, errInvalidWrite, "hello"},
		{"count too large", "hello", &limitedWriter{max: 5, count: &huge}, 0, errInvalidWrite, "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := filled(t, tt.content)
			n, err := b.WriteTo(tt.w)
			assert.Equal(t, tt.n, n)
			assert.ErrorIs(t, err, tt.err)
			if tt.err == nil {
				assert.NoError(t, err)
			}
			assert.Equal(t, tt.left, string(b.Bytes()))
		})
	}
}

func TestBufferIndex(t *testing.T) {
	tests := []struct {
		name     string
		content  string
		consumed int // bytes written and consumed before content
		c        byte
		sep      string
		wantByte int
		wantSep  int
		wantCRLF int
	}{
		{"empty", "", 0, '\n', "ab", -1, -1, -1},
		{"at start", "\r\nabc", 0, '\r', "\r\n", 0, 0, 0},
		{"in the middle", "GET / HTTP/1.1\r\nHost: x\r\n", 0, ' ', "Host", 3, 16, 14},
		{"lone CR at end", "abc\r", 0, '\r', "c\r", 3, 2, -1},
		{"LF without CR", "abc\ndef", 0, '\n', "x", 3, -1, -1},
		{"CR CR LF", "a\r\r\nb", 0, 'b', "\r\r", 4, 1, 2},
		{"after consumed bytes", "xy\r\n", 3, 'y', "y", 1, 1, 2},
		{"empty separator", "abc", 0, 'z', "", -1, 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := filled(t, strings.Repeat("\r\n", tt.consumed)[:tt.consumed]+tt.content)
			b.Discard(tt.consumed)
			assert.Equal(t, tt.wantByte, b.IndexByte(tt.c), "IndexByte")
			assert.Equal(t, tt.wantSep, b.Index([]byte(tt.sep)), "Index")
			assert.Equal(t, tt.wantCRLF, b.IndexCRLF(), "IndexCRLF")
		})
	}
}

func TestBufferPrepend(t *testing.T) {
	body := strings.Repeat("b", 300)
	tests := []struct {
		name    string
		setup   func(t *testing.T) *Buffer
		header  string
		want    string
		err     error
		samePtr bool // done in place, in the same storage
	}{
		{
			name:    "into the reserve",
			setup:   func(t *testing.T) *Buffer { return filled(t, "body") },
			header:  "12345678",
			want:    "12345678body",
			samePtr: true,
		},
		{
			name: "into consumed space",
			setup: func(t *testing.T) *Buffer {
				b := filled(t, "0123456789012345body")
				b.Discard(16)
				return b
			},
			header:  "0123456789ABCDEF",
			want:    "0123456789ABCDEFbody",
			samePtr: true,
		},
		{
			name:    "larger than the reserve: moves the body",
			setup:   func(t *testing.T) *Buffer { return filled(t, "body") },
			header:  "0123456789",
			want:    "0123456789body",
			samePtr: true,
		},
		{
			name:    "larger than the reserve: reallocates a full buffer",
			setup:   func(t *testing.T) *Buffer { return filled(t, body) },
			header:  "0123456789",
			want:    "0123456789" + body,
			samePtr: false,
		},
		{
			name:   "into a zero Buffer",
			setup:  func(*testing.T) *Buffer { return new(Buffer) },
			header: "hdr",
			want:   "hdr",
		},
		{
			name:    "nothing",
			setup:   func(t *testing.T) *Buffer { return filled(t, "body") },
			header:  "",
			want:    "body",
			samePtr: true,
		},
		{
			name: "exactly to the limit",
			setup: func(t *testing.T) *Buffer {
				b := filled(t, "body")
				b.SetLimit(8)
				return b
			},
			header:  "1234",
			want:    "1234body",
			samePtr: true,
		},
		{
			name: "past the limit",
			setup: func(t *testing.T) *Buffer {
				b := filled(t, "body")
				b.SetLimit(7)
				return b
			},
			header:  "1234",
			want:    "body",
			err:     ErrBufferFull,
			samePtr: true,
		},
		{
			name: "twice",
			setup: func(t *testing.T) *Buffer {
				b := filled(t, "body")
				require.NoError(t, b.Prepend([]byte("1234")))
				return b
			},
			header:  "56789",
			want:    "567891234body",
			samePtr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.setup(t)
			before := storage(b)
			err := b.Prepend([]byte(tt.header))
			assert.Equal(t, tt.err, err)
			assert.Equal(t, tt.want, string(b.Bytes()))
			if tt.samePtr {
				assert.Same(t, before, storage(b), "storage moved")
			} else if before != nil {
				assert.NotSame(t, before, storage(b), "storage should have moved")
			}
			checkInvariants(t, b)
			// A later write still lands behind everything.
			b.SetLimit(0)
			_, err = b.WriteString("!")
			if tt.err == nil {
				require.NoError(t, err)
				assert.Equal(t, tt.want+"!", string(b.Bytes()))
			}
		})
	}
}

func TestBufferAliasing(t *testing.T) {
	// Slices of a Buffer may be written back into it, even when making room
	// moves the bytes they point at. The content has no repeats, so that
	// bytes read from the wrong place show.
	content := make([]byte, 210)
	for i := range content {
		content[i] = byte(i)
	}
	cat := func(parts ...[]byte) string { return string(bytes.Join(parts, nil)) }
	tests := []struct {
		name    string
		consume int // of the 210 bytes written first
		do      func(b *Buffer) error
		want    string
	}{
		{"Write(Bytes) fitting behind", 200, func(b *Buffer) error {
			_, err := b.Write(b.Bytes())
			return err
		}, cat(content[200:], content[200:])},
		{"Write(Bytes) needing room", 170, func(b *Buffer) error {
			_, err := b.Write(b.Bytes())
			return err
		}, cat(content[170:], content[170:])},
		{"Write(Next) into the space it left", 0, func(b *Buffer) error {
			_, err := b.Write(b.Next(200))
			return err
		}, cat(content[200:], content[:200])},
		{"Prepend(Peek) needing room", 200, func(b *Buffer) error {
			b.Reset()
			if _, err := b.Write(content[:10]); err != nil {
				return err
			}
			return b.Prepend(b.Peek(10))
		}, cat(content[:10], content[:10])},
		{"Prepend(its own tail) needing room", 200, func(b *Buffer) error {
			b.Reset()
			if _, err := b.Write(content[:20]); err != nil {
				return err
			}
			return b.Prepend(b.Bytes()[10:])
		}, cat(content[10:20], content[:20])},
		{"Prepend(Peek) into consumed space", 200, func(b *Buffer) error {
			return b.Prepend(b.Peek(10))
		}, cat(content[200:], content[200:])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := new(Buffer)
			b.Grow(len(content))
			require.Equal(t, minAlloc, b.Cap(), "the test assumes this layout")
			_, err := b.Write(content)
			require.NoError(t, err)
			b.Discard(tt.consume)
			require.NoError(t, tt.do(b))
			assert.Equal(t, tt.want, string(b.Bytes()))
			checkInvariants(t, b)
		})
	}
}

func TestBufferGrow(t *testing.T) {
	tests := []struct {
		name      string
		limit     int
		before    string
		n         int
		available int // at least
	}{
		{"negative", 0, "abc", -5, 0},
		{"zero", 0, "abc", 0, 0},
		{"small", 0, "abc", 10, 10},
		{"large", 0, "abc", 100000, 100000},
		{"within the limit", 50, "abc", 20, 20},
		{"past the limit: to the limit", 50, "abc", 1000, 47},
		{"at the limit", 3, "abc", 10, 0},
		{"over the lowered limit", 2, "abc", 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := filled(t, tt.before)
			b.SetLimit(tt.limit)
			b.Grow(tt.n)
			assert.GreaterOrEqual(t, b.Available(), tt.available)
			assert.Equal(t, tt.before, string(b.Bytes()))
			checkInvariants(t, b)
			// Grow's promise: the bytes fit without another allocation.
			before := storage(b)
			_, err := b.Write(make([]byte, tt.available))
			require.NoError(t, err)
			assert.Same(t, before, storage(b))
		})
	}
	t.Run("absurd", func(t *testing.T) {
		b := filled(t, "abc")
		assert.Panics(t, func() { b.Grow(int(^uint(0) >> 1)) })
	})
}

func TestBufferCompactsBeforeGrowing(t *testing.T) {
	tests := []struct {
		name    string
		keep    int // readable bytes left before the write
		write   int
		samePtr bool
	}{
		{"little left: compacts", 10, 100, true},
		{"half left: compacts", 100, 100, true},
		{"most left: grows rather than move it all", 140, 100, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := new(Buffer)
			b.Grow(minAlloc - prependSize)
			c := b.Cap()
			_, err := b.Write(make([]byte, c-prependSize))
			require.NoError(t, err)
			b.Discard(b.Len() - tt.keep)
			before := storage(b)
			_, err = b.Write(bytes.Repeat([]byte{'w'}, tt.write))
			require.NoError(t, err)
			assert.Equal(t, tt.keep+tt.write, b.Len())
			assert.Equal(t, tt.samePtr, before == storage(b))
			if tt.samePtr {
				assert.Equal(t, c, b.Cap())
				assert.Equal(t, prependSize, b.r, "compaction keeps the prepend space")
			} else {
				assert.GreaterOrEqual(t, b.Cap(), 2*c, "growth doubles")
			}
			checkInvariants(t, b)
		})
	}
}

func TestBufferLimit(t *testing.T) {
	t.Run("NewBuffer", func(t *testing.T) {
		for _, limit := range []int{-1, 0} {
			b := NewBuffer(limit)
			_, err := b.Write(make([]byte, 10000))
			assert.NoError(t, err, "limit %d means none", limit)
		}
		b := NewBuffer(4)
		assert.Zero(t, b.Cap(), "no storage before the first write")
		_, err := b.WriteString("abcd")
		require.NoError(t, err)
		assert.ErrorIs(t, b.WriteByte('e'), ErrBufferFull)
		n, err := b.WriteString("e")
		assert.Equal(t, 0, n)
		assert.ErrorIs(t, err, ErrBufferFull)
		assert.ErrorIs(t, b.Prepend([]byte("e")), ErrBufferFull)
		assert.Equal(t, "abcd", string(b.Bytes()))
		b.Discard(1)
		assert.NoError(t, b.WriteByte('e'), "room again once consumed")
		assert.Equal(t, "bcde", string(b.Bytes()))
	})
	t.Run("storage stops growing at the limit", func(t *testing.T) {
		// Doubling would take 256 bytes to 512 and then 1024; the limit
		// stops it near 600 (plus the allocator's rounding).
		b := NewBuffer(600)
		for range 6 {
			_, err := b.Write(make([]byte, 100))
			require.NoError(t, err)
		}
		assert.GreaterOrEqual(t, b.Cap(), 600+prependSize)
		assert.Less(t, b.Cap(), 1024)
		b.Grow(1 << 20)
		assert.Less(t, b.Cap(), 1024, "Grow stops at the limit too")
	})
	t.Run("lowered below Len keeps the bytes", func(t *testing.T) {
		b := filled(t, "abcdef")
		b.SetLimit(3)
		assert.Equal(t, "abcdef", string(b.Bytes()))
		assert.ErrorIs(t, b.WriteByte('g'), ErrBufferFull)
		b.Discard(3)
		assert.ErrorIs(t, b.WriteByte('g'), ErrBufferFull, "exactly at the limit")
		b.Discard(1)
		assert.NoError(t, b.WriteByte('g'))
		b.SetLimit(0)
		_, err := b.Write(make([]byte, 1000))
		assert.NoError(t, err, "limit removed")
	})
	t.Run("Reset keeps the limit and the storage", func(t *testing.T) {
		b := NewBuffer(5)
		_, err := b.WriteString("abcde")
		require.NoError(t, err)
		before := storage(b)
		b.Reset()
		assert.Zero(t, b.Len())
		assert.Same(t, before, storage(b))
		_, err = b.WriteString("abcdef")
		assert.ErrorIs(t, err, ErrBufferFull)
	})
}

func TestBufferBorrow(t *testing.T) {
	mem := []byte("0123456789ABCDEF")
	orig := string(mem)

	t.Run("reads without copying", func(t *testing.T) {
		var b Buffer
		b.borrow(mem[:10])
		assert.Equal(t, "0123456789", string(b.Bytes()))
		assert.Same(t, &mem[0], storage(&b))
		assert.Zero(t, b.Available(), "no free space to write into")
		assert.Equal(t, 2, b.IndexByte('2'))
		assert.Equal(t, "012", string(b.Next(3)))
		assert.Equal(t, "3456789", string(b.Bytes()))
		b.Discard(b.Len())
		assert.Nil(t, b.buf, "emptied, it forgets the memory")
		assert.False(t, b.borrowed)
		assert.Equal(t, orig, string(mem))
	})
	writes := []struct {
		name string
		do   func(b *Buffer) error
		want string
	}{
		{"Write", func(b *Buffer) error { _, err := b.WriteString("x"); return err }, "3456789x"},
		{"WriteByte", func(b *Buffer) error { return b.WriteByte('x') }, "3456789x"},
		{"Prepend into consumed space", func(b *Buffer) error { return b.Prepend([]byte("xy")) }, "xy3456789"},
		{"Grow", func(b *Buffer) error { b.Grow(1); return nil }, "3456789"},
		{"readFD", func(b *Buffer) error {
			// spare is the borrowed memory itself, as in the event loop,
			// beyond what has been consumed: reading into it before
			// copying the borrowed bytes out would overwrite them.
			k := &fakeKernel{reads: []fakeRead{{data: []byte("xyz")}}}
			_, err := b.readFD(k, 3, mem[3:], make([][]byte, 2))
			return err
		}, "3456789xyz"},
	}
	for _, tt := range writes {
		t.Run(tt.name+" copies first", func(t *testing.T) {
			copy(mem, orig)
			var b Buffer
			b.borrow(mem[:10])
			b.Discard(3)
			require.NoError(t, tt.do(&b))
			assert.Equal(t, tt.want, string(b.Bytes()))
			assert.False(t, b.borrowed)
			assert.NotSame(t, &mem[0], storage(&b))
			if tt.name != "readFD" {
				assert.Equal(t, orig, string(mem), "lent memory untouched")
			}
			checkInvariants(t, &b)
		})
	}
	t.Run("Reset forgets the memory, keeps the limit", func(t *testing.T) {
		b := NewBuffer(4)
		b.borrow(mem[:10])
		assert.Equal(t, 10, b.Len(), "borrow ignores the limit")
		b.Reset()
		assert.Nil(t, b.buf)
		assert.Zero(t, b.Len())
		_, err := b.WriteString("abcde")
		assert.ErrorIs(t, err, ErrBufferFull)
	})
	t.Run("nothing", func(t *testing.T) {
		b := filled(t, "old")
		b.borrow(nil)
		assert.Zero(t, b.Len())
		assert.False(t, b.borrowed)
		checkInvariants(t, b)
	})
}

func TestBufferReadFD(t *testing.T) {
	hello := []byte("hello, world")
	long := bytes.Repeat([]byte("0123456789"), 100)
	tests := []struct {
		name      string
		before    string
		grow      int // Grow before the read
		limit     int
		spare     int
		reads     []fakeRead
		wantN     int
		wantErr   error
		want      string
		wantCalls int
	}{
		{
			name: "fits in the free space", grow: 100, spare: 0,
			reads: []fakeRead{{data: hello}}, wantN: len(hello), want: string(hello), wantCalls: 1,
		},
		{
			name: "spills into spare", before: "ab", spare: 2000,
			reads: []fakeRead{{data: long}}, wantN: len(long), want: "ab" + string(long), wantCalls: 1,
		},
		{
			name: "zero Buffer, all into spare", spare: 2000,
			reads: []fakeRead{{data: long}}, wantN: len(long), want: string(long), wantCalls: 1,
		},
		{
			name: "zero Buffer without spare grows", spare: 0,
			reads: []fakeRead{{data: hello}}, wantN: len(hello), want: string(hello), wantCalls: 1,
		},
		{
			name: "more than there is room for", before: "ab", spare: 100,
			reads: []fakeRead{{data: long}}, want: "ab" + string(long[:minAlloc-prependSize-2+100]),
			wantN: minAlloc - prependSize - 2 + 100, wantCalls: 1,
		},
		{
			name: "end of file", before: "ab", spare: 100,
			reads: []fakeRead{{}}, wantN: 0, want: "ab", wantCalls: 1,
		},
		{
			name: "EAGAIN passed through", before: "ab", spare: 100,
			reads: []fakeRead{{err: unix.EAGAIN}}, wantErr: unix.EAGAIN, want: "ab", wantCalls: 1,
		},
		{
			name: "ECONNRESET passed through", spare: 100,
			reads: []fakeRead{{err: unix.ECONNRESET}}, wantErr: unix.ECONNRESET, wantCalls: 1,
		},
		{
			name: "limit caps the read", before: "ab", limit: 7, spare: 100,
			reads: []fakeRead{{data: hello}}, wantN: 5, want: "abhello", wantCalls: 1,
		},
		{
			name: "limit caps the spare part", before: "ab", limit: 300, spare: 1000,
			reads: []fakeRead{{data: long}}, wantN: 298, want: "ab" + string(long[:298]), wantCalls: 1,
		},
		{
			name: "limit reached: no system call", before: "abc", limit: 3, spare: 100,
			reads: []fakeRead{{data: hello}}, wantErr: ErrBufferFull, want: "abc", wantCalls: 0,
		},
		{
			name: "limit and no spare", limit: 5, spare: 0,
			reads: []fakeRead{{data: hello}}, wantN: 5, want: "hello", wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := filled(t, tt.before)
			b.Grow(tt.grow)
			b.SetLimit(tt.limit)
			k := &fakeKernel{reads: tt.reads}
			iov := make([][]byte, 2)
			n, err := b.readFD(k, 7, make([]byte, tt.spare), iov)
			assert.Equal(t, tt.wantN, n)
			assert.Equal(t, tt.wantErr, err)
			assert.Equal(t, tt.want, string(b.Bytes()))
			assert.Equal(t, tt.wantCalls, k.readvCalls)
			if tt.wantCalls > 0 {
				assert.Positive(t, k.lastSpace, "readv with no room would look like EOF")
			}
			assert.Equal(t, [][]byte{nil, nil}, iov, "scratch cleared")
			checkInvariants(t, b)
		})
	}
}

func TestBufferReadFDSocket(t *testing.T) {
	// The real readv(2) over a socketpair: free space first, then spare.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer func() {
		assert.NoError(t, unix.Close(fds[0]))
		assert.NoError(t, unix.Close(fds[1]))
	}()
	msg := bytes.Repeat([]byte("abcdefghij"), 300) // 3000 bytes
	_, err = unix.Write(fds[1], msg)
	require.NoError(t, err)

	var k unixKernel
	b := filled(t, "xy")
	spare := make([]byte, 4096)
	iov := make([][]byte, 2)
	free := b.Available()
	n, err := b.readFD(k, fds[0], spare, iov)
	require.NoError(t, err)
	assert.Equal(t, len(msg), n)
	assert.Equal(t, "xy"+string(msg), string(b.Bytes()))
	assert.Equal(t, string(msg[free:free+10]), string(spare[:10]), "the rest went through spare")

	n, err = b.readFD(k, fds[0], spare, iov)
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, unix.EAGAIN)

	require.NoError(t, unix.Shutdown(fds[1], unix.SHUT_WR))
	n, err = b.readFD(k, fds[0], spare, iov)
	assert.Equal(t, 0, n)
	assert.NoError(t, err, "end of file is (0, nil)")

	n, err = b.writeFD(k, fds[0])
	require.NoError(t, err)
	assert.Equal(t, len(msg)+2, n)
	got := make([]byte, 4096)
	m, err := unix.Read(fds[1], got)
	require.NoError(t, err)
	assert.Equal(t, "xy"+string(msg), string(got[:m]))
}

func TestBufferWriteFD(t *testing.T) {
	tests := []struct {
		name      string
		content   string
		writeMax  int
		writeErr  error
		wantN     int
		wantErr   error
		left      string
		wantCalls int
	}{
		{name: "all", content: "hello", wantN: 5, wantCalls: 1},
		{name: "partial", content: "hello", writeMax: 2, wantN: 2, left: "llo", wantCalls: 1},
		{name: "EAGAIN", content: "hello", writeErr: unix.EAGAIN, wantErr: unix.EAGAIN, left: "hello", wantCalls: 1},
		{name: "EPIPE", content: "hello", writeErr: unix.EPIPE, wantErr: unix.EPIPE, left: "hello", wantCalls: 1},
		{name: "empty: no system call", content: "", wantCalls: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := filled(t, tt.content)
			k := &fakeKernel{writeMax: tt.writeMax, writeErr: tt.writeErr}
			n, err := b.writeFD(k, 7)
			assert.Equal(t, tt.wantN, n)
			assert.Equal(t, tt.wantErr, err)
			assert.Equal(t, tt.content[:tt.wantN], string(k.written))
			assert.Equal(t, tt.left, string(b.Bytes()))
			assert.Equal(t, tt.wantCalls, k.writeCalls)
		})
	}
}

func TestBufferPool(t *testing.T) {
	b := getBuffer()
	require.NotNil(t, b)
	assert.Zero(t, b.Len())
	b.SetLimit(3)
	_, err := b.WriteString("abc")
	require.NoError(t, err)
	putBuffer(b)

	b = getBuffer()
	assert.Zero(t, b.Len(), "pooled buffers come back empty")
	_, err = b.Write(make([]byte, 100))
	assert.NoError(t, err, "and without a limit")
	putBuffer(b)

	big := new(Buffer)
	big.Grow(maxPooledCap + 1)
	putBuffer(big)
	for range 10 {
		got := getBuffer()
		assert.NotSame(t, big, got, "a buffer grown past the bound is not pooled")
		assert.LessOrEqual(t, got.Cap(), maxPooledCap)
		defer putBuffer(got)
	}
	putBuffer(nil)
}

func TestBufferAllocs(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789abcdef"), 4)
	line := append(bytes.Repeat([]byte("x"), 4094), "\r\n"...)
	var b Buffer
	b.Grow(8192)

	spare := make([]byte, 65536)
	iov := make([][]byte, 2)
	chunk := bytes.Repeat([]byte("r"), 1000)
	reader := &fakeKernel{reads: []fakeRead{{data: chunk}}, cycle: true}
	writer := &fakeKernel{discard: true}
	filler := make([]byte, 65536)
	capacity := b.Cap()

	tests := []struct {
		name string
		fn   func()
	}{
		{"Write", func() { _, _ = b.Write(msg); b.Discard(len(msg)) }},
		{"WriteString", func() { _, _ = b.WriteString("hello, world"); b.Reset() }},
		{"WriteByte", func() { _ = b.WriteByte('x'); b.Reset() }},
		{"Next", func() { _, _ = b.Write(msg); _ = b.Next(len(msg)) }},
		{"Peek", func() { _, _ = b.Write(msg); _ = b.Peek(10); b.Reset() }},
		{"Prepend", func() { _, _ = b.Write(msg); _ = b.Prepend(msg[:4]); b.Reset() }},
		{"Read", func() { _, _ = b.Write(msg); _, _ = b.Read(filler[:10]); b.Reset() }},
		{"Index*", func() {
			_, _ = b.Write(line)
			_ = b.IndexCRLF()
			_ = b.IndexByte('\n')
			_ = b.Index(line[4090:])
			b.Reset()
		}},
		{"compaction", func() {
			_, _ = b.Write(filler[:b.Cap()-prependSize-10])
			b.Discard(b.Len() - 1)
			_, _ = b.Write(msg) // does not fit behind: compacts
			b.Reset()
		}},
		{"readFD into free space", func() { _, _ = b.readFD(reader, 3, spare, iov); b.Reset() }},
		{"readFD through spare", func() {
			// Leave 1 byte at the far end so that the read spills.
			_, _ = b.Write(filler[:b.Cap()-prependSize-100])
			b.Discard(b.Len() - 1)
			_, _ = b.readFD(reader, 3, spare, iov)
			b.Reset()
		}},
		{"writeFD", func() { _, _ = b.Write(msg); _, _ = b.writeFD(writer, 3) }},
		{"getBuffer/putBuffer", func() {
			p := getBuffer()
			_, _ = p.Write(msg)
			putBuffer(p)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Under -race sync.Pool drops a quarter of what it is given on
			// purpose; AllocsPerRun's whole-number average still reads 0.
			assert.Zero(t, testing.AllocsPerRun(200, tt.fn))
		})
	}
	assert.Equal(t, capacity, b.Cap(), "no step grew the buffer")
}

func BenchmarkBufferWriteNext(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(byteSize(size), func(b *testing.B) {
			msg := bytes.Repeat([]byte{'m'}, size)
			var buf Buffer
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				_, _ = buf.Write(msg)
				_ = buf.Next(size)
			}
		})
	}
}

func BenchmarkBufferIndexCRLF(b *testing.B) {
	// 4 KiB with the line end at the very end: a long header line, and the
	// worst case for the search, a stray '\r' every eight bytes.
	for _, bc := range []struct{ name, fill string }{
		{"plain", "abcdefgh"},
		{"stray-CR", "abc\rdefg"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var buf Buffer
			_, _ = buf.WriteString(strings.Repeat(bc.fill, 4096/8-1))
			_, _ = buf.WriteString("123456\r\n")
			want := buf.Len() - 2
			b.ReportAllocs()
			b.SetBytes(int64(buf.Len()))
			for b.Loop() {
				if buf.IndexCRLF() != want {
					b.Fatal("wrong index")
				}
			}
		})
	}
}

func BenchmarkBufferReadFD(b *testing.B) {
	const size = 4096
	k := &fakeKernel{reads: []fakeRead{{data: bytes.Repeat([]byte{'r'}, size)}}, cycle: true}
	spare := make([]byte, 65536)
	iov := make([][]byte, 2)
	var buf Buffer
	b.ReportAllocs()
	b.SetBytes(size)
	for b.Loop() {
		if n, err := buf.readFD(k, 3, spare, iov); n != size || err != nil {
			b.Fatalf("readFD = %d, %v", n, err)
		}
		buf.Discard(size)
	}
}

func byteSize(n int) string {
	if n%1024 == 0 {
		return strconv.Itoa(n/1024) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// A limit so large that limit+prependSize overflows (SetLimit(math.MaxInt),
// a natural way to say "no limit") must not change how the storage grows:
// the sum once wrapped negative, every growth became an exact fit, and
// writing 8 MiB in 4 KiB pieces took over a thousand reallocations instead
// of a dozen.
func TestBufferHugeLimitGrowsByDoubling(t *testing.T) {
	growths := func(limit int) int {
		b := NewBuffer(limit)
		chunk := make([]byte, 4<<10)
		n, last := 0, (*byte)(nil)
		for range (8 << 20) / len(chunk) {
			_, err := b.Write(chunk)
			require.NoError(t, err)
			if p := storage(b); p != last {
				n, last = n+1, p
			}
		}
		return n
	}
	unlimited := growths(0)
	assert.LessOrEqual(t, unlimited, 20)
	assert.Equal(t, unlimited, growths(math.MaxInt))
	assert.Equal(t, unlimited, growths(math.MaxInt-prependSize+1))
}
