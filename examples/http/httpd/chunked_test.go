package httpd

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// decoded is what decoding a chunked body came to: how many bytes it
// consumed, the data, whether the body ended, and the error.
type decoded struct {
	n    int
	body string
	done bool
	err  error
}

// feedChunked decodes the concatenation of parts as a connection does:
// each part arrives as one read and is appended to what the calls before
// left unconsumed. It stops at the end of the body or at an error, and
// reports the bytes consumed in all.
func feedChunked(limit int64, parts ...[]byte) decoded {
	var d chunkedDecoder
	d.reset(limit)
	var pending, body []byte
	consumed := 0
	for _, p := range parts {
		pending = append(pending, p...)
		n, out, done, err := d.decode(body, pending)
		body = out
		consumed += n
		pending = pending[n:]
		if err != nil || done {
			return decoded{consumed, string(body), done, err}
		}
	}
	return decoded{consumed, string(body), false, nil}
}

// splitEverywhere returns in cut into two parts at k, for every k, and cut
// into single bytes.
func splitEverywhere(in []byte) [][][]byte {
	var splits [][][]byte
	for k := range len(in) + 1 {
		splits = append(splits, [][]byte{in[:k], in[k:]})
	}
	var bytewise [][]byte
	for i := range in {
		bytewise = append(bytewise, in[i:i+1])
	}
	return append(splits, bytewise)
}

// validChunked are chunked bodies that decode, each followed in tests by
// the start of a next request that the decoder must leave alone.
var validChunked = []struct {
	name, in, body string
}{
	{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"},
	{"empty body", "0\r\n\r\n", ""},
	{"several chunks, hex sizes both cases", "3\r\nabc\r\na\r\n0123456789\r\nB\r\n0123456789A\r\n0\r\n\r\n", "abc0123456789" + "0123456789A"},
	{"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello"},
	{"data holding CRLF and NUL", "6\r\n\r\n\x00\r\n\n\r\n0\r\n\r\n", "\r\n\x00\r\n\n"},
	{"extensions are ignored", "5;name=value\r\nhello\r\n4 ; a ;b=\"q s\"\r\n, wo\r\n0;last\r\n\r\n", "hello, wo"},
	{"extension after tab", "1\t;x\r\na\r\n0\r\n\r\n", "a"},
	{"trailer fields are discarded", "2\r\nhi\r\n0\r\nChecksum: abc\r\nX-Empty:\r\n\r\n", "hi"},
	{"trailer with OWS and obs-text", "0\r\nX:  caf\xc3\xa9 \t\r\n\r\n", ""},
}

func TestChunkedDecode(t *testing.T) {
	const next = "GET / HTTP/1.1\r\n"
	for _, tc := range validChunked {
		t.Run(tc.name, func(t *testing.T) {
			want := decoded{len(tc.in), tc.body, true, nil}
			in := []byte(tc.in + next)
			assert.Equal(t, want, feedChunked(maxBodyBytes, in), "whole")
			// However the body is split across reads, it decodes the same,
			// and until its last byte it is not done and not an error.
			for _, parts := range splitEverywhere(in) {
				require.Equal(t, want, feedChunked(maxBodyBytes, parts...), "split into %q", parts)
			}
			for k := range len(tc.in) {
				got := feedChunked(maxBodyBytes, []byte(tc.in[:k]))
				require.False(t, got.done, "prefix of %d bytes", k)
				require.NoError(t, got.err, "prefix of %d bytes", k)
				require.LessOrEqual(t, got.n, k)
			}
		})
	}
}

// Bodies back to back, as pipelined chunked requests put them: each
// decoder stops at its body's end.
func TestChunkedBackToBack(t *testing.T) {
	var in []byte
	for _, tc := range validChunked {
		in = append(in, tc.in...)
	}
	for _, tc := range validChunked {
		got := feedChunked(maxBodyBytes, in)
		require.NoError(t, got.err, tc.name)
		require.Equal(t, tc.body, got.body, tc.name)
		require.Equal(t, len(tc.in), got.n, tc.name)
		in = in[got.n:]
	}
	assert.Empty(t, in)
}

func TestChunkedMalformed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     string
		err    error
		status int
	}{
		{"empty size", "\r\nhello\r\n0\r\n\r\n", errChunkSize, 400},
		{"size not hex", "g\r\n", errChunkSize, 400},
		{"signed size", "+5\r\nhello\r\n0\r\n\r\n", errChunkSize, 400},
		{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", errChunkSize, 400},
		{"space before the size", " 5\r\nhello\r\n0\r\n\r\n", errChunkSize, 400},
		{"space after the size, no extension", "5 \r\nhello\r\n0\r\n\r\n", errChunkSize, 400},
		{"garbage after the size", "5x\r\nhello\r\n0\r\n\r\n", errChunkSize, 400},
		{"bare LF after the size", "5\nhello\r\n0\r\n\r\n", errBareLF, 400},
		{"bare CR after the size", "5\rhello\r\n0\r\n\r\n", errChunkSize, 400},
		{"control character in an extension", "5;a\x01b\r\nhello\r\n0\r\n\r\n", errChunkExt, 400},
		{"bare CR in an extension", "5;a\rb\r\nhello\r\n0\r\n\r\n", errChunkExt, 400},
		{"bare LF in the last chunk's extension", "0;a\n\r\n", errBareLF, 400},
		{"data longer than its size", "5\r\nhello!\r\n0\r\n\r\n", errChunkEnd, 400},
		{"data shorter than its size", "5\r\nhell\r\n0\r\n\r\n", errChunkEnd, 400},
		{"data ended by LF", "5\r\nhello\n0\r\n\r\n", errChunkEnd, 400},
		{"data ended by CR alone", "5\r\nhello\r0\r\n\r\n", errChunkEnd, 400},
		{"no empty line after the last chunk", "0\r\nGET / HTTP/1.1\r\n\r\n", errNoColon, 400},
		{"trailer ended by bare LF", "0\r\nX: y\n\r\n", errBareLF, 400},
		{"trailer section ended by bare LF", "0\r\nX: y\r\n\n", errBareLF, 400},
		{"trailer without colon", "0\r\nX y\r\n\r\n", errNoColon, 400},
		{"trailer obs-fold", "0\r\nX: y\r\n z\r\n\r\n", errObsFold, 400},
		{"trailer with a control character", "0\r\nX: a\x00b\r\n\r\n", errHeaderValue, 400},
		{"trailer with an empty name", "0\r\n: y\r\n\r\n", errHeaderName, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := feedChunked(maxBodyBytes, []byte(tc.in))
			require.ErrorIs(t, got.err, tc.err)
			assert.False(t, got.done)
			assert.Equal(t, tc.status, errorStatus(got.err))
			// The fault is found wherever the input is split.
			for _, parts := range splitEverywhere([]byte(tc.in)) {
				require.Equal(t, got, feedChunked(maxBodyBytes, parts...), "split into %q", parts)
			}
		})
	}
}

// chunkedOf returns a chunked body holding data in chunks of at most size
// bytes, the last chunk-size line extended by ext, and the trailer lines.
func chunkedOf(data string, size int, ext string, trailer ...string) string {
	var b strings.Builder
	for len(data) > 0 {
		n := min(size, len(data))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, data[:n])
		data = data[n:]
	}
	b.WriteString("0" + ext + "\r\n")
	for _, l := range trailer {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func TestChunkedLimits(t *testing.T) {
	const limit = 100
	at := strings.Repeat("d", limit)
	// sizeLine returns a chunk-size line of exactly n bytes, CRLF included,
	// for a chunk of size 1 padded with leading zeros.
	sizeLine := func(n int) string { return strings.Repeat("0", n-3) + "1\r\n" }
	// trailerOf returns a trailer section of exactly n bytes, its final
	// CRLF included, as one field line.
	trailerOf := func(n int) []string {
		return []string{"X: " + strings.Repeat("t", n-len("X: \r\n\r\n"))}
	}
	for _, tc := range []struct {
		name string
		in   string
		err  error // nil: decodes whole
	}{
		{"body at the limit, one chunk", chunkedOf(at, limit, ""), nil},
		{"body at the limit, many chunks", chunkedOf(at, 7, ""), nil},
		{"body over the limit, one chunk", chunkedOf(at+"d", limit+1, ""), errBodyTooLarge},
		{"body over the limit, many chunks", chunkedOf(at+"d", 7, ""), errBodyTooLarge},
		// The size line says it: the data need not arrive.
		{"chunk size over the limit", "65\r\n", errBodyTooLarge},
		{"chunk size of 40 hex digits", strings.Repeat("f", 40) + "\r\n", errBodyTooLarge},
		{"size line at its bound", sizeLine(maxChunkLineBytes) + "d\r\n0\r\n\r\n", nil},
		{"size line over its bound", sizeLine(maxChunkLineBytes+1) + "d\r\n0\r\n\r\n", errChunkLine},
		{"unended size line at its bound", strings.Repeat("0", maxChunkLineBytes), errChunkLine},
		{"last chunk's extension at its bound", "0;" + strings.Repeat("e", maxChunkLineBytes-4) + "\r\n\r\n", nil},
		{"last chunk's extension over its bound", "0;" + strings.Repeat("e", maxChunkLineBytes-3) + "\r\n\r\n", errChunkLine},
		{"trailer section at its bound", chunkedOf("", 1, "", trailerOf(maxHeaderBytes)...), nil},
		{"trailer section over its bound", chunkedOf("", 1, "", trailerOf(maxHeaderBytes+1)...), errTrailerTooLarge},
		{"unended trailer section at its bound", "0\r\nX: y\r\nX: " + strings.Repeat("y", maxHeaderBytes), errTrailerTooLarge},
		{"trailer lines at their bound", chunkedOf("", 1, "", strings.Split(strings.Repeat("X: y,", maxHeaders-1)+"X: y", ",")...), nil},
		{"trailer lines over their bound", chunkedOf("", 1, "", strings.Split(strings.Repeat("X: y,", maxHeaders)+"X: y", ",")...), errTooManyTrailers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := feedChunked(limit, []byte(tc.in))
			if tc.err != nil {
				require.ErrorIs(t, got.err, tc.err)
				assert.False(t, got.done)
				return
			}
			require.NoError(t, got.err)
			assert.True(t, got.done)
			assert.Equal(t, len(tc.in), got.n)
		})
	}
	assert.Equal(t, 413, errorStatus(errBodyTooLarge))
	assert.Equal(t, 431, errorStatus(errTrailerTooLarge))
}

// A body may carry framing beyond its data only up to maxChunkOverhead:
// small chunks with short size lines are free, long extensions are not.
func TestChunkedOverhead(t *testing.T) {
	// 64 KiB in 1-byte chunks: 5 bytes of framing per byte of data, all of
	// it paid for.
	data := strings.Repeat("x", 64<<10)
	got := feedChunked(maxBodyBytes, []byte(chunkedOf(data, 1, "")))
	require.NoError(t, got.err)
	assert.Equal(t, data, got.body)

	// Each 1-byte chunk with a 100-byte extension leaves about 85 bytes
	// unpaid: the body fails once they pass 16 KiB, at the same chunk
	// however it is split.
	ext := ";" + strings.Repeat("e", 99)
	var in strings.Builder
	chunks := 0
	for ; in.Len() < 4*maxChunkOverhead; chunks++ {
		in.WriteString("1" + ext + "\r\nx\r\n")
	}
	got = feedChunked(maxBodyBytes, []byte(in.String()))
	require.ErrorIs(t, got.err, errChunkOverhead)
	assert.Equal(t, 400, errorStatus(got.err))
	perChunk := len("1"+ext+"\r\n") - 16 - 2
	assert.Equal(t, maxChunkOverhead/perChunk, len(got.body), "data of the chunks before the one that went over")
	assert.Less(t, len(got.body), chunks)
}

// Decoding into a body buffer that is large enough allocates nothing.
func TestChunkedAllocations(t *testing.T) {
	in := []byte(validChunked[2].in)
	body := make([]byte, 0, 64)
	var d chunkedDecoder
	allocs := testing.AllocsPerRun(100, func() {
		d.reset(maxBodyBytes)
		_, body, _, _ = d.decode(body[:0], in)
	})
	assert.Zero(t, allocs)
}

// FuzzChunked checks, for any input and body limit, the properties the
// server relies on: decode never panics and never consumes more than it
// is given; the outcome is the same however the input is split across
// reads (in two at any byte, or byte by byte); bytes after the body change
// nothing; a decoded body is within the limit; and a body written back out
// as one chunk decodes to the same data.
func FuzzChunked(f *testing.F) {
	for _, tc := range validChunked {
		f.Add([]byte(tc.in), uint16(100))
	}
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), uint16(4))
	f.Add([]byte("5\r\nhello\r\n0\r\nX: y\r\n\r\nGET / HTTP/1.1\r\n"), uint16(5))
	f.Add([]byte("5;\x00\r\nhello\r\n0\r\n\r\n"), uint16(10))
	f.Add([]byte("5\nhello\r\n0\r\n\r\n"), uint16(10))
	f.Add([]byte("ffffffffffffffffffffffffff\r\n"), uint16(10))
	f.Add([]byte("1\r\nx\r\n1\r\ny\r\n0\r\n"+strings.Repeat("A: b\r\n", 70)+"\r\n"), uint16(2))

	garbage := []byte("\r\n0\r\n\r\nGARBAGE\n")
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		lim := int64(limit)
		whole := feedChunked(lim, in)
		require.LessOrEqual(t, whole.n, len(in))
		require.False(t, whole.done && whole.err != nil)
		require.LessOrEqual(t, int64(len(whole.body)), lim)

		for k := range len(in) + 1 {
			require.Equal(t, whole, feedChunked(lim, in[:k], in[k:]), "split at %d", k)
		}
		var bytewise [][]byte
		for i := range in {
			bytewise = append(bytewise, in[i:i+1])
		}
		require.Equal(t, whole, feedChunked(lim, bytewise...), "byte by byte")

		if whole.err != nil || whole.done {
			// Decided by the bytes up to the end or the fault.
			more := append(in[:len(in):len(in)], garbage...)
			require.Equal(t, whole, feedChunked(lim, more), "changed by bytes after it")
		}
		if whole.done {
			again := strconv.FormatInt(int64(len(whole.body)), 16) + "\r\n" + whole.body + "\r\n0\r\n\r\n"
			if whole.body == "" {
				again = "0\r\n\r\n"
			}
			require.Equal(t, decoded{len(again), whole.body, true, nil}, feedChunked(lim, []byte(again)))
		}
	})
}

// The decoder's bytes-per-call economy: a body arriving a byte at a time
// keeps at most one line unconsumed.
func TestChunkedKeepsAtMostALine(t *testing.T) {
	in := []byte(chunkedOf(strings.Repeat("z", 300), 50, ";ext=1", "T: v"))
	var d chunkedDecoder
	d.reset(maxBodyBytes)
	var pending, body []byte
	longest := 0
	for i := range in {
		pending = append(pending, in[i])
		n, out, done, err := d.decode(body, pending)
		require.NoError(t, err)
		body = out
		pending = pending[n:]
		longest = max(longest, len(pending))
		if done {
			require.Equal(t, len(in)-1, i)
		}
	}
	assert.Equal(t, strings.Repeat("z", 300), string(body))
	assert.Empty(t, pending)
	assert.Equal(t, len("0;ext=1\r"), longest, "the longest line, less its LF")
	assert.True(t, bytes.HasPrefix(in, []byte("32\r\n")))
}
