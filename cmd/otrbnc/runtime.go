package main

import (
	"log/slog"
	"os"
	"runtime"
)

// schedulerThreads returns how many threads should run Go code at once
// (GOMAXPROCS) for a bouncer with networks networks, given the runtime's
// default (the CPUs available to the process): one per network, at most
// the default.
//
// Each network's IRC and OTR work runs on one goroutine (proxy's owner
// model), so that is all the parallelism otrbnc's work has; the socket
// readers beside it only parse lines. A spare thread does not make a
// network faster but costs a thread wake-up, spin and sleep each time a
// reader hands a line to its owner: on the plain-message benchmark that
// was about a third of otrbnc's CPU per message in closed loop, and the
// 1,000-conversation load and round-trip benchmarks were no slower with
// one thread (docs/performance.md).
func schedulerThreads(networks, available int) int {
	return max(1, min(networks, available))
}

// tuneRuntime applies schedulerThreads unless GOMAXPROCS is set in the
// environment (which always wins).
func tuneRuntime(networks int, logger *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	n := schedulerThreads(networks, runtime.GOMAXPROCS(0))
	if n != runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(n)
	}
	logger.Debug("scheduler threads", "gomaxprocs", n, "networks", networks)
}
