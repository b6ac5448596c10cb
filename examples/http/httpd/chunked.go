// This file decodes chunked request bodies (RFC 9112 §7.1), which clients
// send when they do not know a body's length in advance: Go's http.Post with
// a streaming body, Python requests with a generator, curl with
// "Transfer-Encoding: chunked". A chunked body is a series of chunks, each a
// chunk-size line (the size in hex, optional extensions, CRLF), that many
// bytes of data and a CRLF; a chunk of size 0 ends it, followed by the
// trailer section (field lines, like headers) and an empty line.
//
// The decoder is incremental: it consumes the body as it arrives, read by
// read, keeping its place between calls, so a connection holds at most one
// unfinished line of it in its input, never the whole body. Data is copied
// out into the caller's body buffer; extensions are checked and ignored;
// trailer fields are checked and discarded. It is as strict as the head
// parser: lines end in CRLF, nothing else, and every size is bounded (the
// body by the server's limit, a chunk-size line by maxChunkLineBytes, the
// trailer section by maxHeaderBytes and maxHeaders, and the framing as a
// whole by maxChunkOverhead).

package httpd

import (
	"bytes"
	"fmt"
)

// Limits of a chunked body beyond its size.
const (
	// maxChunkLineBytes bounds a chunk-size line, extensions and CRLF
	// included: a longer one is errChunkLine (400). Real clients send a
	// few hex digits and no extensions; 4 KiB is Go's net/http bound.
	maxChunkLineBytes = 4 << 10
	// maxChunkOverhead bounds the framing a body may carry beyond what its
	// data pays for. Every chunk may spend 16 bytes plus twice its size on
	// its chunk-size line at no cost; only lines longer than that (long
	// extensions or runs of leading zeros on small chunks) count, and once
	// they add up to more than this the body is errChunkOverhead (400).
	// Without it a client could send gigabytes of extensions around one
	// megabyte of data. The rule is the one Go's net/http applies.
	maxChunkOverhead = 16 << 10
)

// The errors of a malformed chunked body, each wrapping errMalformed (400),
// and of an oversized trailer section, wrapping errHeaderTooLarge (431).
// A chunk over the body limit is errBodyTooLarge (413). Syntax errors in a
// trailer field line are those of a header line (errObsFold, errNoColon,
// ...), and a bare LF anywhere is errBareLF.
var (
	errChunkSize       = fmt.Errorf("%w: invalid chunk size", errMalformed)
	errChunkExt        = fmt.Errorf("%w: invalid chunk extension", errMalformed)
	errChunkLine       = fmt.Errorf("%w: chunk-size line longer than %d bytes", errMalformed, maxChunkLineBytes)
	errChunkEnd        = fmt.Errorf("%w: chunk data not followed by CRLF", errMalformed)
	errChunkOverhead   = fmt.Errorf("%w: chunked body carries more than %d bytes of framing beyond its data", errMalformed, maxChunkOverhead)
	errTrailerTooLarge = fmt.Errorf("%w: trailer section longer than %d bytes", errHeaderTooLarge, maxHeaderBytes)
	errTooManyTrailers = fmt.Errorf("%w: more than %d trailer lines", errHeaderTooLarge, maxHeaders)
)

// chunkPhase is where in a chunked body the decoder stands.
type chunkPhase uint8

const (
	phaseSize    chunkPhase = iota // at the start of a chunk-size line
	phaseData                      // inside a chunk's data
	phaseDataEnd                   // at the CRLF that ends a chunk's data
	phaseTrailer                   // at a trailer field line or the empty line that ends the body
	phaseDone                      // the body has ended
)

// chunkedDecoder decodes one chunked body across any number of calls to
// decode. It holds no pointer and allocates nothing itself; it belongs to
// whoever feeds it (a connection's loop goroutine, in the server). The zero
// value is not ready: call reset with the body limit first.
type chunkedDecoder struct {
	phase   chunkPhase
	left    int64 // data bytes of the current chunk still to come (phaseData)
	size    int64 // data bytes decoded so far: the body's length
	limit   int64 // the most size may reach
	excess  int64 // framing bytes not paid for by data (see maxChunkOverhead)
	trailer int   // bytes of the trailer section so far
	fields  int   // trailer field lines so far
}

// reset readies d for a new body of at most limit bytes.
func (d *chunkedDecoder) reset(limit int64) { *d = chunkedDecoder{limit: limit} }

// decode decodes as much of the chunked body at the front of in as it can,
// appending the chunks' data to body. It returns how many bytes of in it
// consumed, body extended, and done once the body has ended, the trailer
// section's empty line consumed: the bytes after in[:n] are the next
// request's, and decode has not looked at them.
//
// When in ends inside a chunk-size line, a trailer line or the CRLF after a
// chunk's data, decode consumes up to the start of it and returns with done
// false and no error: the caller keeps in[n:] and calls again with it and
// the bytes that follow. Chunk data is consumed as far as it goes. So the
// input to keep is never longer than one line, and the outcome depends only
// on the bytes, not on how they were split into calls: a line already longer
// than its bound is an error even before its end arrives.
//
// An error is for errorStatus: errBodyTooLarge (413) as soon as a chunk-size
// line announces more data than the limit leaves, errHeaderTooLarge (431)
// for a trailer section over its bounds, and errMalformed (400) for the
// rest. After an error, or once done, d must be reset before it is used
// again.
func (d *chunkedDecoder) decode(body, in []byte) (n int, out []byte, done bool, err error) {
	for n < len(in) {
		switch d.phase {
		case phaseSize:
			line, next, err := cutLine(in, n, maxChunkLineBytes, errChunkLine)
			if err != nil || next == n {
				return n, body, false, err
			}
			size, err := parseChunkSize(line, d.limit)
			if err != nil {
				return n, body, false, err
			}
			if size > d.limit-d.size {
				return n, body, false, errBodyTooLarge
			}
			d.excess += int64(next - n)
			if size > 0 {
				d.excess -= 16 + 2*size
			}
			d.excess = max(d.excess, 0)
			if d.excess > maxChunkOverhead {
				return n, body, false, errChunkOverhead
			}
			n = next
			if size == 0 {
				d.phase = phaseTrailer
			} else {
				d.phase, d.left = phaseData, size
			}
		case phaseData:
			m := int(min(d.left, int64(len(in)-n)))
			body = append(body, in[n:n+m]...)
			n += m
			d.left -= int64(m)
			d.size += int64(m)
			if d.left == 0 {
				d.phase = phaseDataEnd
			}
		case phaseDataEnd:
			if in[n] != '\r' {
				return n, body, false, errChunkEnd
			}
			if n+1 == len(in) {
				return n, body, false, nil
			}
			if in[n+1] != '\n' {
				return n, body, false, errChunkEnd
			}
			n += 2
			d.phase = phaseSize
		case phaseTrailer:
			// The trailer section, its empty line included, has what is
			// left of maxHeaderBytes.
			line, next, err := cutLine(in, n, maxHeaderBytes-d.trailer, errTrailerTooLarge)
			if err != nil || next == n {
				return n, body, false, err
			}
			if len(line) == 0 {
				d.phase = phaseDone
				return next, body, true, nil
			}
			if d.fields == maxHeaders {
				return n, body, false, errTooManyTrailers
			}
			if _, _, err := splitField(line); err != nil {
				return n, body, false, err
			}
			d.fields++
			d.trailer += next - n
			n = next
		case phaseDone:
			return n, body, true, nil
		}
	}
	return n, body, d.phase == phaseDone, nil
}

// cutLine returns the line of in that starts at pos, without its CRLF, and
// the position after the CRLF. The line, CRLF included, may be at most max
// bytes long: if max bytes from pos hold no LF, it returns tooLong. If the
// line is unfinished but may still end within max, it returns next == pos.
// A line must end in CRLF: a bare LF is errBareLF.
func cutLine(in []byte, pos, max int, tooLong error) (line []byte, next int, err error) {
	window := in[pos:]
	if len(window) > max {
		window = window[:max]
	}
	i := bytes.IndexByte(window, '\n')
	if i < 0 {
		if len(window) >= max {
			return nil, pos, tooLong
		}
		return nil, pos, nil
	}
	if i == 0 || window[i-1] != '\r' {
		return nil, pos, errBareLF
	}
	return window[:i-1], pos + i + 1, nil
}

// parseChunkSize parses a chunk-size line without its CRLF: chunk-size
// [ chunk-ext ] (RFC 9112 §7.1.1). The size is 1*HEXDIG, any number of
// leading zeros allowed; once it is past limit its exact value no longer
// matters (the body is too large), so accumulation stops there and no
// length of digits overflows. Extensions are BWS ";" and the rest of the
// line, which is checked to hold no control character (but HTAB) and
// otherwise ignored: the server gives no extension a meaning.
func parseChunkSize(line []byte, limit int64) (int64, error) {
	var size int64
	i := 0
	for ; i < len(line); i++ {
		v, ok := hexValue(line[i])
		if !ok {
			break
		}
		if size <= limit {
			size = size<<4 | int64(v)
		}
	}
	if i == 0 {
		return 0, errChunkSize
	}
	ext := trimOWS(line[i:])
	if len(ext) == 0 {
		if i < len(line) {
			return 0, errChunkSize // whitespace after the size, no ';'
		}
		return size, nil
	}
	if ext[0] != ';' {
		return 0, errChunkSize
	}
	for _, c := range ext {
		if !valueBytes[c] {
			return 0, errChunkExt
		}
	}
	return size, nil
}

// hexValue returns the value of the hex digit c.
func hexValue(c byte) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case 'a' <= lower(c) && lower(c) <= 'f':
		return lower(c) - 'a' + 10, true
	}
	return 0, false
}
