// This file parses HTTP/1.1 requests (RFC 9112) straight out of a
// connection's input bytes. The server's handler calls parseRequest on the
// readable bytes of its input buffer, again and again, until it reports
// errNeedMore: every request found is answered in order (pipelining), and
// exactly the bytes of the complete requests are consumed. Nothing is copied
// and nothing is allocated: a request's fields are slices into the input.
//
// The parser is deliberately strict where the RFC leaves a choice, because
// every leniency is a place where it could disagree with a proxy in front of
// it about where one request ends and the next begins (request smuggling):
//
//   - Lines must end in CRLF. RFC 9112 §2.2 lets a recipient accept a bare LF;
//     we answer 400 instead. Every real client (browsers, curl, wrk, ab)
//     sends CRLF.
//   - The request line is exactly method SP request-target SP HTTP-version,
//     single spaces (§3 allows parsing on runs of whitespace; we do not).
//   - Only "HTTP/1.0" and "HTTP/1.1" are served. Any other well-formed
//     version ("HTTP/2.0", "HTTP/0.9", also "HTTP/1.2", which §2.3 of RFC
//     9110 would have us treat as 1.1) gets 505; a malformed one gets 400.
//   - obs-fold (a header line starting with SP or HTAB) gets 400, one of the
//     two answers §5.2 allows.
//   - A repeated Content-Length gets 400 even when the values agree.
//   - The only transfer coding understood is chunked, and only alone
//     ("Transfer-Encoding: chunked"): its body is decoded by chunkedDecoder
//     (chunked.go). Other codings before it ("gzip, chunked") get 501 Not
//     Implemented (§6.1: a server SHOULD answer 501 to a transfer coding it
//     does not understand). A Transfer-Encoding whose last coding is not
//     chunked, or that applies chunked twice, gets 400: §6.3 says the body's
//     length cannot be determined and the server MUST answer 400 and close.
//     So do a request with both Content-Length and Transfer-Encoding (§6.1
//     allows rejecting it and requires closing after the response either
//     way) and an HTTP/1.0 request with Transfer-Encoding (§6.1: its framing
//     must be treated as faulty).
//   - Expect (RFC 9110 §10.1.1): "100-continue" is the only expectation
//     known; any other gets 417 Expectation Failed. In an HTTP/1.0 request
//     100-continue is ignored, as §10.1.1 requires.
//
// After any error but errNeedMore the server must answer with errorStatus(err)
// and close the connection: the request's length is unknown, so the
// connection cannot be resynchronised.

package httpd

import (
	"bytes"
	"errors"
	"fmt"
)

// Limits. They bound what one request may make a connection hold.
const (
	// maxHeaderBytes bounds the request head: any empty lines before the
	// request line, the request line, the header lines and the empty line
	// that ends them, CRLFs included. A head of exactly maxHeaderBytes is
	// accepted; one byte more is errHeaderTooLarge (431). 8 KiB is what
	// nginx and Apache allow by default for a request line and per header.
	maxHeaderBytes = 8 << 10
	// maxHeaders is the capacity of request.headers: a request with more
	// header lines than this is errHeaderTooLarge (431).
	maxHeaders = 64
	// maxBodyBytes is the default bound on a request body (its
	// Content-Length, or the sum of its chunks): above it the request is
	// errBodyTooLarge (413), reported as soon as the head (or the chunk-size
	// line) that announces it is complete, before the data has to arrive.
	// A server may choose another bound (WithMaxBodyBytes).
	maxBodyBytes = 1 << 20
	// maxBodyLimit is the largest bound a server may choose: 1 GiB.
	maxBodyLimit = 1 << 30
)

// The errors parseRequest returns. Their text is what logs show;
// errorStatus maps each to the status to answer with.
var (
	// errNeedMore means the input holds only a prefix of a request: read
	// more and call parseRequest again with all of it. It is the only error
	// after which the connection can go on.
	errNeedMore = errors.New("http: incomplete request")
	// errMalformed (400 Bad Request) is wrapped by every syntax error below,
	// so errors.Is(err, errMalformed) tells a 400 without listing them.
	errMalformed = errors.New("http: malformed request")
	// errHeaderTooLarge (431 Request Header Fields Too Large): the head is
	// longer than maxHeaderBytes or has more than maxHeaders header lines.
	errHeaderTooLarge = errors.New("http: request header too large")
	// errBodyTooLarge (413 Content Too Large): Content-Length is above
	// maxBodyBytes.
	errBodyTooLarge = errors.New("http: request body too large")
	// errUnsupported (501 Not Implemented): a transfer coding other than
	// chunked (see the file comment).
	errUnsupported = errors.New("http: transfer coding not implemented")
	// errVersion (505 HTTP Version Not Supported): a well-formed version
	// other than HTTP/1.0 and HTTP/1.1.
	errVersion = errors.New("http: HTTP version not supported")
	// errExpectation (417 Expectation Failed): an Expect header with an
	// expectation other than 100-continue.
	errExpectation = errors.New("http: expectation not supported")
)

// The reasons for a 400, each wrapping errMalformed, and one for a 431,
// wrapping errHeaderTooLarge. They exist so that tests and logs say which
// rule a request broke. They are built once, here, so that
// returning one allocates nothing.
var (
	errBareLF            = fmt.Errorf("%w: line ends in LF without CR", errMalformed)
	errBareCR            = fmt.Errorf("%w: CR not followed by LF", errMalformed)
	errRequestLine       = fmt.Errorf("%w: request line is not method SP target SP version", errMalformed)
	errMethod            = fmt.Errorf("%w: invalid method", errMalformed)
	errTarget            = fmt.Errorf("%w: invalid request-target", errMalformed)
	errVersionSyntax     = fmt.Errorf("%w: invalid HTTP version", errMalformed)
	errObsFold           = fmt.Errorf("%w: header line starts with whitespace (obs-fold)", errMalformed)
	errHeaderName        = fmt.Errorf("%w: invalid header field name", errMalformed)
	errSpaceBeforeColon  = fmt.Errorf("%w: whitespace between header field name and colon", errMalformed)
	errNoColon           = fmt.Errorf("%w: header line without a colon", errMalformed)
	errHeaderValue       = fmt.Errorf("%w: control character in header field value", errMalformed)
	errContentLength     = fmt.Errorf("%w: invalid Content-Length", errMalformed)
	errDupContentLength  = fmt.Errorf("%w: more than one Content-Length", errMalformed)
	errLengthAndEncoding = fmt.Errorf("%w: both Content-Length and Transfer-Encoding", errMalformed)
	errTransferEncoding  = fmt.Errorf("%w: Transfer-Encoding that does not end in chunked, applies it twice, or is in an HTTP/1.0 request", errMalformed)
	errNoHost            = fmt.Errorf("%w: HTTP/1.1 request without Host", errMalformed)
	errDupHost           = fmt.Errorf("%w: more than one Host", errMalformed)
	errHost              = fmt.Errorf("%w: invalid Host", errMalformed)
	errTooManyHeaders    = fmt.Errorf("%w: more than %d header lines", errHeaderTooLarge, maxHeaders)
)

// errorStatus returns the status code the server answers an error from
// parseRequest or chunkedDecoder.decode with: 400, 413, 417, 431, 501 or
// 505. It returns 0 for nil and for errNeedMore, which are not answered.
func errorStatus(err error) int {
	switch {
	case err == nil, errors.Is(err, errNeedMore):
		return 0
	case errors.Is(err, errHeaderTooLarge):
		return 431
	case errors.Is(err, errBodyTooLarge):
		return 413
	case errors.Is(err, errUnsupported):
		return 501
	case errors.Is(err, errVersion):
		return 505
	case errors.Is(err, errExpectation):
		return 417
	}
	return 400
}

// header is one header field line: its name and its value with the
// surrounding whitespace trimmed, both slices into the parsed input.
type header struct {
	name, value []byte
}

// request is one parsed HTTP/1.x request. Every []byte field is a slice into
// the input given to parseRequest: it is valid only until that input changes
// (the buffer is consumed, compacted or reused), and must be copied to be
// kept. A request holds no pointer of its own, so it can be reused for every
// request of a connection; it is not safe for concurrent use, and belongs to
// whoever parses into it (the connection's loop goroutine, in the server).
type request struct {
	method []byte // a token, case-sensitive ("GET", "POST", ...)
	target []byte // the whole request-target, as sent
	// path is the target up to '?': an absolute path for the origin form
	// ("/a/b"), "*" for OPTIONS *, nil for CONNECT's authority form, and
	// the path after the authority for the absolute form (empty for
	// "http://host", to be read as "/"). Percent-encoding is not decoded.
	path []byte
	// query is what follows the first '?' of the target, without the '?':
	// nil if there is no '?', empty (non-nil) if there is one and nothing
	// after it.
	query        []byte
	proto        []byte // "HTTP/1.0" or "HTTP/1.1"
	major, minor int    // 1 and 0 or 1
	// host is the Host header's value, or, for an absolute-form or
	// authority-form target, the target's authority: RFC 9112 §3.2.2 says
	// the server uses the target's and ignores the header then. nil when an
	// HTTP/1.0 request names no host at all; it may be empty (non-nil).
	host []byte
	// contentLength is the body's length from Content-Length, 0 without one
	// (a request with neither Content-Length nor Transfer-Encoding has no
	// body, RFC 9112 §6.3) and for a chunked body.
	contentLength int64
	body          []byte // the contentLength bytes after the head
	// chunked says the body is chunked ("Transfer-Encoding: chunked"): it
	// follows the head, and the caller decodes it with a chunkedDecoder.
	chunked bool
	// expectContinue says an HTTP/1.1 client sent "Expect: 100-continue":
	// it may wait for "100 Continue" before it sends the body.
	expectContinue bool
	// headLen is the length of the head (leading empty lines included) once
	// it has been parsed: set on success, and also when parseRequest returns
	// errNeedMore because only the Content-Length body is incomplete, so
	// that the caller knows the head is valid and whether any of the body
	// has arrived. 0 while the head itself is incomplete.
	headLen int
	// maxBody is the most body this request may have (Content-Length, or
	// the chunks together); 0 means maxBodyBytes. It is configuration, not
	// part of a request: its owner sets it once and reset keeps it.
	maxBody int64
	// keepAlive says whether the connection stays open after this request:
	// by default for HTTP/1.1 unless "Connection: close" was sent; for
	// HTTP/1.0 only if "Connection: keep-alive" was sent (and no close).
	keepAlive bool
	// headers[:nheaders] are the header lines in the order received,
	// duplicates included. Entries past nheaders are stale: never read them.
	headers  [maxHeaders]header
	nheaders int
}

// reset empties r for the next parse. It clears every field but the
// headers array, whose stale entries past nheaders are never read: zeroing
// its 3 KiB for every request cost about a tenth of a parse.
func (r *request) reset() {
	r.method, r.target, r.path, r.query, r.proto = nil, nil, nil, nil, nil
	r.major, r.minor = 0, 0
	r.host = nil
	r.contentLength, r.body = 0, nil
	r.chunked, r.expectContinue, r.headLen = false, false, 0
	r.keepAlive = false
	r.nheaders = 0
}

// bodyLimit returns the most body r may have.
func (r *request) bodyLimit() int64 {
	if r.maxBody > 0 {
		return r.maxBody
	}
	return maxBodyBytes
}

// fields returns the header lines in the order received. The slice aliases
// r; it is valid as long as r's fields are.
func (r *request) fields() []header { return r.headers[:r.nheaders] }

// header returns the value of the first header line named name, compared
// without regard to ASCII case, or nil if there is none. A present but empty
// value is an empty, non-nil slice.
func (r *request) header(name string) []byte {
	for i := range r.nheaders {
		if equalFold(r.headers[i].name, name) {
			return r.headers[i].value
		}
	}
	return nil
}

// headState is what parseRequest remembers about the header lines seen so
// far, to check the rules that span several of them.
type headState struct {
	sawHost        bool // a Host line has been seen
	hostFromTarget bool // host came from the request-target, not the header
	sawLength      bool // a Content-Length line has been seen
	sawEncoding    bool // a Transfer-Encoding line has been seen
	chunkedLast    bool // the last transfer coding listed so far is chunked
	chunkedEarly   bool // a transfer coding follows chunked
	otherCoding    bool // a transfer coding other than chunked is listed
	connClose      bool // a Connection line listed "close"
	connKeepAlive  bool // a Connection line listed "keep-alive"
	expectContinue bool // an Expect line listed "100-continue"
	expectOther    bool // an Expect line listed anything else
}

// parseRequest parses one HTTP/1.x request from the front of b into req.
// It returns the number of bytes the whole request occupies: any empty lines
// before the request line (RFC 9112 §2.2 says to ignore them), the request
// line, the header lines, the empty line and a Content-Length body. For a
// chunked request (req.chunked) it returns the length of the head alone:
// the body follows, and the caller decodes it with a chunkedDecoder. If b
// holds only a prefix of a request it returns 0 and errNeedMore; for a bad
// request, 0 and an error that errorStatus maps to the status to answer.
//
// Whether b is complete, and which error it has, depends only on b's bytes
// up to the end of the request (or of the first fault): parseRequest never
// looks past them, so bytes of the next pipelined request cannot change the
// outcome. It allocates nothing. After an error req's fields are undefined,
// except after errNeedMore with req.headLen > 0: then the head is complete
// and valid, its fields are set, and only the body is still to come.
func parseRequest(b []byte, req *request) (n int, err error) {
	req.reset()
	// The head must fit in its limit, so only that much of b is searched
	// for line ends: a client that never ends its head costs one scan of at
	// most maxHeaderBytes, however much it sends.
	head := b
	if len(head) > maxHeaderBytes {
		head = head[:maxHeaderBytes]
	}
	pos := 0
	for pos < len(head) && head[pos] == '\r' {
		if pos+1 == len(head) {
			return 0, incompleteHead(b)
		}
		if head[pos+1] != '\n' {
			return 0, errBareCR
		}
		pos += 2
	}
	line, pos, err := nextLine(b, head, pos)
	if err != nil {
		return 0, err
	}
	var st headState
	if err := req.parseRequestLine(line, &st); err != nil {
		return 0, err
	}
	for {
		line, pos, err = nextLine(b, head, pos)
		if err != nil {
			return 0, err
		}
		if len(line) == 0 {
			break
		}
		if req.nheaders == maxHeaders {
			return 0, errTooManyHeaders
		}
		if err := req.parseHeaderLine(line, &st); err != nil {
			return 0, err
		}
	}
	if err := req.finishHead(&st); err != nil {
		return 0, err
	}
	req.headLen = pos
	if req.chunked {
		return pos, nil
	}
	// contentLength <= maxBodyLimit here, so the sum cannot overflow.
	end := pos + int(req.contentLength)
	if len(b) < end {
		return 0, errNeedMore
	}
	req.body = b[pos:end]
	return end, nil
}

// incompleteHead is the error for a head that has not ended within the
// bytes of b searched: errNeedMore while the head could still fit in its
// limit, errHeaderTooLarge once b holds maxHeaderBytes bytes without its end
// (the head is then longer than the limit, whatever comes next).
func incompleteHead(b []byte) error {
	if len(b) >= maxHeaderBytes {
		return errHeaderTooLarge
	}
	return errNeedMore
}

// nextLine returns the line of head that starts at pos, without its CRLF,
// and the position after the CRLF. head is b cut to maxHeaderBytes.
func nextLine(b, head []byte, pos int) (line []byte, next int, err error) {
	i := bytes.IndexByte(head[pos:], '\n')
	if i < 0 {
		return nil, pos, incompleteHead(b)
	}
	end := pos + i
	if i == 0 || head[end-1] != '\r' {
		return nil, pos, errBareLF
	}
	return head[pos : end-1], end + 1, nil
}

// parseRequestLine parses method SP request-target SP HTTP-version (RFC 9112
// §3). Syntax is checked before the version is judged, so a malformed line
// is a 400 even if its version is one we do not serve.
func (r *request) parseRequestLine(line []byte, st *headState) error {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return errRequestLine
	}
	r.method = line[:sp]
	if !isToken(r.method) {
		return errMethod
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		// No second SP (an HTTP/0.9 "GET /" line), or an empty target
		// between two SPs.
		return errRequestLine
	}
	r.target, r.proto = rest[:sp], rest[sp+1:]
	if err := r.parseTarget(st); err != nil {
		return err
	}
	p := r.proto
	if len(p) != len("HTTP/1.1") || string(p[:5]) != "HTTP/" || !isDigit(p[5]) || p[6] != '.' || !isDigit(p[7]) {
		return errVersionSyntax
	}
	r.major, r.minor = int(p[5]-'0'), int(p[7]-'0')
	if r.major != 1 || r.minor > 1 {
		return errVersion
	}
	return nil
}

// parseTarget checks the request-target and splits it (RFC 9112 §3.2). Its
// bytes must be visible ASCII: no spaces, no control characters, and no
// bytes above 0x7E, which a URI must percent-encode. Finer URI syntax is left
// to whoever routes on the path.
func (r *request) parseTarget(st *headState) error {
	t := r.target
	for _, c := range t {
		if c <= ' ' || c >= 0x7f {
			return errTarget
		}
	}
	switch {
	case string(r.method) == "CONNECT":
		// authority-form, host ":" port, the only form CONNECT takes.
		colon := bytes.LastIndexByte(t, ':')
		if colon <= 0 || colon == len(t)-1 || !isHost(t[:colon]) || !allDigits(t[colon+1:]) {
			return errTarget
		}
		r.host, st.hostFromTarget = t, true
	case t[0] == '/':
		// origin-form: absolute-path [ "?" query ].
		r.path, r.query = splitQuery(t)
	case len(t) == 1 && t[0] == '*':
		// asterisk-form, for a server-wide OPTIONS only.
		if string(r.method) != "OPTIONS" {
			return errTarget
		}
		r.path = t
	default:
		// absolute-form. We take only scheme "://" authority [path] [?query]
		// (the shape of http and https URIs); an empty authority is invalid
		// for them (RFC 9110 §4.2.1), and so is userinfo ('@' is not a host
		// byte), which §4.2.4 tells recipients to treat as an error.
		i := 0
		for i < len(t) && isSchemeByte(t[i], i == 0) {
			i++
		}
		if i == 0 || !bytes.HasPrefix(t[i:], []byte("://")) {
			return errTarget
		}
		rest := t[i+3:]
		end := 0
		for end < len(rest) && rest[end] != '/' && rest[end] != '?' {
			end++
		}
		if end == 0 || !isHost(rest[:end]) {
			return errTarget
		}
		r.host, st.hostFromTarget = rest[:end], true
		r.path, r.query = splitQuery(rest[end:])
	}
	return nil
}

// splitQuery splits a target at its first '?': the query excludes the '?'
// and is nil if there is none.
func splitQuery(t []byte) (path, query []byte) {
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		return t[:q], t[q+1:]
	}
	return t, nil
}

// parseHeaderLine parses field-name ":" OWS field-value OWS (RFC 9112 §5),
// records it, and notes what the framing rules need.
func (r *request) parseHeaderLine(line []byte, st *headState) error {
	name, value, err := splitField(line)
	if err != nil {
		return err
	}
	r.headers[r.nheaders] = header{name: name, value: value}
	r.nheaders++

	switch {
	case equalFold(name, "host"):
		// RFC 9112 §3.2: 400 for more than one Host or an invalid one.
		if st.sawHost {
			return errDupHost
		}
		st.sawHost = true
		if !isHost(value) {
			return errHost
		}
		if !st.hostFromTarget {
			r.host = value
		}
	case equalFold(name, "content-length"):
		if st.sawLength {
			return errDupContentLength
		}
		st.sawLength = true
		if len(value) == 0 {
			return errContentLength
		}
		var v int64
		for _, c := range value {
			if !isDigit(c) {
				return errContentLength
			}
			// Past the largest limit the exact value no longer matters
			// (it is a 413); stop accumulating so that no length of
			// digits can overflow.
			if v <= maxBodyLimit {
				v = v*10 + int64(c-'0')
			}
		}
		r.contentLength = v
	case equalFold(name, "transfer-encoding"):
		st.sawEncoding = true
		for elem, rest := nextElement(value); elem != nil; elem, rest = nextElement(rest) {
			if st.chunkedLast {
				st.chunkedEarly = true
			}
			st.chunkedLast = equalFold(elem, "chunked")
			if !st.chunkedLast {
				st.otherCoding = true
			}
		}
	case equalFold(name, "connection"):
		for elem, rest := nextElement(value); elem != nil; elem, rest = nextElement(rest) {
			switch {
			case equalFold(elem, "close"):
				st.connClose = true
			case equalFold(elem, "keep-alive"):
				st.connKeepAlive = true
			}
		}
	case equalFold(name, "expect"):
		for elem, rest := nextElement(value); elem != nil; elem, rest = nextElement(rest) {
			if equalFold(elem, "100-continue") {
				st.expectContinue = true
			} else {
				st.expectOther = true
			}
		}
	}
	return nil
}

// splitField splits a header or trailer field line, field-name ":" OWS
// field-value OWS (RFC 9112 §5), into its name and its value with the OWS
// trimmed, and checks both.
func splitField(line []byte) (name, value []byte, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		// A continuation of the previous line (obs-fold), or whitespace
		// between the request line and the first header (§2.2): both may be
		// rejected, and accepting them is a known smuggling vector.
		return nil, nil, errObsFold
	}
	i := 0
	for i < len(line) && tokenBytes[line[i]] {
		i++
	}
	if i == len(line) || line[i] != ':' {
		switch {
		case bytes.IndexByte(line[i:], ':') < 0:
			return nil, nil, errNoColon
		case line[i] == ' ' || line[i] == '\t':
			// §5.1: a server MUST reject whitespace between the field name
			// and the colon with 400.
			return nil, nil, errSpaceBeforeColon
		}
		return nil, nil, errHeaderName
	}
	if i == 0 {
		return nil, nil, errHeaderName
	}
	name, value = line[:i], trimOWS(line[i+1:])
	for _, c := range value {
		// field-value is VCHAR, obs-text, SP and HTAB (§5.5): no CR, NUL or
		// other control character, which some recipients would act on.
		if !valueBytes[c] {
			return nil, nil, errHeaderValue
		}
	}
	return name, value, nil
}

// finishHead checks the rules that need the whole head (RFC 9112 §3.2,
// §6.1, §6.3, §9.3; RFC 9110 §10.1.1) and decides chunked, expectContinue
// and keepAlive. Framing errors come first: they are what makes the request
// unreadable.
func (r *request) finishHead(st *headState) error {
	if r.minor == 1 && !st.sawHost {
		return errNoHost
	}
	if st.sawEncoding {
		switch {
		case r.minor == 0, !st.chunkedLast, st.chunkedEarly:
			return errTransferEncoding
		case st.sawLength:
			return errLengthAndEncoding
		case st.otherCoding:
			return errUnsupported
		}
		r.chunked = true
	}
	if st.expectOther {
		return errExpectation
	}
	if r.contentLength > r.bodyLimit() {
		return errBodyTooLarge
	}
	r.expectContinue = st.expectContinue && r.minor == 1
	if r.minor == 1 {
		r.keepAlive = !st.connClose
	} else {
		r.keepAlive = st.connKeepAlive && !st.connClose
	}
	return nil
}

// nextElement returns the first non-empty element of a comma-separated list
// (RFC 9110 §5.6.1), whitespace trimmed, and the rest of the list after it;
// elem is nil when the list has no more elements.
func nextElement(list []byte) (elem, rest []byte) {
	for len(list) > 0 {
		i := bytes.IndexByte(list, ',')
		if i < 0 {
			elem, list = list, nil
		} else {
			elem, list = list[:i], list[i+1:]
		}
		if elem = trimOWS(elem); len(elem) > 0 {
			return elem, list
		}
	}
	return nil, nil
}

// trimOWS removes leading and trailing SP and HTAB.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b equals s without regard to ASCII case. It is
// bytes.EqualFold without the Unicode case folding, which HTTP's
// case-insensitive tokens do not have, and without converting s.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return len(b) > 0
}

// isSchemeByte reports whether c may stand in a URI scheme: ALPHA first,
// then ALPHA, DIGIT, "+", "-" or "." (RFC 3986 §3.1).
func isSchemeByte(c byte, first bool) bool {
	if 'a' <= lower(c) && lower(c) <= 'z' {
		return true
	}
	return !first && (isDigit(c) || c == '+' || c == '-' || c == '.')
}

// isToken reports whether b is a non-empty token (RFC 9110 §5.6.2).
func isToken(b []byte) bool {
	for _, c := range b {
		if !tokenBytes[c] {
			return false
		}
	}
	return len(b) > 0
}

// isHost reports whether b is made only of the bytes a uri-host [":" port]
// may hold (RFC 3986 §3.2.2: reg-name, IP-literal and IPv4address bytes,
// percent signs, the port's colon). It may be empty: RFC 9110 §7.2 has a
// client send an empty Host when the target has no authority.
func isHost(b []byte) bool {
	for _, c := range b {
		if !hostBytes[c] {
			return false
		}
	}
	return true
}

// Byte classes. They are filled once at start-up and only read after:
// constant tables, not state.
var (
	tokenBytes = byteClass(alnum + "!#$%&'*+-.^_`|~")
	hostBytes  = byteClass(alnum + "-._~" + "!$&'()*+,;=" + ":[]%")
	valueBytes = fieldValueBytes()
)

// fieldValueBytes is the class of bytes a header field value may hold: all
// but the control characters other than HTAB (RFC 9110 §5.5).
func fieldValueBytes() (class [256]bool) {
	for c := range len(class) {
		class[c] = c >= ' ' && c != 0x7f || c == '\t'
	}
	return class
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func byteClass(members string) (class [256]bool) {
	for i := range len(members) {
		class[members[i]] = true
	}
	return class
}
