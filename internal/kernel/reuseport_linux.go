package kernel

import (
	"fmt"
	"os"
	"strings"
)

// MigrateReqPath is the sysctl net.ipv4.tcp_migrate_req (Linux 5.14 and
// later; Documentation/networking/ip-sysctl.rst). It is per network
// namespace: /proc/sys/net shows the namespace of the process reading it.
// Despite "ipv4" in its name it governs TCP over IPv6 too.
const MigrateReqPath = "/proc/sys/net/ipv4/tcp_migrate_req"

// ReusePortMigrates reports whether closing a SO_REUSEPORT listener hands
// the connections still queued in it to another listener of its group
// (another socket bound to the same address with SO_REUSEPORT), which is
// what net.ipv4.tcp_migrate_req=1 does: both the connections in the accept
// queue and those still in their three-way handshake move to a live
// listener. Otherwise (the default, 0, and every kernel before 5.14, which
// lacks the sysctl and makes this return an error wrapping fs.ErrNotExist)
// the kernel resets them: each SO_REUSEPORT socket has its own accept
// queue, and a closed listener's queue dies with it. (An eBPF program of
// type BPF_SK_REUSEPORT_SELECT_OR_MIGRATE can migrate them too; reactor
// attaches none.)
func ReusePortMigrates() (bool, error) {
	b, err := os.ReadFile(MigrateReqPath)
	if err != nil {
		return false, err
	}
	switch v := strings.TrimSpace(string(b)); v {
	case "0":
		return false, nil
	case "1":
		return true, nil
	default:
		return false, fmt.Errorf("%s: unexpected value %q", MigrateReqPath, v)
	}
}
