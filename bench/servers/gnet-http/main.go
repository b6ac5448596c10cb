// Command gnet-http is the gnet v2 HTTP/1.1 plaintext peer for the
// side-by-side benchmarks: it answers GET / with "Hello, World!", pipelined
// requests included, as gnet's own TechEmpower entry does.
//
// Unlike a byte-counting shortcut it parses every request (request line,
// headers, Content-Length body; see request.go), keeps a partial request in
// gnet's inbound buffer until the rest arrives, answers all complete requests
// of one read with a single Write, honours Connection: close and HTTP/1.0, and
// answers 404 for other paths, 405 for methods other than GET and HEAD, and
// 400 (then closes) for malformed input. -addr and -loops as the echo peers.
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"
)

const helloBody = "Hello, World!"

type httpServer struct {
	gnet.BuiltinEventEngine
}

// codec is one connection's response buffer, reused across reads. It belongs
// to the connection and is touched only on its event loop.
type codec struct {
	out []byte
}

func (*httpServer) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(&codec{out: make([]byte, 0, 4096)})
	return nil, gnet.None
}

// OnTraffic answers every complete request buffered on c, in order.
func (*httpServer) OnTraffic(c gnet.Conn) gnet.Action {
	cd := c.Context().(*codec)
	in, _ := c.Peek(-1)
	now := time.Now().UTC()
	consumed, action := 0, gnet.None
	for consumed < len(in) {
		req, err := parseRequest(in[consumed:])
		if err == errIncomplete {
			break
		}
		if err != nil {
			status := http.StatusBadRequest
			switch err {
			case errHeaderTooLarge:
				status = http.StatusRequestHeaderFieldsTooLarge
			case errUnsupported:
				status = http.StatusNotImplemented
			}
			cd.out = appendResponse(cd.out, now, status, false, false)
			consumed, action = len(in), gnet.Close
			break
		}
		consumed += req.size
		head := string(req.method) == "HEAD"
		status := http.StatusOK
		switch {
		case string(req.method) != "GET" && !head:
			status = http.StatusMethodNotAllowed
		case string(req.path) != "/":
			status = http.StatusNotFound
		}
		cd.out = appendResponse(cd.out, now, status, head, req.keepAlive)
		if !req.keepAlive {
			action = gnet.Close
			break
		}
	}
	if consumed > 0 {
		_, _ = c.Discard(consumed) // Discard(0) would drop everything
	}
	if len(cd.out) > 0 {
		if _, err := c.Write(cd.out); err != nil {
			action = gnet.Close
		}
		cd.out = cd.out[:0]
	}
	return action
}

// appendResponse appends one complete response: the body is "Hello, World!"
// for 200 and the status text otherwise (omitted for HEAD).
func appendResponse(b []byte, now time.Time, status int, head, keepAlive bool) []byte {
	body := helloBody
	if status != http.StatusOK {
		body = http.StatusText(status)
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\nServer: gnet\r\nContent-Type: text/plain; charset=utf-8\r\nDate: "...)
	b = now.AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	if !keepAlive {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	if !head {
		b = append(b, body...)
	}
	return b
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "event loops")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	err := gnet.Run(&httpServer{}, "tcp://"+*addr,
		gnet.WithMulticore(*loops > 1),
		gnet.WithNumEventLoop(*loops))
	log.Fatal(err)
}
