package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// A job is one image request in the server's queue: its settings are
// checked before it is queued, and run does the work on the worker.

// Job states, as GET /v1/jobs/{id} reports them.
const (
	jobQueued    = "queued"
	jobRunning   = "running"
	jobSucceeded = "succeeded"
	jobFailed    = "failed"
	jobCancelled = "cancelled"
)

// Causes of a job's cancellation, told apart with context.Cause.
var (
	errJobTimeout   = errors.New("the request took longer than the server's --timeout")
	errShutdownKill = errors.New("the server is shutting down")
)

// job is one queued or running request.
type job struct {
	id, endpoint string
	n            int
	created      time.Time
	ctx          context.Context // cancelled by the client's disconnect, the timeout or (with --cancel-on-shutdown) the shutdown
	run          func(ctx context.Context, j *job) (any, error)
	rep          *reporter // progress, as the CLI's --json events, written to the job
	stopWatch    func() bool
	done         chan struct{} // closed when the outcome is known

	mu       sync.Mutex
	status   string
	started  time.Time
	finished time.Time
	last     []byte // the latest event
	warnings []string
	subs     map[chan []byte]struct{}
	resp     any // until the handler takes it
	err      *apiError
}

// newJob makes a job for the request r; the returned function releases
// the job's context (call it when the response is written).
func (s *server) newJob(r *http.Request, endpoint string, n int, run func(ctx context.Context, j *job) (any, error)) (*job, func()) {
	ctx, cancel := context.WithCancelCause(r.Context())
	release := []func(){func() { cancel(nil) }}
	if s.cfg.cancelOnShutdown {
		stop := context.AfterFunc(s.shutdown, func() { cancel(errShutdownKill) })
		release = append(release, func() { stop() })
	}
	if s.cfg.timeout > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeoutCause(ctx, s.cfg.timeout, errJobTimeout)
		release = append(release, cancelT)
	}
	j := &job{id: "job-" + rand.Text()[:20], endpoint: endpoint, n: n, created: time.Now(), ctx: ctx, run: run,
		done: make(chan struct{}), status: jobQueued, subs: map[chan []byte]struct{}{}}
	j.rep = &reporter{w: j, mode: "json"}
	return j, func() {
		for _, f := range slices.Backward(release) {
			f()
		}
	}
}

// Write takes the reporter's JSON lines (one event a call) and passes
// them to the job's event streams.
func (j *job) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	if len(line) == 0 {
		return len(p), nil
	}
	line = bytes.Clone(line)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.last = line
	for ch := range j.subs {
		select {
		case ch <- line:
		default: // a slow reader misses progress events, never the end
		}
	}
	return len(p), nil
}

// warn records a warning for the response (once) and reports it as a
// warning event.
func (j *job) warn(msg string) {
	j.mu.Lock()
	seen := slices.Contains(j.warnings, msg)
	if !seen {
		j.warnings = append(j.warnings, msg)
	}
	j.mu.Unlock()
	if !seen {
		j.rep.warn(msg)
	}
}

// warningList is the warnings so far.
func (j *job) warningList() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.warnings)
}

func (j *job) setStatus(st string, at time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.status, j.started = st, at
}

// complete records the outcome; it reports false when there already was
// one.
func (j *job) complete(resp any, err error) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.status != jobQueued && j.status != jobRunning {
		return false
	}
	j.finished = time.Now()
	switch {
	case err == nil:
		j.status, j.resp = jobSucceeded, resp
	default:
		j.err = toAPIError(err)
		j.status = jobFailed
		if j.err.Code == "cancelled" || j.err.Code == "shutting_down" {
			j.status = jobCancelled
		}
	}
	for ch := range j.subs {
		close(ch)
	}
	j.subs = nil
	close(j.done)
	return true
}

// outcome takes the job's response (once) or its error; a job that is
// not finished yet reports why its context ended.
func (j *job) outcome() (any, *apiError) {
	j.mu.Lock()
	defer j.mu.Unlock()
	switch j.status {
	case jobQueued, jobRunning:
		return nil, causeError(j.ctx)
	case jobSucceeded:
		resp := j.resp
		j.resp = nil
		return resp, nil
	}
	return nil, j.err
}

// subscribe returns a channel of the job's events, closed when the job
// ends; nil when it has ended already.
func (j *job) subscribe() chan []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.subs == nil {
		return nil
	}
	ch := make(chan []byte, 64)
	j.subs[ch] = struct{}{}
	return ch
}

func (j *job) unsubscribe(ch chan []byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.subs, ch) // a no-op once the job has ended
}

// jobInfo is a job's status, as GET /v1/jobs/{id} answers it.
type jobInfo struct {
	ID            string          `json:"id"`
	Object        string          `json:"object"`
	Endpoint      string          `json:"endpoint"`
	Status        string          `json:"status"`
	N             int             `json:"n"`
	Created       int64           `json:"created"`
	QueuePosition int             `json:"queue_position,omitempty"`
	StartedAt     int64           `json:"started_at,omitempty"`
	FinishedAt    int64           `json:"finished_at,omitempty"`
	ElapsedS      float64         `json:"elapsed_s,omitempty"`
	Progress      json.RawMessage `json:"progress,omitempty"`
	Warnings      []string        `json:"warnings,omitempty"`
	Error         *apiError       `json:"error,omitempty"`
}

// info is j's status; pos is its place in the queue (see positionLocked).
func (j *job) info(pos int) jobInfo {
	j.mu.Lock()
	defer j.mu.Unlock()
	in := jobInfo{ID: j.id, Object: "job", Endpoint: j.endpoint, Status: j.status, N: j.n, Created: j.created.Unix(),
		Progress: j.last, Warnings: slices.Clone(j.warnings), Error: j.err}
	if j.status == jobQueued && pos > 0 {
		in.QueuePosition = pos
	}
	if !j.started.IsZero() {
		in.StartedAt = j.started.Unix()
		end := j.finished
		if end.IsZero() {
			end = time.Now()
		}
		in.ElapsedS = end.Sub(j.started).Seconds()
	}
	if !j.finished.IsZero() {
		in.FinishedAt = j.finished.Unix()
	}
	return in
}

// causeError says why a job's context ended.
func causeError(ctx context.Context) *apiError {
	switch cause := context.Cause(ctx); {
	case cause == nil:
		return newAPIError(http.StatusInternalServerError, "server_error", "internal_error", "the job ended without an outcome", "")
	case errors.Is(cause, errJobTimeout):
		return newAPIError(http.StatusGatewayTimeout, "server_error", "timeout", cause.Error(), "")
	case errors.Is(cause, errShutdownKill):
		e := errShuttingDown()
		e.Message = "the server is shutting down: the job was cancelled"
		return e
	}
	// The client went away (or the request's context ended otherwise).
	return newAPIError(499, "invalid_request_error", "cancelled", "the request was cancelled (the client disconnected)", "")
}

func errShuttingDown() *apiError {
	e := newAPIError(http.StatusServiceUnavailable, "server_error", "shutting_down", "the server is shutting down", "")
	e.retryAfter = 10
	return e
}

// sse writes server-sent events.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// startSSE sends the headers of an event stream.
func startSSE(w http.ResponseWriter) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	e := &sse{w: w, rc: http.NewResponseController(w)}
	e.rc.Flush()
	return e
}

// send writes one event whose data is a JSON value (one line).
func (e *sse) send(v any) error {
	data, ok := v.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(v); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(e.w, "data: %s\n\n", bytes.TrimSpace(data)); err != nil {
		return err
	}
	return e.rc.Flush()
}

// stream relays j's events to the client until the job ends, then sends
// final's event. first is sent before any other.
func (s *server) stream(w http.ResponseWriter, r *http.Request, j *job, first any, final func() any) {
	ch := j.subscribe()
	if ch != nil {
		defer j.unsubscribe(ch)
	}
	ev := startSSE(w)
	if ev.send(first) != nil {
		return
	}
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for ch != nil {
		select {
		case line, ok := <-ch:
			if !ok {
				ch = nil
				break
			}
			if ev.send(line) != nil {
				return
			}
		case <-keepAlive.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || ev.rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
	<-j.done
	ev.send(final())
}
