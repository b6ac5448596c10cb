package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRequest(t *testing.T) {
	const get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name      string
		in        string
		err       error
		method    string
		path      string
		keepAlive bool
		size      int
	}{
		{name: "simple", in: get, method: "GET", path: "/", keepAlive: true, size: len(get)},
		{name: "pipelined takes the first", in: get + get, method: "GET", path: "/", keepAlive: true, size: len(get)},
		{name: "prefix", in: get[:len(get)-1], err: errIncomplete},
		{name: "empty", in: "", err: errIncomplete},
		{name: "http/1.0 closes", in: "GET /a HTTP/1.0\r\n\r\n", method: "GET", path: "/a", size: 19},
		{name: "http/1.0 keep-alive", in: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", method: "GET", path: "/", keepAlive: true, size: 42},
		{name: "connection close", in: "GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", method: "GET", path: "/", size: 42},
		{name: "body counted", in: "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", method: "POST", path: "/", keepAlive: true, size: 41},
		{name: "body incomplete", in: "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab", err: errIncomplete},
		{name: "conflicting lengths", in: "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", err: errBadRequest},
		{name: "signed length", in: "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", err: errBadRequest},
		{name: "chunked refused", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", err: errUnsupported},
		{name: "no version", in: "GET /\r\n\r\n", err: errBadRequest},
		{name: "bad version", in: "GET / HTTP/2.0\r\n\r\n", err: errBadRequest},
		{name: "bad method", in: "G(T / HTTP/1.1\r\n\r\n", err: errBadRequest},
		{name: "header without colon", in: "GET / HTTP/1.1\r\nHost x\r\n\r\n", err: errBadRequest},
		{name: "folded header", in: "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", err: errBadRequest},
		{name: "huge unfinished header", in: "GET / HTTP/1.1\r\nA: " + strings.Repeat("x", maxHeaderBytes), err: errHeaderTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseRequest([]byte(tt.in))
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.method, string(r.method))
			assert.Equal(t, tt.path, string(r.path))
			assert.Equal(t, tt.keepAlive, r.keepAlive)
			assert.Equal(t, tt.size, r.size)
		})
	}
}

// TestParseRequestEveryPrefix checks that each proper prefix of a request is
// reported incomplete, never as a request or an error: input arrives in
// arbitrary pieces.
func TestParseRequestEveryPrefix(t *testing.T) {
	full := "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
	for i := 0; i < len(full); i++ {
		_, err := parseRequest([]byte(full[:i]))
		assert.ErrorIs(t, err, errIncomplete, "prefix %d", i)
	}
	r, err := parseRequest([]byte(full))
	require.NoError(t, err)
	assert.Equal(t, len(full), r.size)
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b)
		if err != nil {
			return
		}
		if r.size <= 0 || r.size > len(b) {
			t.Fatalf("size %d outside input of %d bytes", r.size, len(b))
		}
	})
}
