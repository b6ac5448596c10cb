//go:build race

package reactor

// raceEnabled: the race detector makes sync.Pool drop a share of what it is
// given on purpose, so allocation counts are only meaningful without it.
const raceEnabled = true
