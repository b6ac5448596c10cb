package extest

import (
	"os"
	"os/exec"
	"testing"
)

// Need returns the path of tool, found on PATH, which the Debian package
// pkg provides. Without it the test skips, saying what to install (see
// Missing).
func Need(t testing.TB, tool, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		Missing(t, tool, pkg)
	}
	return path
}

// Missing skips the test for want of what, saying which Debian packages
// (pkgs, separated by spaces) provide it, except in CI (the environment
// variable CI is "true"), where it fails the test: CI installs the tools
// the tests use, and a skip there would prove nothing.
func Missing(t testing.TB, what, pkgs string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found, and CI must run this test: apt-get install -y %s", what, pkgs)
	}
	t.Skipf("%s not found: apt-get install -y %s to run this test", what, pkgs)
}
