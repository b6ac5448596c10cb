package extest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// StuckOutputSize returns an amount of output that a server cannot get rid
// of while its client does not read, provided the client's receive buffer
// was made small (net.TCPConn.SetReadBuffer(4096), which also stops the
// kernel from growing it): twice the most a TCP send buffer may grow to
// (the third value of net.ipv4.tcp_wmem, 4 MiB by default), plus 1 MiB.
// Once a server has accepted that much output for such a client, some of it
// stays in the server's own buffers, so its graceful shutdown cannot
// finish.
func StuckOutputSize() (int, error) {
	const path = "/proc/sys/net/ipv4/tcp_wmem"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return 0, fmt.Errorf("%s: want 3 values, got %q", path, b)
	}
	max, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return 2*max + 1<<20, nil
}
