// This file writes HTTP/1.1 responses by appending them to a byte slice: the
// server appends every response to a read's requests to one output buffer
// and flushes it once. Appending allocates only when dst must grow, so a
// connection whose output buffer has reached its working size writes
// responses without allocating.

package httpd

import (
	"strconv"
	"time"
)

// connHeader is what a response says about the connection (RFC 9112 §9.3).
type connHeader uint8

const (
	// connPersist sends no Connection header: an HTTP/1.1 client keeps the
	// connection by default.
	connPersist connHeader = iota
	// connClose sends "Connection: close": the server closes the connection
	// after this response, and says so, so the client does not send more
	// requests on it.
	connClose
	// connKeepAlive sends "Connection: keep-alive": an HTTP/1.0 client keeps
	// the connection only if the response says so (ab -k relies on it).
	connKeepAlive
)

// responseConn returns the Connection header for the response to r: close
// unless r.keepAlive, keep-alive for an HTTP/1.0 request that asked for it,
// nothing for HTTP/1.1, where persistence is the default.
func (r *request) responseConn() connHeader {
	switch {
	case !r.keepAlive:
		return connClose
	case r.minor == 0:
		return connKeepAlive
	}
	return connPersist
}

// appendResponse appends a complete HTTP/1.1 response to dst and returns the
// extended slice: the status line, a Date header if date is not empty (see
// dateCache), Content-Type if contentType is not empty, Content-Length, the
// Connection header conn calls for, and body.
//
// A status outside 100..599 (RFC 9110 §15) is sent as 500. Responses with
// status 1xx, 204 and 304 carry no body (RFC 9110 §6.4.1), so body is not
// written for them, nor is Content-Length (§8.6 forbids it for 1xx and 204,
// and for 304 it would have to be the length of a body not sent).
// contentType must be a valid field value; one holding a control character
// (CR, LF, ...) is left out rather than let it split the header.
//
// For the response to a HEAD request, which has no body but the headers a
// GET would get, use appendResponseHead with len(body).
func appendResponse(dst, date []byte, status int, contentType string, body []byte, conn connHeader) []byte {
	dst = appendResponseHead(dst, date, status, contentType, len(body), conn)
	if bodyAllowed(validStatus(status)) {
		dst = append(dst, body...)
	}
	return dst
}

// appendResponseHead appends the status line and headers of a response
// whose body is contentLength bytes long, and the empty line that ends them,
// but no body: for HEAD, or for a body the caller appends itself. Its rules
// are appendResponse's.
func appendResponseHead(dst, date []byte, status int, contentType string, contentLength int, conn connHeader) []byte {
	status = validStatus(status)
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, statusText(status)...)
	dst = append(dst, "\r\n"...)
	if len(date) > 0 {
		dst = append(dst, "Date: "...)
		dst = append(dst, date...)
		dst = append(dst, "\r\n"...)
	}
	if contentType != "" && validFieldValue(contentType) {
		dst = append(dst, "Content-Type: "...)
		dst = append(dst, contentType...)
		dst = append(dst, "\r\n"...)
	}
	if bodyAllowed(status) {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(contentLength), 10)
		dst = append(dst, "\r\n"...)
	}
	switch conn {
	case connClose:
		dst = append(dst, "Connection: close\r\n"...)
	case connKeepAlive:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	return append(dst, "\r\n"...)
}

func validStatus(status int) int {
	if status < 100 || status > 599 {
		return 500
	}
	return status
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != 204 && status != 304
}

func validFieldValue(v string) bool {
	for i := range len(v) {
		if !valueBytes[v[i]] {
			return false
		}
	}
	return true
}

// statusText returns the reason phrase of a status code, or "" for one this
// server does not know: the status line then ends in "NNN " followed by CRLF,
// which RFC 9112 §4 allows (the reason phrase is optional; the SP is not).
func statusText(status int) string {
	switch status {
	case 100:
		return "Continue"
	case 101:
		return "Switching Protocols"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 204:
		return "No Content"
	case 206:
		return "Partial Content"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 303:
		return "See Other"
	case 304:
		return "Not Modified"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 411:
		return "Length Required"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 417:
		return "Expectation Failed"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 505:
		return "HTTP Version Not Supported"
	}
	return ""
}

// imfFixdate is the layout of an HTTP date (RFC 9110 §5.6.7), always in GMT.
const imfFixdate = "Mon, 02 Jan 2006 15:04:05 GMT"

// dateCache holds the Date header value for the current second, so that a
// server answering many requests a second formats the date once a second
// rather than once a response (RFC 9110 §6.6.1: an origin server with a
// clock MUST send Date, to the second). It has no lock: each goroutine that
// writes responses keeps its own (one per event loop, or one per connection;
// it is 40 bytes). The zero value is ready to use.
type dateCache struct {
	unix  int64                 // the second buf holds
	valid bool                  // buf has been filled
	buf   [len(imfFixdate)]byte // e.g. "Sun, 06 Nov 1994 08:49:37 GMT"
}

// get returns the Date value for now, formatting it only if now is in a
// different second from the last call, or nil for a time outside the years
// 0000..9999 that an HTTP date can express. The result aliases c and is valid
// until the next get; it is meant to be passed straight to appendResponse,
// which copies it. now is a parameter so a test, or a server over a virtual
// clock, decides the date.
func (c *dateCache) get(now time.Time) []byte {
	sec := now.Unix()
	if !c.valid || sec != c.unix {
		// AppendFormat writes into buf in place for years 0000..9999. Any
		// other year does not fit IMF-fixdate's four digits (and would make
		// AppendFormat allocate): send no Date rather than a wrong one.
		out := now.UTC().AppendFormat(c.buf[:0], imfFixdate)
		if len(out) != len(c.buf) {
			c.valid = false
			return nil
		}
		c.unix, c.valid = sec, true
	}
	return c.buf[:]
}
