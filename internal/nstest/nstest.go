// Package nstest runs a test again, from the same test binary, inside new
// Linux namespaces, for the tests that must change what the host must not:
// a network sysctl such as net.ipv4.tcp_migrate_req, which is per network
// namespace. Nothing the test does inside reaches the host.
//
//   - A user namespace, in which the test is root (uid and gid 0, mapped to
//     the caller's), so that no privilege is needed where the kernel lets
//     unprivileged users create user namespaces (most distributions; not
//     where kernel.unprivileged_userns_clone=0,
//     kernel.apparmor_restrict_unprivileged_userns=1 or a seccomp filter,
//     such as Docker's default one, forbids it).
//   - A network namespace, owned by that user namespace: its own loopback
//     (down until Setup brings it up) and its own sysctls under
//     /proc/sys/net, which the test may write.
//   - A PID namespace, in which the test is process 1: when it exits, for
//     whatever reason, the kernel kills every process left in it, so a
//     failing test leaves no process behind. The test process is also given
//     SIGKILL if its parent dies (the go test binary that started it).
//
// The child is the test binary run with -test.run set to the test's name
// and an environment variable that Inside reports; the test calls Setup
// first, then does its work. Nothing here imports testing.
package nstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const envInside = "REACTOR_NSTEST_INSIDE"

// unavailableMark starts the line a child prints when Setup fails: the
// namespaces were made, but are not usable (no capability in them).
const unavailableMark = "nstest: namespaces unavailable: "

// ErrUnavailable is wrapped by Run's error when the namespaces cannot be
// made or used here.
var ErrUnavailable = errors.New("nstest: cannot run in new user, network and PID namespaces here")

// Inside reports whether this process is a child started by Run.
func Inside() bool { return os.Getenv(envInside) == "1" }

// Command returns the command Run runs: this test binary, running the tests
// that match the -test.run pattern run, verbosely, in new user, network and
// PID namespaces. ctx bounds it (it is killed when ctx ends).
func Command(ctx context.Context, run string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+run, "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envInside+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		// Writing gid_map unprivileged requires setgroups to be denied.
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  syscall.SIGKILL,
	}
	return cmd
}

// Run runs Command and returns its output (stdout and stderr together),
// with an error if it failed: one wrapping ErrUnavailable if the namespaces
// could not be made, or the child found them unusable (see Setup).
func Run(ctx context.Context, run string) (string, error) {
	cmd := Command(ctx, run)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		// EPERM (not allowed), EINVAL or ENOSPC (no namespaces, or too
		// many): either way they cannot be had here.
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	err := cmd.Wait()
	s := out.String()
	if i := strings.Index(s, unavailableMark); i >= 0 {
		line, _, _ := strings.Cut(s[i+len(unavailableMark):], "\n")
		return s, fmt.Errorf("%w: %s", ErrUnavailable, line)
	}
	if err != nil {
		return s, fmt.Errorf("nstest: the child failed: %w", err)
	}
	return s, nil
}

// Setup prepares the namespaces, in the child: it brings the loopback
// interface up (127.0.0.1 and ::1) and writes each sysctl, given by its
// path under /proc/sys (e.g. "net/ipv4/tcp_migrate_req") with its value.
// If that fails for want of a capability, it prints the line Run looks for,
// so that the parent reports the namespaces as unavailable rather than the
// test as failed; the child should then skip.
func Setup(sysctls map[string]string) error {
	err := loopbackUp()
	for k, v := range sysctls {
		if err != nil {
			break
		}
		err = SetSysctl(k, v)
	}
	if err != nil {
		fmt.Println(unavailableMark + err.Error())
	}
	return err
}

// SetSysctl writes value to the sysctl at /proc/sys/name. For a network
// sysctl this changes the namespace of the calling process only.
func SetSysctl(name, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0)
}

// loopbackUp sets IFF_UP on lo, as `ip link set lo up` does.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCGIFFLAGS lo", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCSIFFLAGS lo", err)
	}
	return nil
}
