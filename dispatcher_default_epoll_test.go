//go:build !reactor_poll

package reactor

// wantDefaultDispatcher is the backend a build without -tags reactor_poll
// uses by default (see TestDefaultDispatcherFollowsBuildTag).
const wantDefaultDispatcher = "*reactor.epollDispatcher"
