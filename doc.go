// Package reactor is an event-driven TCP server framework built on the
// reactor pattern: non-blocking sockets, readiness notification and a pool of
// event-loop goroutines, behind a small API.
//
// The package documentation grows with the server; see README.md.
package reactor
