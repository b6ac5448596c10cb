package main

import (
	"bytes"
	"errors"
)

// maxHeaderBytes bounds the request line plus headers; a client that sends
// more without finishing them is refused rather than buffered without limit.
const maxHeaderBytes = 8 << 10

var (
	errIncomplete     = errors.New("incomplete request")
	errBadRequest     = errors.New("malformed request")
	errHeaderTooLarge = errors.New("request header too large")
	errUnsupported    = errors.New("unsupported transfer encoding")
)

// request is what the server needs from one parsed HTTP/1.x request. Method
// and path alias the connection's input and are valid only until it is
// consumed.
type request struct {
	method, path []byte
	keepAlive    bool // false: answer, then close
	size         int  // bytes of input the request occupies, body included
}

// parseRequest parses the first request in b. It returns errIncomplete when b
// holds only a prefix of a valid request (more input is needed), and another
// error when b cannot begin a valid request (answer 400 and close).
//
// It checks what RFC 9112 asks a server to check before trusting the framing:
// the request line's three parts, header field syntax, and the body length
// (Content-Length, which must be a plain decimal and agree when repeated). A
// chunked body is refused, since no benchmark client sends one and guessing
// its framing would be worse than a clear error.
func parseRequest(b []byte) (request, error) {
	var r request
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > maxHeaderBytes {
			return r, errHeaderTooLarge
		}
		return r, errIncomplete
	}
	if end+4 > maxHeaderBytes {
		return r, errHeaderTooLarge
	}
	head := b[:end+2] // every line, each with its CRLF
	eol := bytes.Index(head, []byte("\r\n"))
	line := head[:eol]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return r, errBadRequest
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return r, errBadRequest
	}
	r.method = line[:sp1]
	r.path = line[sp1+1 : sp1+1+sp2]
	version := line[sp1+1+sp2+1:]
	switch string(version) {
	case "HTTP/1.1":
		r.keepAlive = true
	case "HTTP/1.0":
		r.keepAlive = false
	default:
		return r, errBadRequest
	}
	if !isToken(r.method) {
		return r, errBadRequest
	}
	contentLength := -1
	for rest := head[eol+2:]; len(rest) > 0; {
		i := bytes.Index(rest, []byte("\r\n"))
		field := rest[:i]
		rest = rest[i+2:]
		colon := bytes.IndexByte(field, ':')
		if colon <= 0 || !isToken(field[:colon]) {
			return r, errBadRequest // also rejects obsolete line folding
		}
		name, value := field[:colon], bytes.Trim(field[colon+1:], " \t")
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := parseDecimal(value)
			if !ok || (contentLength >= 0 && n != contentLength) {
				return r, errBadRequest
			}
			contentLength = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return r, errUnsupported
		case bytes.EqualFold(name, []byte("Connection")):
			if hasToken(value, "close") {
				r.keepAlive = false
			} else if hasToken(value, "keep-alive") {
				r.keepAlive = true
			}
		}
	}
	r.size = end + 4
	if contentLength > 0 {
		if contentLength > maxHeaderBytes {
			return r, errBadRequest // this server takes no bodies worth keeping
		}
		r.size += contentLength
		if len(b) < r.size {
			return r, errIncomplete
		}
	}
	return r, nil
}

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0:
		default:
			return false
		}
	}
	return true
}

// parseDecimal parses a non-negative decimal of at most 9 digits.
func parseDecimal(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// hasToken reports whether the comma-separated list v holds tok, ignoring
// case and surrounding spaces.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if bytes.EqualFold(bytes.Trim(item, " \t"), []byte(tok)) {
			return true
		}
	}
	return false
}
