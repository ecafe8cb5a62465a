package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/tensor"
)

// unclip serve: an HTTP server that loads the model once and answers
// OpenAI-style and AUTOMATIC1111-style image requests with it.
//
// One generation runs at a time (the pipeline is not safe for concurrent
// use, and one run already uses every core or the whole GPU); the others
// wait in a bounded FIFO queue, and a request that finds it full is
// answered 503 with Retry-After. Every request runs under a context that
// its client's disconnect, the per-request timeout and (with
// --cancel-on-shutdown) the server's shutdown cancel; Generate checks it
// between ops, so a cancelled job stops within one op and the next one in
// the queue starts at once.
//
// No request names a file: models, images and outputs never come from or
// go to a path a client gives. Images are built as unclip generate and
// unclip vary build them, so a response holds byte for byte the PNG that
// the command line writes for the same seed and settings.

// serveFlags are serve's command-line flags.
type serveFlags struct {
	model, revision, variant string
	modelID                  string
	addr                     string
	device                   string
	threads                  int
	precision                string
	mem                      memoryFlags
	apiKey                   string
	maxQueue, maxN           int
	maxSteps, maxPrompt      int
	maxBody, maxUpload       string
	timeout                  time.Duration
	cancelOnShutdown         bool
	quiet                    bool
}

// Defaults of serve's limits.
const (
	defaultMaxQueue  = 16
	defaultMaxN      = 8
	defaultMaxSteps  = 250
	defaultMaxPrompt = 1000 // characters, as OpenAI's DALL-E 2 endpoint
	defaultMaxBody   = 64 << 10
	defaultMaxUpload = 4 << 20 // OpenAI's limit for variation inputs
	defaultTimeout   = 30 * time.Minute
	// maxUploadPixels bounds an uploaded image's width × height, checked
	// from its header before it is decoded.
	maxUploadPixels = 1 << 24
	// recentJobs is how many finished jobs GET /v1/jobs remembers.
	recentJobs = 100
)

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var f serveFlags
	fs.StringVar(&f.model, "m", "", `model, loaded once at start: a diffusers unCLIP folder, a Hugging Face repo id in the local cache, or "demo" (built-in, untrained)`)
	fs.StringVar(&f.model, "model", "", "same as -m")
	fs.StringVar(&f.revision, "revision", "main", "revision of a Hugging Face cached model")
	fs.StringVar(&f.variant, "variant", "", "weight file variant, e.g. fp16")
	fs.StringVar(&f.modelID, "model-id", "", "the model's id in /v1/models and in requests' \"model\" (default: -m as given)")
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "address to listen on (loopback by default; port 0 picks a free one)")
	fs.StringVar(&f.device, "device", "auto", deviceFlagHelp)
	fs.IntVar(&f.threads, "threads", 0, threadsFlagHelp)
	fs.StringVar(&f.precision, "precision", "fp32", precisionFlagHelp)
	f.mem.register(fs)
	fs.StringVar(&f.apiKey, "api-key", "", "require \"Authorization: Bearer KEY\" on every endpoint but /healthz (default: $UNCLIP_API_KEY; none when both are empty)")
	fs.IntVar(&f.maxQueue, "max-queue", defaultMaxQueue, "requests that may wait behind the running one; past it the answer is 503 with Retry-After")
	fs.IntVar(&f.maxN, "max-n", defaultMaxN, "most images in one request (n, batch_size)")
	fs.IntVar(&f.maxSteps, "max-steps", defaultMaxSteps, "most denoising steps a request may ask for in each stage")
	fs.IntVar(&f.maxPrompt, "max-prompt-length", defaultMaxPrompt, "most characters in a prompt (CLIP reads 77 tokens; longer prompts are truncated with a warning)")
	fs.StringVar(&f.maxBody, "max-body", "64KiB", "largest JSON request body")
	fs.StringVar(&f.maxUpload, "max-upload", "4MiB", "largest /v1/images/variations request body (the image upload)")
	fs.DurationVar(&f.timeout, "timeout", defaultTimeout, "per-request limit, waiting in the queue included (0: none); past it the answer is 504")
	fs.BoolVar(&f.cancelOnShutdown, "cancel-on-shutdown", false, "on SIGINT/SIGTERM cancel the running job (answered 503) instead of finishing it")
	fs.BoolVar(&f.quiet, "quiet", false, "no request log on stderr")
	setUsage(fs, "unclip serve -m DIR|REPO|demo [--addr 127.0.0.1:8080] [--api-key KEY] [flags]")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if f.model == "" {
		fmt.Fprintln(stderr, "usage: unclip serve -m DIR|REPO|demo [--addr 127.0.0.1:8080] [flags]   (unclip serve -h lists them)")
		return errUsage
	}
	cfg, err := f.config(stderr)
	if err != nil {
		return err
	}
	// Bind first: a busy port fails at once, not after a 13.7 GB load.
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	cfg.loopback = isLoopback(ln.Addr())
	if !cfg.loopback && cfg.apiKey == "" {
		fmt.Fprintf(stderr, "warning: listening on %s, beyond this machine, with no --api-key: anyone who can reach it can use it\n", ln.Addr())
	}
	dir := f.model
	if f.model != "demo" {
		if dir, err = resolveModel(f.model, f.revision, stderr); err != nil {
			return err
		}
		if _, err := unclip.ModelIndex(dir); err != nil {
			return err
		}
	}
	devOut := io.Writer(stderr)
	if f.quiet {
		devOut = nil
	}
	dev, dtype, err := openCompute(f.device, f.threads, f.precision, &f.mem, devOut)
	if err != nil {
		return err
	}
	t0 := time.Now()
	p, modelName, err := loadPipeline(f.model, dir, f.variant, dev, dtype, f.mem.residency())
	if err != nil {
		return err
	}
	cfg.modelName, cfg.device = modelName, dev.Name()
	fmt.Fprintf(stderr, "unclip serve: loaded %s (%s) on %s in %s (%s)\n", modelName, p.Kind, dev.Name(), round(time.Since(t0)), residencyNote(p))
	// From here the first SIGINT or SIGTERM shuts the server down
	// gracefully (the second exits at once, see signals.go).
	ctx, end := cancellable()
	defer end()
	s := newServer(p, cfg)
	fmt.Fprintf(stderr, "unclip serve: listening on http://%s (model %q, %dx%d images); Ctrl-C stops\n", ln.Addr(), cfg.modelID, s.size, s.size)
	return s.serve(ctx, ln, stderr)
}

// config checks the flags and turns them into the server's settings.
func (f *serveFlags) config(stderr io.Writer) (serveConfig, error) {
	c := serveConfig{modelID: f.modelID, modelArg: f.model, precision: f.precision, apiKey: f.apiKey,
		maxQueue: f.maxQueue, maxN: f.maxN, maxSteps: f.maxSteps, maxPrompt: f.maxPrompt,
		timeout: f.timeout, cancelOnShutdown: f.cancelOnShutdown}
	if c.modelID == "" {
		c.modelID = strings.TrimRight(f.model, "/")
	}
	if c.apiKey == "" {
		c.apiKey = os.Getenv("UNCLIP_API_KEY")
	}
	if !f.quiet {
		c.log = &lockedWriter{w: stderr}
	}
	var err error
	if c.maxBody, err = tensor.ParseBytes(f.maxBody); err != nil {
		return c, fmt.Errorf("--max-body: %w", err)
	}
	if c.maxUpload, err = tensor.ParseBytes(f.maxUpload); err != nil {
		return c, fmt.Errorf("--max-upload: %w", err)
	}
	switch {
	case f.maxQueue < 0 || f.maxQueue > 1<<16:
		return c, fmt.Errorf("--max-queue must be in [0, 65536], got %d", f.maxQueue)
	case f.maxN < 1 || f.maxN > 1024:
		return c, fmt.Errorf("--max-n must be in [1, 1024], got %d", f.maxN)
	case f.maxSteps < 2 || f.maxSteps > maxSteps:
		return c, fmt.Errorf("--max-steps must be in [2, %d], got %d", maxSteps, f.maxSteps)
	case f.maxPrompt < 1 || f.maxPrompt > 1<<20:
		return c, fmt.Errorf("--max-prompt-length must be in [1, 1048576], got %d", f.maxPrompt)
	case c.maxBody < 1<<10 || c.maxBody > 1<<30:
		return c, fmt.Errorf("--max-body must be in [1KiB, 1GiB], got %s", f.maxBody)
	case c.maxUpload < 1<<10 || c.maxUpload > 1<<30:
		return c, fmt.Errorf("--max-upload must be in [1KiB, 1GiB], got %s", f.maxUpload)
	case f.timeout < 0:
		return c, fmt.Errorf("--timeout must not be negative, got %s", f.timeout)
	}
	return c, nil
}

// lockedWriter serialises the request log's writes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// isLoopback reports whether a listener's address is a loopback one.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// serveConfig is the server's settings.
type serveConfig struct {
	modelID   string // the id /v1/models lists and requests may name
	modelName string // the model in generate's image metadata ("demo (tiny, untrained)")
	modelArg  string // -m as given: the model in vary's image metadata
	device    string // the device's name, in the metadata
	precision string // --precision as given, in the metadata
	apiKey    string // "" when no key is required

	maxQueue, maxN      int
	maxSteps, maxPrompt int
	maxBody, maxUpload  int64
	timeout             time.Duration
	cancelOnShutdown    bool
	loopback            bool      // bound to loopback: only local Host names are served
	log                 io.Writer // request log; nil for none
}

// defaultServeConfig is serve's defaults, for tests.
func defaultServeConfig() serveConfig {
	return serveConfig{precision: "fp32", maxQueue: defaultMaxQueue, maxN: defaultMaxN, maxSteps: defaultMaxSteps,
		maxPrompt: defaultMaxPrompt, maxBody: defaultMaxBody, maxUpload: defaultMaxUpload, timeout: defaultTimeout, loopback: true}
}

// server is a loaded pipeline behind the HTTP API, with its job queue.
type server struct {
	cfg  serveConfig
	p    *unclip.Pipeline
	size int // the model's output size (square)
	mux  *http.ServeMux

	// shutdown is cancelled when the server starts shutting down;
	// running jobs listen to it with --cancel-on-shutdown.
	shutdown     context.Context
	stopShutdown context.CancelFunc

	mu      sync.Mutex
	pending []*job          // waiting, in order
	running *job            // nil when idle
	active  map[string]*job // pending and running, by id
	recent  []jobInfo       // finished, oldest first, at most recentJobs
	closing bool
	avgJob  time.Duration // running average of a job's time, for Retry-After
	wake    chan struct{} // a job was queued, or the server is closing
	idle    chan struct{} // closed when the worker has exited
}

// newServer wraps a loaded pipeline; p.OneShot must stay false (the
// pipeline generates again and again).
func newServer(p *unclip.Pipeline, cfg serveConfig) *server {
	p.OneShot = false
	s := &server{cfg: cfg, p: p, active: map[string]*job{}, wake: make(chan struct{}, 1), idle: make(chan struct{})}
	s.size = outputSize(p)
	s.shutdown, s.stopShutdown = context.WithCancel(context.Background())
	s.routes()
	go s.worker()
	return s
}

// outputSize is the side of the pipeline's images: the super-resolution
// U-Net's sample size.
func outputSize(p *unclip.Pipeline) int {
	if p.SRFirst == nil || len(p.SRFirst.Config.SampleSize) == 0 {
		return 0
	}
	return p.SRFirst.Config.SampleSize.At(0)
}

// serve answers requests on ln until ctx is cancelled, then shuts down:
// it stops accepting, answers the queued requests 503, finishes (or with
// cancelOnShutdown cancels) the running job, waits for every response to
// be written, and returns nil.
func (s *server) serve(ctx context.Context, ln net.Listener, stderr io.Writer) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // the body: an upload is at most --max-upload
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.close()
		<-s.idle
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	queued, running := s.close()
	if stderr != nil {
		what := "no job was running"
		if running != "" {
			what = "finishing the running job " + running
			if s.cfg.cancelOnShutdown {
				what = "cancelling the running job " + running
			}
		}
		fmt.Fprintf(stderr, "unclip serve: shutting down: %s; %d queued request(s) answered 503\n", what, queued)
	}
	err := hs.Shutdown(context.Background())
	<-s.idle
	<-errc
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if stderr != nil {
		fmt.Fprintln(stderr, "unclip serve: stopped")
	}
	return nil
}

// close stops taking jobs: the queued ones are answered 503 and, with
// cancelOnShutdown, the running one is cancelled. It returns how many
// were queued and the running job's id ("" when idle).
func (s *server) close() (queued int, running string) {
	s.mu.Lock()
	s.closing = true
	drop := s.pending
	s.pending = nil
	if s.running != nil {
		running = s.running.id
	}
	s.mu.Unlock()
	for _, j := range drop {
		s.finish(j, nil, errShuttingDown())
	}
	if s.cfg.cancelOnShutdown {
		s.stopShutdown()
	}
	s.notify()
	return len(drop), running
}

func (s *server) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// worker runs the queued jobs one at a time, in order, until the server
// closes and the queue is empty.
func (s *server) worker() {
	defer close(s.idle)
	defer s.stopShutdown()
	for {
		s.mu.Lock()
		for len(s.pending) == 0 && !s.closing {
			s.mu.Unlock()
			<-s.wake
			s.mu.Lock()
		}
		if len(s.pending) == 0 {
			s.mu.Unlock()
			return
		}
		j := s.pending[0]
		s.pending[0] = nil
		s.pending = s.pending[1:]
		s.running = j
		s.mu.Unlock()
		s.execute(j)
		s.mu.Lock()
		s.running = nil
		s.mu.Unlock()
	}
}

// execute runs one job and records its outcome.
func (s *server) execute(j *job) {
	if j.ctx.Err() != nil { // cancelled while it waited
		s.finish(j, nil, causeError(j.ctx))
		return
	}
	t0 := time.Now()
	j.setStatus(jobRunning, t0)
	resp, err := func() (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("internal error: %v", r)
			}
		}()
		return j.run(j.ctx, j)
	}()
	if err != nil && j.ctx.Err() != nil {
		err = causeError(j.ctx)
	}
	s.mu.Lock()
	d := time.Since(t0)
	if s.avgJob == 0 {
		s.avgJob = d
	} else {
		s.avgJob = (3*s.avgJob + d) / 4
	}
	s.mu.Unlock()
	s.finish(j, resp, err)
}

// submit queues j, or refuses it with 503 when the queue is full or the
// server is shutting down.
func (s *server) submit(j *job) *apiError {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errShuttingDown()
	}
	inSystem := len(s.pending)
	if s.running != nil {
		inSystem++
	}
	if inSystem > s.cfg.maxQueue {
		after := s.retryAfterLocked()
		s.mu.Unlock()
		e := newAPIError(http.StatusServiceUnavailable, "server_error", "queue_full",
			fmt.Sprintf("the queue is full (%d waiting behind the running job); retry in about %d s", s.cfg.maxQueue, after), "")
		e.retryAfter = after
		return e
	}
	s.pending = append(s.pending, j)
	s.active[j.id] = j
	// A request that goes away while queued leaves the queue at once.
	j.stopWatch = context.AfterFunc(j.ctx, func() { s.dequeue(j) })
	s.mu.Unlock()
	s.notify()
	return nil
}

// dequeue removes a cancelled job from the queue, if it is still there.
func (s *server) dequeue(j *job) {
	s.mu.Lock()
	found := false
	for i, q := range s.pending {
		if q == j {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			found = true
			break
		}
	}
	s.mu.Unlock()
	if found {
		s.finish(j, nil, causeError(j.ctx))
	}
}

// retryAfterLocked estimates the seconds until a queue slot frees: the
// running average job time (s.mu held).
func (s *server) retryAfterLocked() int {
	sec := int(math.Ceil(s.avgJob.Seconds()))
	return min(max(sec, 1), 3600)
}

// finish records j's outcome once: the waiting handler gets it, the event
// streams end, and the job moves to the recent list.
func (s *server) finish(j *job, resp any, err error) {
	if !j.complete(resp, err) {
		return
	}
	if j.stopWatch != nil {
		j.stopWatch()
	}
	info := j.info(-1)
	s.mu.Lock()
	delete(s.active, j.id)
	if len(s.recent) == recentJobs {
		copy(s.recent, s.recent[1:])
		s.recent = s.recent[:recentJobs-1]
	}
	s.recent = append(s.recent, info)
	s.mu.Unlock()
	if s.cfg.log != nil && err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.status >= 500 || !errors.As(err, &ae) {
			fmt.Fprintf(s.cfg.log, "unclip serve: job %s: %v\n", j.id, err)
		}
	}
}

// lookup returns the status of a job, active or recent.
func (s *server) lookup(id string) (jobInfo, *job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.active[id]; ok {
		return j.info(s.positionLocked(j)), j, true
	}
	for i := len(s.recent) - 1; i >= 0; i-- {
		if s.recent[i].ID == id {
			return s.recent[i], nil, true
		}
	}
	return jobInfo{}, nil, false
}

// positionLocked is j's 1-based place in the queue, 0 when it runs, −1
// when it is in neither (s.mu held).
func (s *server) positionLocked(j *job) int {
	if s.running == j {
		return 0
	}
	for i, q := range s.pending {
		if q == j {
			return i + 1
		}
	}
	return -1
}

// jobs lists the running job, the queued ones and the recent ones.
func (s *server) jobs() []jobInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []jobInfo
	if s.running != nil {
		out = append(out, s.running.info(0))
	}
	for i, j := range s.pending {
		out = append(out, j.info(i+1))
	}
	for i := len(s.recent) - 1; i >= 0; i-- {
		out = append(out, s.recent[i])
	}
	return out
}

// queueState is the number of queued jobs and whether one runs.
func (s *server) queueState() (queued int, busy, closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending), s.running != nil, s.closing
}
