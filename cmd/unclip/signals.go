package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Interrupts. The first SIGINT or SIGTERM during a cancellable phase (the
// denoising of generate and bench pipeline, checked between ops) asks the
// run to stop and says so; a second one, or the first outside such a
// phase (loading), exits at once. Either way temporary output files are
// removed and the exit status is 130 for SIGINT and 143 for SIGTERM, as a
// shell reports a process killed by them.

// interrupts is the process's signal state.
type interrupts struct {
	mu     sync.Mutex
	sig    os.Signal          // the first signal received, nil before
	cancel context.CancelFunc // the cancellable phase's, nil outside one
}

var intr interrupts

// watchSignals installs the handler (main only: tests run commands in
// process without it).
func watchSignals(stderr io.Writer) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		for s := range ch {
			if !intr.receive(s) {
				fmt.Fprintf(stderr, "\nunclip: %s: stopping after the current operation (press Ctrl-C again to exit now)\n", signalName(s))
				continue
			}
			removeTempFiles()
			fmt.Fprintf(stderr, "\nunclip: %s: exiting now; no partial file is left behind\n", signalName(s))
			os.Exit(signalStatus(intr.first()))
		}
	}()
}

// receive records signal s and cancels the running phase; it reports
// whether the process should exit at once: s is a second signal, or
// arrived outside a cancellable phase.
func (in *interrupts) receive(s os.Signal) (exitNow bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	first := in.sig == nil
	if first {
		in.sig = s
	}
	if first && in.cancel != nil {
		in.cancel()
		return false
	}
	return true
}

// first returns the first signal received, or nil.
func (in *interrupts) first() os.Signal {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.sig
}

// cancellable starts a phase that the first signal stops through the
// returned context; end it with the returned function.
func cancellable() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	intr.mu.Lock()
	if intr.sig != nil {
		cancel()
	}
	intr.cancel = cancel
	intr.mu.Unlock()
	return ctx, func() {
		intr.mu.Lock()
		intr.cancel = nil
		intr.mu.Unlock()
		cancel()
	}
}

// interrupted returns the first signal received, or nil.
func interrupted() os.Signal { return intr.first() }

// signalStatus is the exit status for a run stopped by s.
func signalStatus(s os.Signal) int {
	if s == syscall.SIGTERM {
		return 128 + int(syscall.SIGTERM)
	}
	return 128 + int(syscall.SIGINT)
}

func signalName(s os.Signal) string {
	if s == syscall.SIGTERM {
		return "terminated (SIGTERM)"
	}
	return "interrupted (SIGINT)"
}
