package httpd

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parsed is a request copied into comparable values, so tests can compare a
// whole request at once and keep it after the input changes.
type parsed struct {
	Method, Target, Path, Query, Proto string
	HasQuery                           bool
	Major, Minor                       int
	Host                               string
	HasHost                            bool
	ContentLength                      int64
	Body                               string
	Chunked, ExpectContinue            bool
	KeepAlive                          bool
	Headers                            []string // "name: value"
}

func snapshot(r *request) parsed {
	p := parsed{
		Method: string(r.method), Target: string(r.target), Path: string(r.path),
		Query: string(r.query), HasQuery: r.query != nil, Proto: string(r.proto),
		Major: r.major, Minor: r.minor, Host: string(r.host), HasHost: r.host != nil,
		ContentLength: r.contentLength, Body: string(r.body), KeepAlive: r.keepAlive,
		Chunked: r.chunked, ExpectContinue: r.expectContinue,
	}
	for _, h := range r.fields() {
		p.Headers = append(p.Headers, string(h.name)+": "+string(h.value))
	}
	return p
}

const wrkGET = "GET /plaintext HTTP/1.1\r\n" +
	"Host: 127.0.0.1:8080\r\n" +
	"User-Agent: wrk/4.2.0\r\n" +
	"Accept: text/plain,text/html;q=0.9,*/*;q=0.8\r\n" +
	"Connection: keep-alive\r\n" +
	"\r\n"

// validRequests are requests that parse, with what they parse to. Each is
// also used whole, in every prefix, pipelined, and as a fuzz seed.
var validRequests = []struct {
	name string
	in   string
	want parsed
}{
	{
		name: "minimal GET",
		in:   "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		want: parsed{Method: "GET", Target: "/", Path: "/", Proto: "HTTP/1.1", Major: 1, Minor: 1,
			Host: "a", HasHost: true, KeepAlive: true, Headers: []string{"Host: a"}},
	},
	{
		name: "wrk GET",
		in:   wrkGET,
		want: parsed{Method: "GET", Target: "/plaintext", Path: "/plaintext", Proto: "HTTP/1.1", Major: 1, Minor: 1,
			Host: "127.0.0.1:8080", HasHost: true, KeepAlive: true, Headers: []string{
				"Host: 127.0.0.1:8080", "User-Agent: wrk/4.2.0",
				"Accept: text/plain,text/html;q=0.9,*/*;q=0.8", "Connection: keep-alive"}},
	},
	{
		name: "POST with body",
		in:   "POST /submit?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
		want: parsed{Method: "POST", Target: "/submit?x=1&y=2", Path: "/submit", Query: "x=1&y=2", HasQuery: true,
			Proto: "HTTP/1.1", Major: 1, Minor: 1, Host: "example.com", HasHost: true, ContentLength: 11,
			Body: "hello world", KeepAlive: true, Headers: []string{
				"Host: example.com", "Content-Type: text/plain", "Content-Length: 11"}},
	},
	{
		name: "OWS trimmed, names case-insensitive, empty query, Content-Length 0",
		in:   "PUT /p? HTTP/1.1\r\nhOsT:\t h \t\r\ncontent-LENGTH:  0\r\nX-Empty:\r\nX-Inner: a  b\r\n\r\n",
		want: parsed{Method: "PUT", Target: "/p?", Path: "/p", Query: "", HasQuery: true, Proto: "HTTP/1.1",
			Major: 1, Minor: 1, Host: "h", HasHost: true, KeepAlive: true, Headers: []string{
				"hOsT: h", "content-LENGTH: 0", "X-Empty: ", "X-Inner: a  b"}},
	},
	{
		name: "leading empty lines are skipped",
		in:   "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		want: parsed{Method: "GET", Target: "/", Path: "/", Proto: "HTTP/1.1", Major: 1, Minor: 1,
			Host: "a", HasHost: true, KeepAlive: true, Headers: []string{"Host: a"}},
	},
	{
		name: "HTTP/1.0 without Host closes by default",
		in:   "GET /index.html HTTP/1.0\r\n\r\n",
		want: parsed{Method: "GET", Target: "/index.html", Path: "/index.html", Proto: "HTTP/1.0", Major: 1},
	},
	{
		name: "HTTP/1.0 keep-alive",
		in:   "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
		want: parsed{Method: "GET", Target: "/", Path: "/", Proto: "HTTP/1.0", Major: 1, KeepAlive: true,
			Headers: []string{"Connection: Keep-Alive"}},
	},
	{
		name: "HTTP/1.0 keep-alive and close: close wins",
		in:   "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: foo, close\r\n\r\n",
		want: parsed{Method: "GET", Target: "/", Path: "/", Proto: "HTTP/1.0", Major: 1,
			Headers: []string{"Connection: keep-alive", "Connection: foo, close"}},
	},
	{
		name: "HTTP/1.1 Connection: close",
		in:   "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, CLOSE\r\n\r\n",
		want: parsed{Method: "GET", Target: "/", Path: "/", Proto: "HTTP/1.1", Major: 1, Minor: 1,
			Host: "a", HasHost: true, Headers: []string{"Host: a", "Connection: upgrade, CLOSE"}},
	},
	{
		name: "HTTP/1.1 Connection: keep-alive changes nothing",
		in:   "GET / HTTP/1.1\r\nConnection: keep-alive\r\nHost: a\r\n\r\n",
		want: parsed{Method: "GET", Target: "/", Path: "/", Proto: "HTTP/1.1", Major: 1, Minor: 1,
			Host: "a", HasHost: true, KeepAlive: true, Headers: []string{"Connection: keep-alive", "Host: a"}},
	},
	{
		name: "absolute-form: the target's authority is the host",
		in:   "GET http://example.org:8080/p/q?r HTTP/1.1\r\nHost: other\r\n\r\n",
		want: parsed{Method: "GET", Target: "http://example.org:8080/p/q?r", Path: "/p/q", Query: "r", HasQuery: true,
			Proto: "HTTP/1.1", Major: 1, Minor: 1, Host: "example.org:8080", HasHost: true, KeepAlive: true,
			Headers: []string{"Host: other"}},
	},
	{
		name: "absolute-form without a path",
		in:   "GET https://[::1] HTTP/1.1\r\nHost: [::1]\r\n\r\n",
		want: parsed{Method: "GET", Target: "https://[::1]", Proto: "HTTP/1.1", Major: 1, Minor: 1,
			Host: "[::1]", HasHost: true, KeepAlive: true, Headers: []string{"Host: [::1]"}},
	},
	{
		name: "asterisk-form",
		in:   "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		want: parsed{Method: "OPTIONS", Target: "*", Path: "*", Proto: "HTTP/1.1", Major: 1, Minor: 1,
			Host: "a", HasHost: true, KeepAlive: true, Headers: []string{"Host: a"}},
	},
	{
		name: "authority-form",
		in:   "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n",
		want: parsed{Method: "CONNECT", Target: "example.org:443", Proto: "HTTP/1.1", Major: 1, Minor: 1,
			Host: "example.org:443", HasHost: true, KeepAlive: true, Headers: []string{"Host: example.org:443"}},
	},
	{
		name: "empty Host, extension method, obs-text in a value",
		in:   "PURGE /x HTTP/1.1\r\nHost:\r\nX-Name: caf\xc3\xa9\r\n\r\n",
		want: parsed{Method: "PURGE", Target: "/x", Path: "/x", Proto: "HTTP/1.1", Major: 1, Minor: 1,
			Host: "", HasHost: true, KeepAlive: true, Headers: []string{"Host: ", "X-Name: caf\xc3\xa9"}},
	},
}

func TestParseValid(t *testing.T) {
	for _, tc := range validRequests {
		t.Run(tc.name, func(t *testing.T) {
			var req request
			n, err := parseRequest([]byte(tc.in), &req)
			require.NoError(t, err)
			assert.Equal(t, len(tc.in), n)
			assert.Equal(t, tc.want, snapshot(&req))
		})
	}
}

// Every proper prefix of a valid request is incomplete, never an error or a
// success: the parser must not answer before the request is all there.
func TestParseEveryPrefixNeedsMore(t *testing.T) {
	for _, tc := range validRequests {
		t.Run(tc.name, func(t *testing.T) {
			var req request
			for k := range len(tc.in) {
				n, err := parseRequest([]byte(tc.in[:k]), &req)
				assert.ErrorIs(t, err, errNeedMore, "prefix of %d bytes: %q", k, tc.in[:k])
				assert.Zero(t, n, "prefix of %d bytes", k)
			}
		})
	}
}

// All the valid requests back to back in one buffer, as a pipelining client
// sends them, followed by half of the first one again: the loop a server
// runs finds each at its offset and stops at the incomplete tail.
func TestParsePipelined(t *testing.T) {
	var in []byte
	var offsets []int
	for _, tc := range validRequests {
		offsets = append(offsets, len(in))
		in = append(in, tc.in...)
	}
	whole := len(in)
	in = append(in, validRequests[0].in[:len(validRequests[0].in)/2]...)

	var req request
	off := 0
	for i, tc := range validRequests {
		require.Equal(t, offsets[i], off, "request %d (%s) starts where the one before ended", i, tc.name)
		n, err := parseRequest(in[off:], &req)
		require.NoError(t, err, "request %d (%s)", i, tc.name)
		assert.Equal(t, tc.want, snapshot(&req), "request %d (%s)", i, tc.name)
		off += n
	}
	assert.Equal(t, whole, off, "consumed exactly the complete requests")
	n, err := parseRequest(in[off:], &req)
	assert.ErrorIs(t, err, errNeedMore)
	assert.Zero(t, n)
}

func TestParseMalformed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     string
		err    error
		status int
	}{
		{"bare LF ends the request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", errBareLF, 400},
		{"bare LF ends a header line", "GET / HTTP/1.1\r\nHost: a\n\r\n", errBareLF, 400},
		{"bare LF ends the head", "GET / HTTP/1.1\r\nHost: a\r\n\n", errBareLF, 400},
		{"bare LF as a leading empty line", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", errBareLF, 400},
		{"bare CR as a leading empty line", "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", errBareCR, 400},
		{"bare CR in a header value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", errHeaderValue, 400},
		{"bare CR in the request line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", errTarget, 400},
		{"no SP in the request line", "GET\r\n\r\n", errRequestLine, 400},
		{"HTTP/0.9 request line", "GET /\r\n\r\n", errRequestLine, 400},
		{"two SPs before the target", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", errRequestLine, 400},
		{"two SPs before the version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", errVersionSyntax, 400},
		{"trailing SP after the version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", errVersionSyntax, 400},
		{"empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", errMethod, 400},
		{"method with a non-token byte", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", errMethod, 400},
		{"tab in the target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", errTarget, 400},
		{"NUL in the target", "GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", errTarget, 400},
		{"DEL in the target", "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", errTarget, 400},
		{"raw UTF-8 in the target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", errTarget, 400},
		{"target neither path nor URI", "GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", errTarget, 400},
		{"asterisk-form with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", errTarget, 400},
		{"absolute-form with empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", errTarget, 400},
		{"absolute-form with userinfo", "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", errTarget, 400},
		{"absolute-form without //", "GET mailto:a HTTP/1.1\r\nHost: a\r\n\r\n", errTarget, 400},
		{"CONNECT without a port", "CONNECT example.org HTTP/1.1\r\nHost: a\r\n\r\n", errTarget, 400},
		{"CONNECT to a path", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", errTarget, 400},
		{"lower-case protocol name", "GET / http/1.1\r\nHost: a\r\n\r\n", errVersionSyntax, 400},
		{"version with two digits", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", errVersionSyntax, 400},
		{"version without minor", "GET / HTTP/1\r\nHost: a\r\n\r\n", errVersionSyntax, 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", errVersion, 505},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", errVersion, 505},
		{"HTTP/0.9 with a version", "GET / HTTP/0.9\r\n\r\n", errVersion, 505},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", errObsFold, 400},
		{"whitespace before the first header", "GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", errObsFold, 400},
		{"space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", errSpaceBeforeColon, 400},
		{"tab before the colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", errSpaceBeforeColon, 400},
		{"no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", errNoColon, 400},
		{"empty field name", "GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", errHeaderName, 400},
		{"non-token field name", "GET / HTTP/1.1\r\nX(y): a\r\nHost: a\r\n\r\n", errHeaderName, 400},
		{"NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", errHeaderValue, 400},
		{"DEL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", errHeaderValue, 400},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\nX: a\r\n\r\n", errNoHost, 400},
		{"two Host lines", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", errDupHost, 400},
		{"two Host lines in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", errDupHost, 400},
		{"Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", errHost, 400},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", errHost, 400},
		{"Host with a slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", errHost, 400},
		{"empty Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", errContentLength, 400},
		{"negative Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", errContentLength, 400},
		{"signed Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", errContentLength, 400},
		{"hex Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\nx", errContentLength, 400},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx", errContentLength, 400},
		{"Content-Length with inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", errContentLength, 400},
		{"two equal Content-Lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", errDupContentLength, 400},
		{"two different Content-Lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nxy", errDupContentLength, 400},
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", errLengthAndEncoding, 400},
		{"Content-Length after chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", errLengthAndEncoding, 400},
		{"Transfer-Encoding not ending in chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", errTransferEncoding, 400},
		{"Transfer-Encoding without chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", errTransferEncoding, 400},
		{"chunked applied twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", errTransferEncoding, 400},
		{"chunked twice over two lines", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", errTransferEncoding, 400},
		{"empty Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", errTransferEncoding, 400},
		{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", errTransferEncoding, 400},
		{"another coding before chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", errUnsupported, 501},
		{"another coding before chunked, two lines", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked,\r\n\r\n", errUnsupported, 501},
		{"identity before chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n", errUnsupported, 501},
		{"unknown expectation", "GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", errExpectation, 417},
		{"100-continue and an unknown expectation", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-continue, x\r\n\r\n", errExpectation, 417},
		{"100-continue with a parameter", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-continue;a=b\r\n\r\n", errExpectation, 417},
		{"unknown expectation in HTTP/1.0", "POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: x\r\n\r\n", errExpectation, 417},
		{"unknown expectation with a body too large", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\nExpect: x\r\n\r\n", errExpectation, 417},
		{"100-continue with a body too large", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\nExpect: 100-continue\r\n\r\n", errBodyTooLarge, 413},
		{"chunked with an unknown expectation", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: x\r\n\r\n", errExpectation, 417},
		{"Content-Length above the limit", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", errBodyTooLarge, 413},
		{"Content-Length of 40 digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + strings.Repeat("9", 40) + "\r\n\r\n", errBodyTooLarge, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req request
			n, err := parseRequest([]byte(tc.in), &req)
			assert.ErrorIs(t, err, tc.err)
			assert.Zero(t, n)
			assert.Equal(t, tc.status, errorStatus(err))
		})
	}
}

// Heads that announce a body the caller must still receive: a chunked one
// (parseRequest returns the head's length; chunkedDecoder does the rest),
// and the expectations a client may wait on.
func TestParseBodyHeads(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want parsed
	}{
		{
			name: "chunked",
			in:   "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
			want: parsed{Method: "POST", Target: "/echo", Path: "/echo", Proto: "HTTP/1.1", Major: 1, Minor: 1,
				Host: "a", HasHost: true, Chunked: true, KeepAlive: true,
				Headers: []string{"Host: a", "Transfer-Encoding: chunked"}},
		},
		{
			name: "chunked, case and list syntax, 100-continue",
			in:   "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , CHUNKED ,\r\nExpect: 100-Continue\r\nConnection: close\r\n\r\n",
			want: parsed{Method: "POST", Target: "/echo", Path: "/echo", Proto: "HTTP/1.1", Major: 1, Minor: 1,
				Host: "a", HasHost: true, Chunked: true, ExpectContinue: true,
				Headers: []string{"Host: a", "Transfer-Encoding: , CHUNKED ,", "Expect: 100-Continue", "Connection: close"}},
		},
		{
			name: "100-continue with Content-Length",
			in:   "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
			want: parsed{Method: "PUT", Target: "/x", Path: "/x", Proto: "HTTP/1.1", Major: 1, Minor: 1,
				Host: "a", HasHost: true, ContentLength: 3, Body: "abc", ExpectContinue: true, KeepAlive: true,
				Headers: []string{"Host: a", "Content-Length: 3", "Expect: 100-continue"}},
		},
		{
			name: "100-continue in HTTP/1.0 is ignored",
			in:   "PUT /x HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
			want: parsed{Method: "PUT", Target: "/x", Path: "/x", Proto: "HTTP/1.0", Major: 1,
				ContentLength: 3, Body: "abc", Headers: []string{"Content-Length: 3", "Expect: 100-continue"}},
		},
		{
			name: "empty Expect expects nothing",
			in:   "GET / HTTP/1.1\r\nHost: a\r\nExpect:\r\n\r\n",
			want: parsed{Method: "GET", Target: "/", Path: "/", Proto: "HTTP/1.1", Major: 1, Minor: 1,
				Host: "a", HasHost: true, KeepAlive: true, Headers: []string{"Host: a", "Expect: "}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req request
			// What follows a chunked head is its body: not looked at.
			in := tc.in + "5\r\nhello\r\n0\r\n\r\n"
			n, err := parseRequest([]byte(in), &req)
			require.NoError(t, err)
			assert.Equal(t, len(tc.in), n)
			assert.Equal(t, len(tc.in)-int(tc.want.ContentLength), req.headLen)
			assert.Equal(t, tc.want, snapshot(&req))
			for k := range len(tc.in) {
				n, err := parseRequest([]byte(tc.in[:k]), &req)
				require.ErrorIs(t, err, errNeedMore, "prefix of %d bytes", k)
				require.Zero(t, n)
			}
		})
	}
}

// While only a Content-Length body is incomplete, parseRequest says
// errNeedMore but sets headLen and the head's fields: that is when the
// server answers "Expect: 100-continue".
func TestParseHeadCompleteBodyNot(t *testing.T) {
	head := "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
	in := head + "hello"
	var req request
	for k := range len(in) {
		n, err := parseRequest([]byte(in[:k]), &req)
		require.ErrorIs(t, err, errNeedMore)
		require.Zero(t, n)
		if k < len(head) {
			assert.Zero(t, req.headLen, "prefix of %d bytes: the head is not complete", k)
			continue
		}
		assert.Equal(t, len(head), req.headLen, "prefix of %d bytes", k)
		assert.True(t, req.expectContinue)
		assert.Equal(t, int64(5), req.contentLength)
		assert.Equal(t, "/echo", string(req.path))
	}
}

// headOfSize returns an HTTP/1.1 request head of exactly size bytes, with
// the header lines extra (each ending in CRLF) after Host, padded with one
// X-Pad header.
func headOfSize(size int, extra string) string {
	start := "GET / HTTP/1.1\r\nHost: a\r\n" + extra + "X-Pad: "
	const end = "\r\n\r\n"
	return start + strings.Repeat("p", size-len(start)-len(end)) + end
}

// headWithHeaders returns an HTTP/1.1 request head with count header lines,
// Host among them.
func headWithHeaders(count int) string {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: a\r\n")
	for i := 1; i < count; i++ {
		fmt.Fprintf(&b, "X-H%d: %d\r\n", i, i)
	}
	b.WriteString("\r\n")
	return b.String()
}

func TestParseLimits(t *testing.T) {
	body := func(n int) string {
		return "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n" + strings.Repeat("b", n)
	}
	for _, tc := range []struct {
		name string
		in   string
		err  error // nil: parses whole
	}{
		{"head one byte under the limit", headOfSize(maxHeaderBytes-1, ""), nil},
		{"head at the limit", headOfSize(maxHeaderBytes, ""), nil},
		{"head one byte over the limit", headOfSize(maxHeaderBytes+1, ""), errHeaderTooLarge},
		{"leading empty lines count toward the head", "\r\n" + headOfSize(maxHeaderBytes-1, ""), errHeaderTooLarge},
		{"head at the limit with a leading empty line", "\r\n" + headOfSize(maxHeaderBytes-2, ""), nil},
		{"head at the limit, body beyond it", headOfSize(maxHeaderBytes, "Content-Length: 5\r\n") + "abcde", nil},
		{"head over the limit, body beyond it", headOfSize(maxHeaderBytes+1, "Content-Length: 5\r\n") + "abcde", errHeaderTooLarge},
		{"unended head of exactly the limit", headOfSize(maxHeaderBytes+100, "")[:maxHeaderBytes], errHeaderTooLarge},
		{"unended head one byte under the limit", headOfSize(maxHeaderBytes+100, "")[:maxHeaderBytes-1], errNeedMore},
		{"head ending in CR at the limit", headOfSize(maxHeaderBytes+1, "")[:maxHeaderBytes], errHeaderTooLarge},
		{"a request line that fills the limit", "GET /" + strings.Repeat("a", maxHeaderBytes), errHeaderTooLarge},
		{"header lines one under the limit", headWithHeaders(maxHeaders - 1), nil},
		{"header lines at the limit", headWithHeaders(maxHeaders), nil},
		{"header lines one over the limit", headWithHeaders(maxHeaders + 1), errTooManyHeaders},
		{"body one byte under the limit", body(maxBodyBytes - 1), nil},
		{"body at the limit", body(maxBodyBytes), nil},
		{"body one byte over the limit", body(maxBodyBytes + 1), errBodyTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req request
			n, err := parseRequest([]byte(tc.in), &req)
			if tc.err != nil {
				assert.ErrorIs(t, err, tc.err)
				assert.Zero(t, n)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, len(tc.in), n)
		})
	}
	// The headers array is full and nothing is lost.
	var req request
	_, err := parseRequest([]byte(headWithHeaders(maxHeaders)), &req)
	require.NoError(t, err)
	require.Len(t, req.fields(), maxHeaders)
	assert.Equal(t, "X-H63", string(req.fields()[maxHeaders-1].name))
	assert.Equal(t, "63", string(req.header("x-h63")))
	// errTooManyHeaders is a 431.
	assert.ErrorIs(t, errTooManyHeaders, errHeaderTooLarge)
	assert.Equal(t, 431, errorStatus(errTooManyHeaders))
	// A server's own body limit replaces the default, up or down.
	for _, tc := range []struct {
		limit int64
		n     int
		err   error
	}{
		{10, 10, nil},
		{10, 11, errBodyTooLarge},
		{2 * maxBodyBytes, maxBodyBytes + 1, nil},
		{2 * maxBodyBytes, 2*maxBodyBytes + 1, errBodyTooLarge},
		{maxBodyLimit, maxBodyLimit + 1, errBodyTooLarge},
	} {
		in := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(tc.n) + "\r\n\r\n"
		if tc.err == nil {
			in += strings.Repeat("b", tc.n)
		}
		limited := request{maxBody: tc.limit}
		n, err := parseRequest([]byte(in), &limited)
		if tc.err != nil {
			assert.ErrorIs(t, err, tc.err, "limit %d, body %d", tc.limit, tc.n)
			continue
		}
		assert.NoError(t, err, "limit %d, body %d", tc.limit, tc.n)
		assert.Equal(t, len(in), n)
		assert.Equal(t, tc.limit, limited.maxBody, "reset keeps the limit")
	}
	// An over-long head is a 431 however it continues.
	long := headOfSize(maxHeaderBytes+1, "")
	for _, k := range []int{maxHeaderBytes, maxHeaderBytes + 1, len(long)} {
		_, err := parseRequest([]byte(long[:k]), &req)
		assert.ErrorIs(t, err, errHeaderTooLarge, "first %d bytes", k)
	}
}

func TestParseHeaderLookup(t *testing.T) {
	var req request
	_, err := parseRequest([]byte("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\nX-Empty:\r\n\r\n"), &req)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		want []byte
	}{
		{"X-A", []byte("1")},
		{"x-A", []byte("1")},
		{"HOST", []byte("a")},
		{"X-Empty", []byte{}},
		{"X-Missing", nil},
		{"X-", nil},
	} {
		assert.Equal(t, tc.want, req.header(tc.name), tc.name)
	}
}

// The request is reused from one parse to the next, as a connection reuses
// it: nothing of a previous request may show through.
func TestParseResetsRequest(t *testing.T) {
	var req request
	_, err := parseRequest([]byte(validRequests[2].in), &req) // POST with body, query
	require.NoError(t, err)
	_, err = parseRequest([]byte("GET /x HTTP/1.0\r\n\r\n"), &req)
	require.NoError(t, err)
	assert.Equal(t, parsed{Method: "GET", Target: "/x", Path: "/x", Proto: "HTTP/1.0", Major: 1}, snapshot(&req))
}

// reset must clear every field but the headers array (whose entries past
// nheaders are dead) and the body limit (configuration): a field added to
// request and forgotten in reset would leak one request's value into the
// next.
func TestRequestReset(t *testing.T) {
	for _, in := range []string{
		"POST http://h/p?q HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
	} {
		req := request{maxBody: 7}
		_, err := parseRequest([]byte(in), &req)
		require.NoError(t, err)
		req.reset()
		v := reflect.ValueOf(req)
		for i := range v.NumField() {
			if name := v.Type().Field(i).Name; name != "headers" && name != "maxBody" {
				assert.True(t, v.Field(i).IsZero(), "reset leaves %s = %v", name, v.Field(i))
			}
		}
		assert.Equal(t, int64(7), req.maxBody)
	}
}

func TestErrorStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errNeedMore, 0},
		{errMalformed, 400},
		{errBareLF, 400},
		{errHeaderTooLarge, 431},
		{errTooManyHeaders, 431},
		{errBodyTooLarge, 413},
		{errUnsupported, 501},
		{errVersion, 505},
		{fmt.Errorf("wrapped: %w", errVersion), 505},
		{errExpectation, 417},
		{errChunkSize, 400},
		{errChunkLine, 400},
		{errTrailerTooLarge, 431},
		{errTooManyTrailers, 431},
	} {
		assert.Equal(t, tc.want, errorStatus(tc.err), "%v", tc.err)
	}
}

func TestAppendResponse(t *testing.T) {
	date := []byte("Sun, 06 Nov 1994 08:49:37 GMT")
	for _, tc := range []struct {
		name        string
		date        []byte
		status      int
		contentType string
		body        string
		conn        connHeader
		want        string
	}{
		{"200 with everything", date, 200, "text/plain", "Hello, World!", connPersist,
			"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: text/plain\r\n" +
				"Content-Length: 13\r\n\r\nHello, World!"},
		{"no date, no type, empty body", nil, 200, "", "", connPersist,
			"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"close", nil, 404, "text/plain", "no", connClose,
			"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"},
		{"keep-alive for HTTP/1.0", nil, 200, "", "x", connKeepAlive,
			"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx"},
		{"unknown status has an empty reason", nil, 299, "", "", connPersist,
			"HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n"},
		{"status below 100 is sent as 500", nil, 99, "", "", connClose,
			"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"status above 599 is sent as 500", nil, 600, "", "", connPersist,
			"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"},
		{"204 has no length and no body", date, 204, "", "dropped", connPersist,
			"HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"},
		{"304 has no length and no body", nil, 304, "text/html", "dropped", connPersist,
			"HTTP/1.1 304 Not Modified\r\nContent-Type: text/html\r\n\r\n"},
		{"1xx has no length and no body", nil, 100, "", "dropped", connPersist,
			"HTTP/1.1 100 Continue\r\n\r\n"},
		{"content type with CRLF is left out", nil, 200, "text/plain\r\nSet-Cookie: x", "", connPersist,
			"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "previous response|"
			got := appendResponse([]byte(prefix), tc.date, tc.status, tc.contentType, []byte(tc.body), tc.conn)
			assert.Equal(t, prefix+tc.want, string(got))
		})
	}
}

func TestAppendResponseHead(t *testing.T) {
	got := appendResponseHead(nil, nil, 200, "text/plain", 13, connPersist)
	assert.Equal(t, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n", string(got))
}

// A response written by appendResponse is one HTTP/1.1 message with the
// framing a client needs, whatever the status: its status line, its headers
// and exactly Content-Length bytes of body.
func TestAppendResponseFraming(t *testing.T) {
	body := []byte("0123456789")
	for status := 100; status <= 599; status++ {
		resp := appendResponse(nil, []byte("Sun, 06 Nov 1994 08:49:37 GMT"), status, "text/plain", body, connClose)
		head, rest, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
		require.True(t, ok, "status %d: no end of head", status)
		lines := strings.Split(string(head), "\r\n")
		assert.True(t, strings.HasPrefix(lines[0], "HTTP/1.1 "+strconv.Itoa(status)+" "), "status %d: %q", status, lines[0])
		assert.Contains(t, lines, "Connection: close", "status %d", status)
		if status < 200 || status == 204 || status == 304 {
			assert.Empty(t, rest, "status %d", status)
			assert.NotContains(t, string(head), "Content-Length", "status %d", status)
		} else {
			assert.Equal(t, body, rest, "status %d", status)
			assert.Contains(t, lines, "Content-Length: 10", "status %d", status)
		}
	}
}

func TestResponseConn(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want connHeader
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", connPersist},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", connClose},
		{"GET / HTTP/1.0\r\n\r\n", connClose},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", connKeepAlive},
	} {
		var req request
		_, err := parseRequest([]byte(tc.in), &req)
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, req.responseConn(), "%q", tc.in)
	}
}

func TestDateCache(t *testing.T) {
	var c dateCache
	t0 := time.Date(1994, time.November, 6, 8, 49, 37, 0, time.UTC)
	assert.Equal(t, "Sun, 06 Nov 1994 08:49:37 GMT", string(c.get(t0)))
	// Another zone, the same instant: still GMT.
	est := time.FixedZone("EST", -5*3600)
	assert.Equal(t, "Sun, 06 Nov 1994 08:49:37 GMT", string(c.get(t0.In(est).Add(999*time.Millisecond))))
	assert.Equal(t, "Sun, 06 Nov 1994 08:49:38 GMT", string(c.get(t0.Add(time.Second))))
	// Back in time changes it too: only the second matters.
	assert.Equal(t, "Sat, 05 Nov 1994 08:49:37 GMT", string(c.get(t0.Add(-24*time.Hour))))
	// A year IMF-fixdate cannot hold gives no date, and the next good one
	// is right again.
	assert.Nil(t, c.get(time.Date(10000, time.January, 1, 0, 0, 0, 0, time.UTC)))
	assert.Equal(t, "Sun, 06 Nov 1994 08:49:37 GMT", string(c.get(t0)))
}

// The hot path allocates nothing: parsing a request, and appending its
// response to an output buffer that has grown to its working size.
func TestAllocations(t *testing.T) {
	var req request
	for _, tc := range validRequests {
		in := []byte(tc.in)
		var err error
		allocs := testing.AllocsPerRun(100, func() { _, err = parseRequest(in, &req) })
		require.NoError(t, err, tc.name)
		assert.Zero(t, allocs, "parseRequest(%s)", tc.name)
	}
	bad := []byte("GET / HTTP/1.1\r\nHost : a\r\n\r\n")
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = parseRequest(bad, &req) }), "parseRequest of a bad request")

	var dc dateCache
	now := time.Now()
	body := []byte("Hello, World!")
	dst := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		dst = appendResponse(dst[:0], dc.get(now), 200, "text/plain", body, connPersist)
	})
	assert.Zero(t, allocs, "appendResponse")
	allocs = testing.AllocsPerRun(100, func() {
		now = now.Add(time.Second) // a new second: the date is formatted again
		dst = appendResponse(dst[:0], dc.get(now), 404, "text/plain", body, connClose)
	})
	assert.Zero(t, allocs, "appendResponse with a new date")
}

// FuzzParse checks the properties the server relies on, for any input:
// parseRequest never panics; it returns n == 0 with an error, or 0 < n <=
// len(b) without; b[:n] parses to the same request; bytes after the request
// (or after a fault) change nothing; every proper prefix of a request is
// errNeedMore; and a request written back out from its parsed fields parses
// to the same fields.
func FuzzParse(f *testing.F) {
	for _, tc := range validRequests {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte(validRequests[0].in + validRequests[2].in))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nExpect: 100-continue\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhel"))
	f.Add([]byte("POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: foo\r\n\r\nx"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\nHost: a\n\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"))
	f.Add([]byte("GET http://u@h/ HTTP/1.1\r\n\r\n"))
	f.Add([]byte("\r\n\r\r\n"))

	garbage := []byte("\x00GARBAGE\r\n\r\nGET / HTTP/1.1\r\n\r\n")
	f.Fuzz(func(t *testing.T, b []byte) {
		var req, again request
		n, err := parseRequest(b, &req)
		if err != nil {
			require.Zero(t, n, "error %v with n != 0", err)
			if errors.Is(err, errNeedMore) {
				// A complete head says how much body is missing.
				if req.headLen > 0 {
					require.False(t, req.chunked)
					require.Less(t, int64(len(b)), int64(req.headLen)+req.contentLength)
				}
				return
			}
			// A fault is decided by the bytes up to it: more input does not
			// change it.
			_, err2 := parseRequest(append(b[:len(b):len(b)], garbage...), &again)
			require.Equal(t, err, err2, "error changed by appended bytes")
			return
		}
		require.True(t, n > 0 && n <= len(b), "n = %d for %d bytes", n, len(b))
		want := snapshot(&req)
		require.Equal(t, want.ContentLength, int64(len(want.Body)))
		require.Equal(t, n, req.headLen+len(want.Body), "a request is its head and its Content-Length body")
		require.Equal(t, want.Body, string(b[n-len(want.Body):n]), "body is the last bytes of the request")

		n2, err := parseRequest(b[:n:n], &again)
		require.NoError(t, err, "b[:n] does not parse")
		require.Equal(t, n, n2)
		require.Equal(t, want, snapshot(&again), "b[:n] parses differently")

		n2, err = parseRequest(append(b[:len(b):len(b)], garbage...), &again)
		require.NoError(t, err, "appended bytes made it fail")
		require.Equal(t, n, n2)
		require.Equal(t, want, snapshot(&again), "appended bytes changed the request")

		for k := range n {
			n2, err := parseRequest(b[:k], &again)
			require.ErrorIs(t, err, errNeedMore, "prefix of %d of %d bytes", k, n)
			require.Zero(t, n2)
		}

		// Written back out the way a client would send it, with the
		// fields' own values, the request means the same. (Leading empty
		// lines and OWS are not reproduced; they carry no meaning.)
		var out []byte
		out = fmt.Appendf(out, "%s %s %s\r\n", req.method, req.target, req.proto)
		for _, h := range req.fields() {
			out = fmt.Appendf(out, "%s: %s\r\n", h.name, h.value)
		}
		out = append(out, "\r\n"...)
		out = append(out, req.body...)
		n2, err = parseRequest(out, &again)
		require.NoError(t, err, "re-serialised request %q does not parse", out)
		require.Equal(t, len(out), n2)
		require.Equal(t, want, snapshot(&again), "re-serialised request parses differently")
	})
}

func BenchmarkParse(b *testing.B) {
	one := []byte(wrkGET)
	pipeline := bytes.Repeat(one, 16)
	for _, bc := range []struct {
		name  string
		in    []byte
		count int
	}{
		{"wrkGET", one, 1},
		{"pipeline16", pipeline, 16},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var req request
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				in := bc.in
				for range bc.count {
					n, err := parseRequest(in, &req)
					if err != nil {
						b.Fatal(err)
					}
					in = in[n:]
				}
			}
		})
	}
}

// BenchmarkServePipeline is the work a server does per read of a 16-deep
// pipeline of wrk GETs: parse each request and append its response to one
// output buffer.
func BenchmarkServePipeline(b *testing.B) {
	in := bytes.Repeat([]byte(wrkGET), 16)
	body := []byte("Hello, World!")
	var req request
	var dc dateCache
	out := make([]byte, 0, 16<<10)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		out = out[:0]
		date := dc.get(time.Now())
		for rest := in; len(rest) > 0; {
			n, err := parseRequest(rest, &req)
			if err != nil {
				b.Fatal(err)
			}
			out = appendResponse(out, date, 200, "text/plain", body, req.responseConn())
			rest = rest[n:]
		}
	}
}

func BenchmarkAppendResponse(b *testing.B) {
	body := []byte("Hello, World!")
	date := []byte("Sun, 06 Nov 1994 08:49:37 GMT")
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(appendResponse(nil, date, 200, "text/plain", body, connPersist))))
	for b.Loop() {
		dst = appendResponse(dst[:0], date, 200, "text/plain", body, connPersist)
	}
}
