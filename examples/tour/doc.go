// Package tour holds the reference solutions of the five exercises at the
// end of docs/tour.md, each with the test that checks it over the
// simulated network (reactor.Sim): deterministic, no sockets, no sleeps.
//
//   - Lines (lines.go): a line protocol, with lines split and pipelined.
//   - RateLimit (ratelimit.go): a per-connection rate limit on the loop's
//     timer (EventLoop.AfterFunc), pausing reading while the queue is full.
//   - Room (broadcast.go): a broadcast to connections of other loops.
//   - Producer (producer.go): a producer that keeps its output bounded
//     for a slow reader (WatermarkHandler).
//   - Frames (frames.go): length-prefixed frames that survive short reads,
//     which break the naive handler in frames_test.go.
//
// To do an exercise yourself, delete the solution's body, keep its test,
// and run it: go test -race ./examples/tour -run TestLines (or
// TestRateLimit, TestRoom, TestProducer, TestFrames).
//
// Every handler here runs its callbacks on the connection's loop
// goroutine; what is shared between loops (Room's members) is guarded by
// a mutex, and what is per connection lives in Conn.Context.
package tour
