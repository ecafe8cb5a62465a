package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // image.DecodeConfig of uploads
	_ "image/png"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/unclip"
)

// The HTTP API. Every error is JSON: {"error": {"message", "type",
// "code", "param"}}, the shape OpenAI's clients read.

// apiError is an error answered to the client.
type apiError struct {
	status     int
	Message    string `json:"message"`
	Type       string `json:"type"`
	Param      string `json:"param,omitempty"`
	Code       string `json:"code,omitempty"`
	retryAfter int    // seconds; 0: no Retry-After header
}

func (e *apiError) Error() string { return e.Message }

func newAPIError(status int, typ, code, msg, param string) *apiError {
	return &apiError{status: status, Type: typ, Code: code, Message: msg, Param: param}
}

// badRequest is a 400 about the request's parameter param.
func badRequest(code, param, format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "invalid_request_error", code, fmt.Sprintf(format, args...), param)
}

// toAPIError turns any error into the one answered.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return newAPIError(http.StatusInternalServerError, "server_error", "generation_failed", err.Error(), "")
}

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// writeError answers err as a JSON error.
func writeError(w http.ResponseWriter, err error) {
	e := toAPIError(err)
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="unclip"`)
	}
	writeJSON(w, e.status, map[string]any{"error": e})
}

// routes registers the endpoints.
func (s *server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("/healthz", s.get(s.handleHealth))
	m.HandleFunc("/v1/models", s.get(s.handleModels))
	m.HandleFunc("/v1/models/{id...}", s.get(s.handleModel))
	m.HandleFunc("/v1/images/generations", s.post(s.handleGenerations))
	m.HandleFunc("/v1/images/variations", s.post(s.handleVariations))
	m.HandleFunc("/sdapi/v1/txt2img", s.post(s.handleTxt2Img))
	m.HandleFunc("/v1/jobs", s.get(s.handleJobs))
	m.HandleFunc("/v1/jobs/{id}", s.get(s.handleJob))
	m.HandleFunc("/v1/jobs/{id}/events", s.get(s.handleJobEvents))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, newAPIError(http.StatusNotFound, "invalid_request_error", "not_found",
			fmt.Sprintf("no endpoint %s; see GET /v1/models, POST /v1/images/generations, POST /v1/images/variations, POST /sdapi/v1/txt2img, GET /v1/jobs", r.URL.Path), ""))
	})
	s.mux = m
}

// get and post check the method (405 with Allow otherwise).
func (s *server) get(h http.HandlerFunc) http.HandlerFunc {
	return method(h, http.MethodGet, http.MethodHead)
}
func (s *server) post(h http.HandlerFunc) http.HandlerFunc { return method(h, http.MethodPost) }

func method(h http.HandlerFunc, allowed ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(allowed, r.Method) {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeError(w, newAPIError(http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed",
				fmt.Sprintf("%s %s: method not allowed (use %s)", r.Method, r.URL.Path, strings.Join(allowed, " or ")), ""))
			return
		}
		h(w, r)
	}
}

// statusWriter remembers the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController flush event streams.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP checks the Host, the Origin and the API key, then routes.
func (s *server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			if s.cfg.log != nil {
				fmt.Fprintf(s.cfg.log, "unclip serve: panic serving %s %s: %v\n", r.Method, r.URL.Path, v)
			}
			if w.status == 0 {
				writeError(w, newAPIError(http.StatusInternalServerError, "server_error", "internal_error", "internal error", ""))
			}
		}
		if s.cfg.log != nil {
			fmt.Fprintf(s.cfg.log, "unclip serve: %s %s %d %s%s\n", r.Method, r.URL.Path, w.status, round(time.Since(t0)), jobNote(w))
		}
	}()
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if err := s.checkOrigin(r); err != nil {
		writeError(w, err)
		return
	}
	if r.URL.Path != "/healthz" {
		if err := s.authorize(r); err != nil {
			writeError(w, err)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

func jobNote(w http.ResponseWriter) string {
	if id := w.Header().Get("X-Unclip-Job"); id != "" {
		return " " + id
	}
	return ""
}

// checkOrigin refuses requests that a web page on another site makes a
// browser send: a cross-origin Origin header, and, on a loopback address,
// a Host that is not a loopback name (DNS rebinding).
func (s *server) checkOrigin(r *http.Request) *apiError {
	if s.cfg.loopback {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		ip := net.ParseIP(host)
		if host != "" && host != "localhost" && !strings.HasSuffix(host, ".localhost") && (ip == nil || !ip.IsLoopback()) {
			return newAPIError(http.StatusForbidden, "invalid_request_error", "forbidden_host",
				fmt.Sprintf("Host %q is not a loopback name; this server listens on loopback only", r.Host), "")
		}
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return newAPIError(http.StatusForbidden, "invalid_request_error", "forbidden_origin",
				fmt.Sprintf("cross-origin request from %q refused", o), "")
		}
	}
	return nil
}

// authorize checks the bearer token, in constant time (both sides are
// hashed first, so not even the key's length shows in the timing).
func (s *server) authorize(r *http.Request) *apiError {
	if s.cfg.apiKey == "" {
		return nil
	}
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if auth == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return newAPIError(http.StatusUnauthorized, "invalid_request_error", "missing_api_key",
			`this server needs an API key: send "Authorization: Bearer KEY"`, "")
	}
	if !keyMatches(strings.TrimSpace(token), s.cfg.apiKey) {
		return newAPIError(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "invalid API key", "")
	}
	return nil
}

// keyMatches compares a presented key with the server's in constant time.
func keyMatches(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	queued, busy, closing := s.queueState()
	if closing {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "shutting_down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "running": busy, "queued": queued})
}

// modelObject is the OpenAI model object of the loaded model.
func (s *server) modelObject() map[string]any {
	return map[string]any{"id": s.cfg.modelID, "object": "model", "created": 0, "owned_by": "unclip",
		"kind": string(s.p.Kind), "image_size": fmt.Sprintf("%dx%d", s.size, s.size)}
}

func (s *server) handleModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{s.modelObject()}})
}

func (s *server) handleModel(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("id") != s.cfg.modelID {
		writeError(w, s.modelNotFound(r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, s.modelObject())
}

func (s *server) modelNotFound(id string) *apiError {
	return newAPIError(http.StatusNotFound, "invalid_request_error", "model_not_found",
		fmt.Sprintf("model %q is not served here; this server has %q (GET /v1/models)", id, s.cfg.modelID), "model")
}

func (s *server) handleJobs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": s.jobs()})
}

func (s *server) handleJob(w http.ResponseWriter, r *http.Request) {
	info, _, ok := s.lookup(r.PathValue("id"))
	if !ok {
		writeError(w, s.jobNotFound(r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *server) jobNotFound(id string) *apiError {
	return newAPIError(http.StatusNotFound, "invalid_request_error", "job_not_found",
		fmt.Sprintf("no job %q (finished jobs are remembered for the last %d)", id, recentJobs), "")
}

// handleJobEvents streams a job's progress events: first its status, then
// the events as the CLI's --json writes them, then a "done" event with its
// final status.
func (s *server) handleJobEvents(w http.ResponseWriter, r *http.Request) {
	info, j, ok := s.lookup(r.PathValue("id"))
	if !ok {
		writeError(w, s.jobNotFound(r.PathValue("id")))
		return
	}
	first := map[string]any{"event": "status", "job": info}
	if j == nil { // finished
		ev := startSSE(w)
		ev.send(first)
		ev.send(map[string]any{"event": "done", "job": info})
		return
	}
	s.stream(w, r, j, first, func() any {
		in, _, _ := s.lookup(j.id)
		return map[string]any{"event": "done", "job": in}
	})
}

// wantStream reports whether the client asked for an event stream
// (?stream=true).
func wantStream(r *http.Request) (bool, *apiError) {
	v := r.URL.Query().Get("stream")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("invalid_value", "stream", "?stream=%q: want true or false", v)
	}
	return b, nil
}

// respond queues j and answers its outcome: as JSON when it is done, or
// with stream, as server-sent events from the start.
func (s *server) respond(w http.ResponseWriter, r *http.Request, j *job, stream bool) {
	if err := s.submit(j); err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("X-Unclip-Job", j.id)
	if stream {
		s.mu.Lock()
		pos := s.positionLocked(j)
		s.mu.Unlock()
		s.stream(w, r, j, map[string]any{"event": "queued", "id": j.id, "queue_position": pos}, func() any {
			resp, err := j.outcome()
			if err != nil {
				return map[string]any{"event": "error", "id": j.id, "status": err.status, "error": err}
			}
			return map[string]any{"event": "result", "id": j.id, "response": resp}
		})
		return
	}
	select {
	case <-j.done:
	case <-j.ctx.Done(): // the job stops at its next op; answer now
	}
	resp, err := j.outcome()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// readJSON reads a JSON request body of at most maxBody bytes into v; with
// strict, a field v does not have is an error. It returns the body.
func (s *server) readJSON(w http.ResponseWriter, r *http.Request, v any, strict bool) ([]byte, *apiError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, newAPIError(http.StatusUnsupportedMediaType, "invalid_request_error", "unsupported_media_type",
			fmt.Sprintf("Content-Type %q: send a JSON body with Content-Type: application/json", r.Header.Get("Content-Type")), "")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.maxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, newAPIError(http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large",
				fmt.Sprintf("request body over %d bytes", mb.Limit), "")
		}
		return nil, badRequest("invalid_body", "", "reading the body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("invalid_json", "", "invalid JSON: data after the request object")
	}
	return body, nil
}

// jsonError describes a JSON decoding error.
func jsonError(err error) *apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return badRequest("invalid_json", "", "empty body: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("invalid_json", "", "invalid JSON: the body ends in the middle of a value")
	case errors.As(err, &se):
		return badRequest("invalid_json", "", "invalid JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		if te.Field == "" {
			return badRequest("invalid_json", "", "the body must be a JSON object, not %s", te.Value)
		}
		field := strings.TrimPrefix(te.Field, "stageFields.") // an embedded struct's name is no field
		want := jsonKind(te.Type.Kind().String())
		if want == "a number" && strings.HasPrefix(te.Value, "number") {
			return badRequest("invalid_type", field, "field %q: %s is out of range", field, te.Value)
		}
		return badRequest("invalid_type", field, "field %q: want %s, got %s", field, want, te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return badRequest("unknown_field", name, "unknown field %q (unclip does not support it)", name)
	}
	return badRequest("invalid_json", "", "invalid JSON: %v", err)
}

// jsonKind names a Go kind as a JSON type.
func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"):
		return "an integer"
	case strings.HasPrefix(k, "float"):
		return "a number"
	case k == "string":
		return "a string"
	case k == "bool":
		return "true or false"
	}
	return k
}

// genParams are the settings of one text-to-image request, checked.
type genParams struct {
	prompt                     string
	n                          int
	seed                       uint64
	priorSteps, decSteps       int
	srSteps                    int
	priorGuidance, decGuidance float64
}

// stageFields are unclip's own settings, extra fields of both endpoints.
type stageFields struct {
	Seed            *int64   `json:"seed"`
	PriorSteps      *int     `json:"prior_steps"`
	DecoderSteps    *int     `json:"decoder_steps"`
	SRSteps         *int     `json:"sr_steps"`
	PriorGuidance   *float64 `json:"prior_guidance"`
	DecoderGuidance *float64 `json:"decoder_guidance"`
}

// fill checks the stage settings and puts them in g (defaults: generate's).
func (s *server) fill(g *genParams, f stageFields) *apiError {
	g.priorSteps, g.decSteps, g.srSteps, g.priorGuidance, g.decGuidance = 25, 25, 7, 4, 8
	for _, c := range []struct {
		name string
		v    *int
		dst  *int
	}{{"prior_steps", f.PriorSteps, &g.priorSteps}, {"decoder_steps", f.DecoderSteps, &g.decSteps}, {"sr_steps", f.SRSteps, &g.srSteps}} {
		if c.v == nil {
			continue
		}
		if *c.v < 2 || *c.v > s.cfg.maxSteps {
			return badRequest("invalid_value", c.name, "%s must be in [2, %d] (this server's --max-steps), got %d", c.name, s.cfg.maxSteps, *c.v)
		}
		*c.dst = *c.v
	}
	for _, c := range []struct {
		name string
		v    *float64
		dst  *float64
	}{{"prior_guidance", f.PriorGuidance, &g.priorGuidance}, {"decoder_guidance", f.DecoderGuidance, &g.decGuidance}} {
		if c.v == nil {
			continue
		}
		if !finite(*c.v) || *c.v < 0 || *c.v > math.MaxFloat32 {
			return badRequest("invalid_value", c.name, "%s must be a finite number ≥ 0 (≤ 1 in both stages turns guidance off), got %g", c.name, *c.v)
		}
		*c.dst = *c.v
	}
	seed, err := pickSeed(f.Seed)
	if err != nil {
		return err
	}
	g.seed = seed
	return nil
}

// pickSeed checks a requested seed; absent or −1 picks one at random.
func pickSeed(v *int64) (uint64, *apiError) {
	if v == nil || *v == -1 {
		return randomSeed(), nil
	}
	if *v < 0 || *v > 1<<32-1 {
		return 0, badRequest("invalid_value", "seed", "seed must be in [0, 4294967295] (torch seeds its CPU generator with 32 bits), or -1 for a random one; got %d", *v)
	}
	return uint64(*v), nil
}

// checkPrompt checks a prompt's length.
func (s *server) checkPrompt(p *string) (string, *apiError) {
	switch {
	case p == nil:
		return "", badRequest("missing_field", "prompt", "prompt is required (the empty string is allowed)")
	case utf8.RuneCountInString(*p) > s.cfg.maxPrompt:
		return "", badRequest("prompt_too_long", "prompt", "prompt is %d characters; this server takes at most %d (and CLIP reads only the first 77 tokens)",
			utf8.RuneCountInString(*p), s.cfg.maxPrompt)
	case strings.ContainsRune(*p, 0):
		return "", badRequest("invalid_value", "prompt", "prompt contains a NUL character")
	}
	return *p, nil
}

// checkN checks an image count (default 1).
func (s *server) checkN(v *int, name string) (int, *apiError) {
	if v == nil {
		return 1, nil
	}
	if *v < 1 || *v > s.cfg.maxN {
		return 0, badRequest("invalid_value", name, "%s must be in [1, %d] (this server's --max-n), got %d", name, s.cfg.maxN, *v)
	}
	return *v, nil
}

// checkSize checks an OpenAI size: the model's own, "WxH".
func (s *server) checkSize(size string) *apiError {
	want := fmt.Sprintf("%dx%d", s.size, s.size)
	if size != "" && size != want {
		return badRequest("unsupported_size", "size", "size %q is not supported: this model makes %s images only", size, want)
	}
	return nil
}

// checkFormat checks an OpenAI response_format.
func checkFormat(f string) *apiError {
	switch f {
	case "", "b64_json":
		return nil
	case "url":
		return badRequest("unsupported_response_format", "response_format",
			`response_format "url" is not supported: this server keeps no files; use "b64_json"`)
	}
	return badRequest("invalid_value", "response_format", `response_format %q: want "b64_json"`, f)
}

// checkModel checks a request's model field (empty: the loaded one).
func (s *server) checkModel(m string) *apiError {
	if m != "" && m != s.cfg.modelID {
		return s.modelNotFound(m)
	}
	return nil
}

// admit starts a generation handler: it reads ?stream and checks that
// the model serves kind k, writing the error and returning ok false when
// either fails.
func (s *server) admit(w http.ResponseWriter, r *http.Request, k unclip.Kind) (stream, ok bool) {
	stream, aerr := wantStream(r)
	if aerr == nil {
		aerr = s.needKind(k)
	}
	if aerr != nil {
		writeError(w, aerr)
		return false, false
	}
	return stream, true
}

// needKind refuses an endpoint that the loaded model cannot serve.
func (s *server) needKind(k unclip.Kind) *apiError {
	if s.p.Kind == k {
		return nil
	}
	if k == unclip.ImageVariation {
		return badRequest("unsupported_model", "",
			"the loaded model %q is a text-to-image model, which has no image encoder: image variations need the image-variations model "+
				"(kakaobrain/karlo-v1-alpha-image-variations); start unclip serve -m with it", s.cfg.modelID)
	}
	return badRequest("unsupported_model", "",
		"the loaded model %q is an image-variations model: it has no prior to turn text into an image embedding; use POST /v1/images/variations", s.cfg.modelID)
}

// openAIRequest is POST /v1/images/generations' body.
type openAIRequest struct {
	Prompt         *string `json:"prompt"`
	Model          string  `json:"model"`
	N              *int    `json:"n"`
	Size           string  `json:"size"`
	ResponseFormat string  `json:"response_format"`
	User           string  `json:"user"`
	Stream         *bool   `json:"stream"`
	stageFields
}

// imagesResponse is OpenAI's images response, with the seed.
type imagesResponse struct {
	Created  int64       `json:"created"`
	Data     []imageData `json:"data"`
	Seed     uint64      `json:"seed"`
	Warnings []string    `json:"warnings,omitempty"`
}

type imageData struct {
	B64JSON string `json:"b64_json"`
}

func (s *server) handleGenerations(w http.ResponseWriter, r *http.Request) {
	stream, ok := s.admit(w, r, unclip.TextToImage)
	if !ok {
		return
	}
	var req openAIRequest
	if _, err := s.readJSON(w, r, &req, true); err != nil {
		writeError(w, err)
		return
	}
	g, err := s.checkOpenAI(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	j, release := s.newJob(r, "images.generations", g.n, func(ctx context.Context, j *job) (any, error) {
		out, err := s.generateImages(ctx, g, j)
		if err != nil {
			return nil, err
		}
		return out.openAI(g.seed), nil
	})
	defer release()
	s.respond(w, r, j, stream)
}

func (s *server) checkOpenAI(req *openAIRequest) (genParams, *apiError) {
	var g genParams
	var err *apiError
	if g.prompt, err = s.checkPrompt(req.Prompt); err != nil {
		return g, err
	}
	if req.Stream != nil && *req.Stream {
		return g, badRequest("unsupported_value", "stream", `"stream": true (OpenAI's partial-image stream) is not supported; add ?stream=true to the URL for unclip's progress events`)
	}
	if g.n, err = s.checkN(req.N, "n"); err != nil {
		return g, err
	}
	if err = s.checkSize(req.Size); err != nil {
		return g, err
	}
	if err = checkFormat(req.ResponseFormat); err != nil {
		return g, err
	}
	if err = s.checkModel(req.Model); err != nil {
		return g, err
	}
	return g, s.fill(&g, req.stageFields)
}

// a1111Request is POST /sdapi/v1/txt2img's body: the fields unclip reads.
// Others are ignored with a warning (A1111 clients send many).
type a1111Request struct {
	Prompt         *string  `json:"prompt"`
	NegativePrompt string   `json:"negative_prompt"`
	Seed           *int64   `json:"seed"`
	BatchSize      *int     `json:"batch_size"`
	NIter          *int     `json:"n_iter"`
	Steps          *int     `json:"steps"`
	CFGScale       *float64 `json:"cfg_scale"`
	Width          *int     `json:"width"`
	Height         *int     `json:"height"`
	SendImages     *bool    `json:"send_images"`
	// unclip's own
	PriorSteps    *int     `json:"prior_steps"`
	SRSteps       *int     `json:"sr_steps"`
	PriorGuidance *float64 `json:"prior_guidance"`
}

// a1111Fields are the fields of a1111Request.
var a1111Fields = []string{"prompt", "negative_prompt", "seed", "batch_size", "n_iter", "steps", "cfg_scale", "width", "height",
	"send_images", "prior_steps", "sr_steps", "prior_guidance"}

// txt2imgResponse is A1111's response.
type txt2imgResponse struct {
	Images     []string       `json:"images"`
	Parameters map[string]any `json:"parameters"`
	Info       string         `json:"info"`
}

func (s *server) handleTxt2Img(w http.ResponseWriter, r *http.Request) {
	stream, ok := s.admit(w, r, unclip.TextToImage)
	if !ok {
		return
	}
	var req a1111Request
	body, err := s.readJSON(w, r, &req, false)
	if err != nil {
		writeError(w, err)
		return
	}
	var all map[string]json.RawMessage
	json.Unmarshal(body, &all) // the body decoded above: an object
	var ignored []string
	for k := range all {
		if !slices.Contains(a1111Fields, k) {
			ignored = append(ignored, k)
		}
	}
	sort.Strings(ignored)
	g, seedAsked, err := s.checkA1111(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	send := req.SendImages == nil || *req.SendImages
	j, release := s.newJob(r, "sdapi.txt2img", g.n, func(ctx context.Context, j *job) (any, error) {
		if len(ignored) > 0 {
			j.warn("ignored fields (unclip does not use them): " + strings.Join(ignored, ", "))
		}
		out, err := s.generateImages(ctx, g, j)
		if err != nil {
			return nil, err
		}
		resp := txt2imgResponse{Images: []string{}, Parameters: map[string]any{
			"prompt": g.prompt, "negative_prompt": "", "seed": seedAsked, "batch_size": g.n, "n_iter": 1,
			"steps": g.decSteps, "cfg_scale": g.decGuidance, "width": s.size, "height": s.size, "sampler_name": "unCLIP",
			"send_images": send, "prior_steps": g.priorSteps, "sr_steps": g.srSteps, "prior_guidance": g.priorGuidance}}
		if send {
			for _, png := range out.images {
				resp.Images = append(resp.Images, base64.StdEncoding.EncodeToString(png))
			}
		}
		prompts := make([]string, g.n)
		negatives := make([]string, g.n)
		for i := range prompts {
			prompts[i] = g.prompt
		}
		info, _ := json.Marshal(map[string]any{"prompt": g.prompt, "all_prompts": prompts, "negative_prompt": "", "all_negative_prompts": negatives,
			"seed": g.seed, "all_seeds": out.seeds, "width": s.size, "height": s.size, "sampler_name": "unCLIP",
			"steps": g.decSteps, "cfg_scale": g.decGuidance, "batch_size": g.n, "prior_steps": g.priorSteps, "sr_steps": g.srSteps,
			"prior_guidance": g.priorGuidance, "sd_model_name": s.cfg.modelID, "infotexts": out.infotexts, "warnings": out.warnings})
		resp.Info = string(info)
		return resp, nil
	})
	defer release()
	s.respond(w, r, j, stream)
}

// checkA1111 maps an A1111 request to unclip's settings: steps → decoder
// steps, cfg_scale → decoder guidance, batch_size → n. It also returns the
// seed as asked (−1: random).
func (s *server) checkA1111(req *a1111Request) (genParams, int64, *apiError) {
	var g genParams
	var err *apiError
	if g.prompt, err = s.checkPrompt(req.Prompt); err != nil {
		return g, 0, err
	}
	if req.NegativePrompt != "" {
		return g, 0, badRequest("unsupported_value", "negative_prompt",
			"negative_prompt is not supported: unCLIP's guidance is against the empty prompt, which has no negative text")
	}
	if g.n, err = s.checkN(req.BatchSize, "batch_size"); err != nil {
		return g, 0, err
	}
	if req.NIter != nil && *req.NIter != 1 {
		return g, 0, badRequest("unsupported_value", "n_iter", "n_iter must be 1 (ask for more images with batch_size), got %d", *req.NIter)
	}
	for _, c := range []struct {
		name string
		v    *int
	}{{"width", req.Width}, {"height", req.Height}} {
		if c.v != nil && *c.v != s.size {
			return g, 0, badRequest("unsupported_size", c.name, "%s %d is not supported: this model makes %dx%d images only", c.name, *c.v, s.size, s.size)
		}
	}
	f := stageFields{Seed: req.Seed, PriorSteps: req.PriorSteps, DecoderSteps: req.Steps, SRSteps: req.SRSteps,
		PriorGuidance: req.PriorGuidance, DecoderGuidance: req.CFGScale}
	if err = s.fill(&g, f); err != nil {
		switch err.Param { // name the A1111 field
		case "decoder_steps":
			err.Param, err.Message = "steps", strings.Replace(err.Message, "decoder_steps", "steps (the decoder's)", 1)
		case "decoder_guidance":
			err.Param, err.Message = "cfg_scale", strings.Replace(err.Message, "decoder_guidance", "cfg_scale (the decoder's guidance)", 1)
		}
		return g, 0, err
	}
	asked := int64(-1)
	if req.Seed != nil {
		asked = *req.Seed
	}
	return g, asked, nil
}

// genOutput is a request's images, PNG encoded.
type genOutput struct {
	images    [][]byte
	infotexts []string // each image's parameters text
	seeds     []uint64 // each image's batch seed
	warnings  []string
}

// generateImages runs a text-to-image request as unclip generate runs a
// one-prompt command line with -n, --seed and the same steps and guidance
// (batches, noise and metadata alike), so the PNGs are the ones it writes.
func (s *server) generateImages(ctx context.Context, g genParams, j *job) (*genOutput, error) {
	f := generateFlags{runFlags: runFlags{n: g.n, seed: int64(g.seed), priorSteps: g.priorSteps, decSteps: g.decSteps, srSteps: g.srSteps,
		priorGuidance: g.priorGuidance, decGuide: g.decGuidance, precision: s.cfg.precision}}
	prompts := []string{g.prompt}
	total := g.n
	batch := total
	if fit := imagesThatFit(s.p, g.decGuidance > 1 || g.priorGuidance > 1); fit < total {
		batch = fit
		j.warn(fmt.Sprintf("%d images do not fit in memory at once: computing %d at a time; batch k is seeded with seed+k, so its images differ from a one-batch run", total, batch))
	}
	items := make([]string, total)
	for i := range items {
		items[i] = g.prompt
	}
	desc := runDescription{seed: g.seed, promptList: prompts, total: total, batch: batch, prompts: 1, n: g.n, f: &f,
		model: s.cfg.modelName, device: s.cfg.device}
	out := &genOutput{}
	for k := 0; k*batch < total; k++ {
		lo, hi := k*batch, min((k+1)*batch, total)
		req := unclip.Request{Prompts: prompts, ImagesPerPrompt: g.n, PriorSteps: g.priorSteps, DecoderSteps: g.decSteps,
			SuperResSteps: g.srSteps, PriorGuidance: float32(g.priorGuidance), DecoderGuidance: float32(g.decGuidance),
			Noise: unclip.NewTorchNoise(g.seed + uint64(k)), Progress: j.rep.event, Warn: j.warn}
		if batch < total {
			req.Prompts, req.ImagesPerPrompt = items[lo:hi], 1
		}
		res, err := s.p.Generate(ctx, req)
		if err != nil {
			return nil, err
		}
		if err := out.add(res, desc.params(items, lo, ""), g.seed+uint64(k)); err != nil {
			return nil, err
		}
	}
	out.warnings = j.warningList()
	return out, nil
}

// add encodes a result's images as generate writes them.
// openAI is the images in OpenAI's response shape.
func (o *genOutput) openAI(seed uint64) imagesResponse {
	resp := imagesResponse{Created: time.Now().Unix(), Seed: seed, Warnings: o.warnings}
	for _, png := range o.images {
		resp.Data = append(resp.Data, imageData{B64JSON: base64.StdEncoding.EncodeToString(png)})
	}
	return resp
}

func (o *genOutput) add(res *unclip.Result, params func(int) string, seed uint64) error {
	pix := unclip.ToUint8(res.Images)
	per := res.Size * res.Size * 3
	for i := 0; i < res.N; i++ {
		text := params(i)
		png, err := encodePNG(pix[i*per:(i+1)*per], res.Size, text)
		if err != nil {
			return fmt.Errorf("encode image %d: %w", len(o.images)+1, err)
		}
		o.images = append(o.images, png)
		o.infotexts = append(o.infotexts, text)
		o.seeds = append(o.seeds, seed)
	}
	return nil
}

// varParams are the settings of one variations request, checked.
type varParams struct {
	image       *clip.RGB
	name        string // the upload's file name, in the metadata
	n           int
	seed        uint64
	decSteps    int
	srSteps     int
	decGuidance float64
}

// variationFields are the form fields of POST /v1/images/variations
// besides the image.
var variationFields = []string{"n", "size", "response_format", "model", "user", "seed", "decoder_steps", "sr_steps", "decoder_guidance"}

func (s *server) handleVariations(w http.ResponseWriter, r *http.Request) {
	stream, ok := s.admit(w, r, unclip.ImageVariation)
	if !ok {
		return
	}
	v, aerr := s.readVariation(w, r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	j, release := s.newJob(r, "images.variations", v.n, func(ctx context.Context, j *job) (any, error) {
		out, err := s.varyImage(ctx, v, j)
		if err != nil {
			return nil, err
		}
		return out.openAI(v.seed), nil
	})
	defer release()
	s.respond(w, r, j, stream)
}

// readVariation reads and checks the multipart form, in memory (nothing
// is written to disk, unlike Request.ParseMultipartForm).
func (s *server) readVariation(w http.ResponseWriter, r *http.Request) (varParams, *apiError) {
	var v varParams
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return v, newAPIError(http.StatusUnsupportedMediaType, "invalid_request_error", "unsupported_media_type",
			fmt.Sprintf("Content-Type %q: send multipart/form-data with the image in the field \"image\"", r.Header.Get("Content-Type")), "")
	}
	mr := multipart.NewReader(http.MaxBytesReader(w, r.Body, s.cfg.maxUpload), params["boundary"])
	fields := map[string]string{}
	var img []byte
	for parts := 0; ; parts++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err == nil && parts == 32 {
			err = errors.New("more than 32 parts")
		}
		if err != nil {
			return v, formError(err)
		}
		name := part.FormName()
		switch {
		case name == "image":
			if img != nil {
				return v, badRequest("invalid_value", "image", "more than one image: send one")
			}
			if img, err = io.ReadAll(part); err != nil {
				return v, formError(err)
			}
			if v.name = part.FileName(); v.name == "" {
				v.name = "upload"
			}
		case slices.Contains(variationFields, name):
			val, err := io.ReadAll(io.LimitReader(part, 1025))
			if err != nil {
				return v, formError(err)
			}
			if len(val) > 1024 {
				return v, badRequest("invalid_value", name, "field %q is over 1024 bytes", name)
			}
			fields[name] = string(val)
		default:
			return v, badRequest("unknown_field", name, "unknown field %q (unclip does not support it)", name)
		}
		part.Close()
	}
	if img == nil {
		return v, badRequest("missing_field", "image", `no image: send a PNG or JPEG file in the form field "image"`)
	}
	ints := map[string]*int{}
	for _, k := range []string{"n", "decoder_steps", "sr_steps"} {
		if s, ok := fields[k]; ok {
			x, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return v, badRequest("invalid_type", k, "field %q: want an integer, got %q", k, s)
			}
			ints[k] = &x
		}
	}
	var seed *int64
	if sv, ok := fields["seed"]; ok {
		x, err := strconv.ParseInt(strings.TrimSpace(sv), 10, 64)
		if err != nil {
			return v, badRequest("invalid_type", "seed", "field \"seed\": want an integer, got %q", sv)
		}
		seed = &x
	}
	var guide *float64
	if gv, ok := fields["decoder_guidance"]; ok {
		x, err := strconv.ParseFloat(strings.TrimSpace(gv), 64)
		if err != nil {
			return v, badRequest("invalid_type", "decoder_guidance", "field \"decoder_guidance\": want a number, got %q", gv)
		}
		guide = &x
	}
	var aerr *apiError
	if v.n, aerr = s.checkN(ints["n"], "n"); aerr != nil {
		return v, aerr
	}
	if aerr = s.checkSize(fields["size"]); aerr != nil {
		return v, aerr
	}
	if aerr = checkFormat(fields["response_format"]); aerr != nil {
		return v, aerr
	}
	if aerr = s.checkModel(fields["model"]); aerr != nil {
		return v, aerr
	}
	var g genParams
	if aerr = s.fill(&g, stageFields{Seed: seed, DecoderSteps: ints["decoder_steps"], SRSteps: ints["sr_steps"], DecoderGuidance: guide}); aerr != nil {
		return v, aerr
	}
	v.seed, v.decSteps, v.srSteps, v.decGuidance = g.seed, g.decSteps, g.srSteps, g.decGuidance
	cfg, format, err := image.DecodeConfig(bytes.NewReader(img))
	if err != nil || (format != "png" && format != "jpeg") {
		return v, badRequest("invalid_image", "image", "the image is not a PNG or JPEG file")
	}
	if cfg.Width < 1 || cfg.Height < 1 || int64(cfg.Width)*int64(cfg.Height) > maxUploadPixels {
		return v, badRequest("invalid_image", "image", "the image is %d×%d pixels; at most %d pixels are taken", cfg.Width, cfg.Height, maxUploadPixels)
	}
	if v.image, err = clip.DecodeImage(bytes.NewReader(img)); err != nil {
		return v, badRequest("invalid_image", "image", "the image: %v", err)
	}
	return v, nil
}

// formError describes an error reading a multipart body.
func formError(err error) *apiError {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return newAPIError(http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large",
			fmt.Sprintf("request body over %d bytes (this server's --max-upload)", mb.Limit), "")
	}
	return badRequest("invalid_form", "", "reading the multipart form: %v", err)
}

// varyImage runs a variations request as unclip vary runs "-i IMAGE -n N"
// with the same seed, steps and guidance, so the PNGs are the ones it
// writes for an input file of the upload's name.
func (s *server) varyImage(ctx context.Context, v varParams, j *job) (*genOutput, error) {
	f := imageFlags{runFlags: runFlags{model: s.cfg.modelArg, n: v.n, seed: int64(v.seed), decSteps: v.decSteps, srSteps: v.srSteps,
		decGuide: v.decGuidance, precision: s.cfg.precision}}
	sess := &imageSession{f: &f, seed: v.seed, name: s.cfg.modelArg, device: s.cfg.device, rep: j.rep}
	base := sess.request()
	base.Warn = j.warn
	emb, err := s.p.EncodeImages(ctx, &base, []*clip.RGB{v.image})
	if err != nil {
		return nil, err
	}
	req := unclip.Variation(base, emb, 1)
	req.ImagesPerPrompt = v.n
	res, err := s.p.Generate(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &genOutput{}
	err = out.add(res, func(i int) string {
		return fmt.Sprintf("Variation of %s\nImage: %d/%d, Variation: %d/%d, %s", v.name, i+1, v.n, i%v.n+1, v.n, sess.params())
	}, v.seed)
	out.warnings = j.warningList()
	return out, err
}
