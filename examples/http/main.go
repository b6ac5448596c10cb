// Command http will be the reactor HTTP/1.1 example server. Until the server
// lands, this file is its interim entry point: a small tool that reads raw
// requests from standard input, parses them with the parser the server will
// use (parse.go), and prints each request it parsed, or the error and the
// response the server would answer it with. The lead replaces this file with
// the reactor server; parse.go and response.go stay.
//
// Usage:
//
//	printf 'GET /a?b=1 HTTP/1.1\r\nHost: example\r\n\r\n' | go run ./examples/http
//	go run ./examples/http -lf < requests.txt
//
// Requests may be pipelined: the input is parsed request after request, as
// the server parses a connection's input. The parser requires CRLF line
// ends; -lf turns every bare LF of the input into CRLF first, bodies
// included (a Content-Length must count the CRs it adds). The exit status is 0 if the input
// was whole requests only, 1 if it ended inside a request or held a bad one,
// 2 if it could not be read.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	lf := flag.Bool("lf", false, "turn every bare LF in the input into CRLF first (for requests typed by hand; the parser itself requires CRLF)")
	flag.Parse()
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "http:", err)
		os.Exit(2)
	}
	if *lf {
		in = lfToCRLF(in)
	}
	os.Exit(run(os.Stdout, in))
}

// run parses in request after request and describes each on w. It returns
// the exit status (see the package comment).
func run(w io.Writer, in []byte) int {
	var req request
	off := 0
	for i := 1; off < len(in); i++ {
		n, err := parseRequest(in[off:], &req)
		switch {
		case errors.Is(err, errNeedMore):
			fmt.Fprintf(w, "incomplete request: %d bytes left at offset %d\n", len(in)-off, off)
			return 1
		case err != nil:
			status := errorStatus(err)
			fmt.Fprintf(w, "request %d at offset %d: %v\nanswer:\n", i, off, err)
			resp := appendResponse(nil, nil, status, "text/plain; charset=utf-8", []byte(statusText(status)+"\n"), connClose)
			fmt.Fprintf(w, "%s", resp)
			return 1
		}
		fmt.Fprintf(w, "request %d: bytes %d..%d (%d bytes)\n", i, off, off+n, n)
		describe(w, &req)
		off += n
	}
	return 0
}

// describe prints the parsed fields of req, quoting byte strings so that
// nothing in them can pass for another line.
func describe(w io.Writer, req *request) {
	fmt.Fprintf(w, "  method      %q\n", req.method)
	fmt.Fprintf(w, "  target      %q\n", req.target)
	fmt.Fprintf(w, "  path        %q\n", req.path)
	if req.query != nil {
		fmt.Fprintf(w, "  query       %q\n", req.query)
	}
	fmt.Fprintf(w, "  proto       %q (%d.%d)\n", req.proto, req.major, req.minor)
	if req.host != nil {
		fmt.Fprintf(w, "  host        %q\n", req.host)
	}
	for _, h := range req.fields() {
		fmt.Fprintf(w, "  header      %q: %q\n", h.name, h.value)
	}
	fmt.Fprintf(w, "  body        %d bytes %q\n", len(req.body), req.body)
	fmt.Fprintf(w, "  keep-alive  %t\n", req.keepAlive)
}

// lfToCRLF returns in with every LF not already preceded by CR turned into
// CRLF.
func lfToCRLF(in []byte) []byte {
	out := make([]byte, 0, len(in)+bytes.Count(in, []byte("\n")))
	for i, c := range in {
		if c == '\n' && (i == 0 || in[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
