package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/tensor"
)

// demoServeConfig is the server configuration for the demo model on the
// CPU, as runServe makes it.
func demoServeConfig() serveConfig {
	c := defaultServeConfig()
	c.modelID, c.modelArg, c.modelName, c.device = "demo", "demo", "demo (tiny, untrained)", "cpu"
	return c
}

// demoPipeline loads the built-in demo model on the CPU.
func demoPipeline(t *testing.T) *unclip.Pipeline {
	t.Helper()
	p, _, err := loadPipeline("demo", "demo", "", tensor.CPU(), tensor.Invalid, unclip.AutoResidency)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startServe serves p on a loopback port; stop shuts the server down
// (gracefully) and returns serve's error. The test's cleanup stops it too.
func startServe(t *testing.T, p *unclip.Pipeline, cfg serveConfig) (base string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := newServer(p, cfg)
	errc := make(chan error, 1)
	go func() { errc <- s.serve(ctx, ln, nil) }()
	var once sync.Once
	var serr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case serr = <-errc:
			case <-time.After(60 * time.Second):
				serr = fmt.Errorf("the server did not stop within 60 s")
			}
		})
		return serr
	}
	t.Cleanup(func() { stop() })
	return "http://" + ln.Addr().String(), stop
}

// reply is an HTTP response, read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// errorBody decodes a JSON error answer.
func (r reply) errorBody(t *testing.T) apiError {
	t.Helper()
	var e struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("status %d: body %q is not a JSON error (%v)", r.status, r.body, err)
	}
	return *e.Error
}

// do sends a request and reads the whole answer.
func do(t *testing.T, c *http.Client, method, url, ctype string, body []byte, header ...string) reply {
	t.Helper()
	r, err := fetch(c, method, url, ctype, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fetch is do for any goroutine: it returns its error.
func fetch(c *http.Client, method, url, ctype string, body []byte, header ...string) (reply, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: reading the answer: %w", method, url, err)
	}
	return reply{resp.StatusCode, resp.Header, data}, nil
}

// heapAfterGC is the live heap after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func postJSON(t *testing.T, url, body string, header ...string) reply {
	t.Helper()
	return do(t, http.DefaultClient, "POST", url, "application/json", []byte(body), header...)
}

// pngs decodes the images of an OpenAI or A1111 answer.
func pngs(t *testing.T, r reply) [][]byte {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var v struct {
		Data []struct {
			B64 string `json:"b64_json"`
		} `json:"data"`
		Images []string `json:"images"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("answer %q: %v", r.body, err)
	}
	var out [][]byte
	for _, d := range v.Data {
		v.Images = append(v.Images, d.B64)
	}
	for _, s := range v.Images {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestServeMatchesGenerate checks that both text-to-image endpoints return
// byte for byte the PNGs unclip generate writes with the same seed and
// settings, metadata included, and that the loaded model gives the same
// bytes again.
func TestServeMatchesGenerate(t *testing.T) {
	base, _ := startServe(t, demoPipeline(t), demoServeConfig())
	long := strings.Repeat("a very long prompt that CLIP truncates ", 12)
	for _, c := range []struct {
		name    string
		cli     []string
		openai  string
		a1111   string
		warning string
	}{
		{"two images", []string{"-p", "a red cube", "-n", "2", "--seed", "7", "--prior-steps", "2", "--decoder-steps", "2", "--sr-steps", "2"},
			`{"prompt":"a red cube","n":2,"seed":7,"prior_steps":2,"decoder_steps":2,"sr_steps":2,"model":"demo","size":"64x64","response_format":"b64_json"}`,
			`{"prompt":"a red cube","batch_size":2,"seed":7,"steps":2,"prior_steps":2,"sr_steps":2,"cfg_scale":8,"width":64,"height":64,"sampler_name":"Euler a"}`, ""},
		{"guidance and a truncated prompt", []string{"-p", long, "--seed", "4294967295", "--prior-steps", "3", "--decoder-steps", "2", "--sr-steps", "3",
			"--prior-guidance", "1", "--decoder-guidance", "3.5"},
			`{"prompt":"` + long + `","seed":4294967295,"prior_steps":3,"decoder_steps":2,"sr_steps":3,"prior_guidance":1,"decoder_guidance":3.5}`,
			`{"prompt":"` + long + `","seed":4294967295,"prior_steps":3,"steps":2,"sr_steps":3,"prior_guidance":1,"cfg_scale":3.5}`, "truncat"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"generate", "-m", "demo", "--device", "cpu", "--quiet", "-o", filepath.Join(dir, "g-%d.png")}, c.cli...)
			if code, _, stderr := runCLI(args...); code != 0 {
				t.Fatalf("generate: exit %d: %s", code, stderr)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "g-*.png"))
			var want [][]byte
			for i := range files {
				b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("g-%d.png", i+1)))
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, b)
			}
			for _, ep := range []struct{ path, body string }{
				{"/v1/images/generations", c.openai}, {"/sdapi/v1/txt2img", c.a1111}, {"/v1/images/generations", c.openai},
			} {
				r := postJSON(t, base+ep.path, ep.body)
				got := pngs(t, r)
				if len(got) != len(want) {
					t.Fatalf("%s: %d images, generate wrote %d", ep.path, len(got), len(want))
				}
				for i := range got {
					if !bytes.Equal(got[i], want[i]) {
						gt, _ := pngText(got[i])
						wt, _ := pngText(want[i])
						t.Errorf("%s: image %d differs from generate's (%d vs %d bytes)\nserver:   %q\ngenerate: %q", ep.path, i+1, len(got[i]), len(want[i]), gt["parameters"], wt["parameters"])
					}
				}
				if c.warning != "" && !bytes.Contains(r.body, []byte(c.warning)) {
					t.Errorf("%s: the answer does not warn about %q: %.300s", ep.path, c.warning, r.body)
				}
			}
		})
	}
}

// TestServeRejectsBadRequests sends malformed, oversize, out-of-range and
// unauthorised requests: each gets its 4xx with a JSON error, and the
// server still works afterwards.
func TestServeRejectsBadRequests(t *testing.T) {
	cfg := demoServeConfig()
	cfg.apiKey = "s3cret"
	base, _ := startServe(t, demoPipeline(t), cfg)
	auth := []string{"Authorization", "Bearer s3cret"}
	const gen, a1111 = "/v1/images/generations", "/sdapi/v1/txt2img"
	ok := `"prior_steps":2,"decoder_steps":2,"sr_steps":2`
	for _, c := range []struct {
		name, method, path, ctype, body string
		header                          []string
		status                          int
		code, param                     string
	}{
		{"no key", "POST", gen, "application/json", `{"prompt":"x"}`, nil, 401, "missing_api_key", ""},
		{"wrong key", "POST", gen, "application/json", `{"prompt":"x"}`, []string{"Authorization", "Bearer s3cres"}, 401, "invalid_api_key", ""},
		{"key of another scheme", "POST", gen, "application/json", `{"prompt":"x"}`, []string{"Authorization", "Basic s3cret"}, 401, "missing_api_key", ""},
		{"models without key", "GET", "/v1/models", "", "", nil, 401, "missing_api_key", ""},
		{"bad JSON", "POST", gen, "application/json", `{"prompt":"x",`, auth, 400, "invalid_json", ""},
		{"syntax error", "POST", gen, "application/json", `{"prompt" "x"}`, auth, 400, "invalid_json", ""},
		{"not an object", "POST", gen, "application/json", `[1,2]`, auth, 400, "invalid_json", ""},
		{"empty body", "POST", gen, "application/json", ``, auth, 400, "invalid_json", ""},
		{"trailing data", "POST", gen, "application/json", `{"prompt":"x"} {}`, auth, 400, "invalid_json", ""},
		{"n as a string", "POST", gen, "application/json", `{"prompt":"x","n":"2"}`, auth, 400, "invalid_type", "n"},
		{"n fractional", "POST", gen, "application/json", `{"prompt":"x","n":1.5}`, auth, 400, "invalid_type", "n"},
		{"n past int64", "POST", gen, "application/json", `{"prompt":"x","n":1e30}`, auth, 400, "invalid_type", "n"},
		{"prompt a number", "POST", gen, "application/json", `{"prompt":5}`, auth, 400, "invalid_type", "prompt"},
		{"no prompt", "POST", gen, "application/json", `{"n":1}`, auth, 400, "missing_field", "prompt"},
		{"n zero", "POST", gen, "application/json", `{"prompt":"x","n":0}`, auth, 400, "invalid_value", "n"},
		{"n a million", "POST", gen, "application/json", `{"prompt":"x","n":1000000}`, auth, 400, "invalid_value", "n"},
		{"n past max", "POST", gen, "application/json", `{"prompt":"x","n":9}`, auth, 400, "invalid_value", "n"},
		{"size 256 on a 64 model", "POST", gen, "application/json", `{"prompt":"x","size":"256x256"}`, auth, 400, "unsupported_size", "size"},
		{"size 1024", "POST", gen, "application/json", `{"prompt":"x","size":"1024x1024"}`, auth, 400, "unsupported_size", "size"},
		{"url format", "POST", gen, "application/json", `{"prompt":"x","response_format":"url"}`, auth, 400, "unsupported_response_format", "response_format"},
		{"unknown format", "POST", gen, "application/json", `{"prompt":"x","response_format":"png"}`, auth, 400, "invalid_value", "response_format"},
		{"unknown field", "POST", gen, "application/json", `{"prompt":"x","quality":"hd"}`, auth, 400, "unknown_field", "quality"},
		{"other model", "POST", gen, "application/json", `{"prompt":"x","model":"dall-e-2"}`, auth, 404, "model_not_found", "model"},
		{"OpenAI stream", "POST", gen, "application/json", `{"prompt":"x","stream":true}`, auth, 400, "unsupported_value", "stream"},
		{"bad stream query", "POST", gen + "?stream=maybe", "application/json", `{"prompt":"x"}`, auth, 400, "invalid_value", "stream"},
		{"one step", "POST", gen, "application/json", `{"prompt":"x","decoder_steps":1}`, auth, 400, "invalid_value", "decoder_steps"},
		{"steps past max", "POST", gen, "application/json", `{"prompt":"x","sr_steps":100000}`, auth, 400, "invalid_value", "sr_steps"},
		{"negative guidance", "POST", gen, "application/json", `{"prompt":"x","prior_guidance":-1}`, auth, 400, "invalid_value", "prior_guidance"},
		{"huge guidance", "POST", gen, "application/json", `{"prompt":"x","decoder_guidance":1e300}`, auth, 400, "invalid_value", "decoder_guidance"},
		{"guidance past float64", "POST", gen, "application/json", `{"prompt":"x","decoder_guidance":1e400}`, auth, 400, "invalid_type", "decoder_guidance"},
		{"negative seed", "POST", gen, "application/json", `{"prompt":"x","seed":-5}`, auth, 400, "invalid_value", "seed"},
		{"seed past 32 bits", "POST", gen, "application/json", `{"prompt":"x","seed":4294967296}`, auth, 400, "invalid_value", "seed"},
		{"prompt too long", "POST", gen, "application/json", `{"prompt":"` + strings.Repeat("é", 1001) + `"}`, auth, 400, "prompt_too_long", "prompt"},
		{"NUL in prompt", "POST", gen, "application/json", `{"prompt":"a\u0000b"}`, auth, 400, "invalid_value", "prompt"},
		{"oversize body", "POST", gen, "application/json", `{"prompt":"` + strings.Repeat("x", 70000) + `"}`, auth, 413, "request_too_large", ""},
		{"form content type", "POST", gen, "application/x-www-form-urlencoded", `{"prompt":"x"}`, auth, 415, "unsupported_media_type", ""},
		{"no content type", "POST", gen, "", `{"prompt":"x"}`, auth, 415, "unsupported_media_type", ""},
		{"GET a POST endpoint", "GET", gen, "", "", auth, 405, "method_not_allowed", ""},
		{"DELETE models", "DELETE", "/v1/models", "", "", auth, 405, "method_not_allowed", ""},
		{"unknown path", "GET", "/v1/engines", "", "", auth, 404, "not_found", ""},
		{"unknown model", "GET", "/v1/models/karlo", "", "", auth, 404, "model_not_found", "model"},
		{"unknown job", "GET", "/v1/jobs/job-nope", "", "", auth, 404, "job_not_found", ""},
		{"unknown job events", "GET", "/v1/jobs/job-nope/events", "", "", auth, 404, "job_not_found", ""},
		{"cross-origin", "POST", gen, "application/json", `{"prompt":"x"}`, append([]string{"Origin", "https://evil.example"}, auth...), 403, "forbidden_origin", ""},
		{"rebound host", "GET", "/healthz", "", "", []string{"Host", "evil.example:8080"}, 403, "forbidden_host", ""},
		{"negative prompt", "POST", a1111, "application/json", `{"prompt":"x","negative_prompt":"blurry"}`, auth, 400, "unsupported_value", "negative_prompt"},
		{"A1111 512 wide", "POST", a1111, "application/json", `{"prompt":"x","width":512,"height":512}`, auth, 400, "unsupported_size", "width"},
		{"A1111 batch 0", "POST", a1111, "application/json", `{"prompt":"x","batch_size":0}`, auth, 400, "invalid_value", "batch_size"},
		{"A1111 n_iter", "POST", a1111, "application/json", `{"prompt":"x","n_iter":2}`, auth, 400, "unsupported_value", "n_iter"},
		{"A1111 steps a string", "POST", a1111, "application/json", `{"prompt":"x","steps":"20"}`, auth, 400, "invalid_type", "steps"},
		{"A1111 one step", "POST", a1111, "application/json", `{"prompt":"x","steps":1}`, auth, 400, "invalid_value", "steps"},
		{"A1111 negative cfg", "POST", a1111, "application/json", `{"prompt":"x","cfg_scale":-7}`, auth, 400, "invalid_value", "cfg_scale"},
		{"A1111 oversize", "POST", a1111, "application/json", `{"prompt":"x","styles":["` + strings.Repeat("x", 70000) + `"]}`, auth, 413, "request_too_large", ""},
		{"variations on a text model", "POST", "/v1/images/variations", "multipart/form-data; boundary=x", "--x--\r\n", auth, 400, "unsupported_model", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, http.DefaultClient, c.method, base+c.path, c.ctype, []byte(c.body), c.header...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			e := r.errorBody(t)
			if e.Code != c.code || e.Param != c.param {
				t.Errorf("code %q param %q, want %q %q: %s", e.Code, e.Param, c.code, c.param, e.Message)
			}
			if c.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if c.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	// Still alive, and the key works.
	if r := do(t, http.DefaultClient, "GET", base+"/healthz", "", nil); r.status != 200 {
		t.Fatalf("healthz after the bad requests: %d %s", r.status, r.body)
	}
	if r := do(t, http.DefaultClient, "GET", base+"/v1/models", "", nil, auth...); r.status != 200 || !strings.Contains(string(r.body), `"id":"demo"`) {
		t.Fatalf("models: %d %s", r.status, r.body)
	}
	r := postJSON(t, base+gen, `{"prompt":"x",`+ok+`}`, auth...)
	if got := pngs(t, r); len(got) != 1 {
		t.Fatalf("%d images", len(got))
	}
	r = postJSON(t, base+a1111, `{"prompt":"x","steps":2,"prior_steps":2,"sr_steps":2,"sampler_name":"Euler","send_images":false}`, auth...)
	var a struct {
		Images []string `json:"images"`
		Info   string   `json:"info"`
	}
	if err := json.Unmarshal(r.body, &a); err != nil || r.status != 200 || len(a.Images) != 0 || !strings.Contains(a.Info, "sampler_name") {
		t.Fatalf("A1111 with ignored fields and send_images false: %d %s", r.status, r.body)
	}
}

// TestKeyMatches checks the constant-time key comparison.
func TestKeyMatches(t *testing.T) {
	for _, c := range []struct {
		got, want string
		ok        bool
	}{{"k", "k", true}, {"k", "K", false}, {"", "k", false}, {"kk", "k", false}, {"s3cret", "s3cret", true}} {
		if keyMatches(c.got, c.want) != c.ok {
			t.Errorf("keyMatches(%q, %q) = %v", c.got, c.want, !c.ok)
		}
	}
}

// events reads a server-sent event stream's JSON events.
func events(body io.Reader) <-chan map[string]any {
	ch := make(chan map[string]any, 1024)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev map[string]any
			if json.Unmarshal([]byte(data), &ev) == nil {
				ch <- ev
			}
		}
	}()
	return ch
}

// openStream posts body with ?stream=true under ctx and returns its events.
func openStream(t *testing.T, ctx context.Context, url, body string) (<-chan map[string]any, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"?stream=true", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	return events(resp.Body), resp
}

// waitEvent reads events until one satisfies ok.
func waitEvent(t *testing.T, ch <-chan map[string]any, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("the stream ended before %s", what)
			}
			if ok(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s within 60 s", what)
		}
	}
}

func isProgress(stage string) func(map[string]any) bool {
	return func(ev map[string]any) bool { return ev["event"] == "progress" && ev["stage"] == stage }
}

// jobStatus reads GET /v1/jobs/{id}.
func jobStatus(t *testing.T, base, id string) jobInfo {
	t.Helper()
	r := do(t, http.DefaultClient, "GET", base+"/v1/jobs/"+id, "", nil)
	var in jobInfo
	if err := json.Unmarshal(r.body, &in); err != nil || r.status != 200 {
		t.Fatalf("job %s: %d %s", id, r.status, r.body)
	}
	return in
}

// TestServeQueueAndCancel fills the queue (the next request gets 503 with
// Retry-After), follows the running job's events, disconnects its client
// and checks that the job is cancelled within a step and the queued
// request runs at once instead of waiting for the cancelled job's
// remaining ~1000 decoder steps.
func TestServeQueueAndCancel(t *testing.T) {
	cfg := demoServeConfig()
	cfg.maxQueue, cfg.maxSteps = 1, 1000
	base, _ := startServe(t, demoPipeline(t), cfg)
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	evA, respA := openStream(t, ctxA, base+"/v1/images/generations", `{"prompt":"long","seed":1,"prior_steps":2,"decoder_steps":1000,"sr_steps":2}`)
	defer respA.Body.Close()
	first := waitEvent(t, evA, "the queued event", func(ev map[string]any) bool { return ev["event"] == "queued" })
	idA, _ := first["id"].(string)
	waitEvent(t, evA, "a decoder step", isProgress("decoder"))

	// Another client follows A's events.
	reqW, _ := http.NewRequest("GET", base+"/v1/jobs/"+idA+"/events", nil)
	respW, err := http.DefaultClient.Do(reqW)
	if err != nil {
		t.Fatal(err)
	}
	defer respW.Body.Close()
	evW := events(respW.Body)
	st := waitEvent(t, evW, "the status event", func(ev map[string]any) bool { return ev["event"] == "status" })
	if job, _ := st["job"].(map[string]any); job["status"] != jobRunning {
		t.Fatalf("job A: %v", st)
	}
	waitEvent(t, evW, "a decoder step of A", isProgress("decoder"))

	// B waits in the queue (its one place), C finds it full.
	type result struct {
		r   reply
		err error
	}
	bDone := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("POST", base+"/v1/images/generations", strings.NewReader(`{"prompt":"short","seed":2,"prior_steps":2,"decoder_steps":2,"sr_steps":2}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			bDone <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		bDone <- result{reply{resp.StatusCode, resp.Header, b}, err}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := do(t, http.DefaultClient, "GET", base+"/v1/jobs", "", nil)
		if strings.Contains(string(r.body), `"status":"queued"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B is not queued: %s", r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := postJSON(t, base+"/v1/images/generations", `{"prompt":"x","prior_steps":2,"decoder_steps":2,"sr_steps":2}`)
	if c.status != http.StatusServiceUnavailable {
		t.Fatalf("C: status %d, want 503: %s", c.status, c.body)
	}
	if e := c.errorBody(t); e.Code != "queue_full" {
		t.Errorf("C: code %q", e.Code)
	}
	if ra, err := strconv.Atoi(c.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("C: Retry-After %q", c.header.Get("Retry-After"))
	}

	// A's client goes away: A stops, B runs at once.
	cancelled := time.Now()
	cancelA()
	var b result
	select {
	case b = <-bDone:
	case <-time.After(60 * time.Second):
		t.Fatal("B did not finish within 60 s of A's cancellation")
	}
	waited := time.Since(cancelled)
	if b.err != nil {
		t.Fatal(b.err)
	}
	if got := pngs(t, b.r); len(got) != 1 {
		t.Fatalf("B: %d images", len(got))
	}
	done := waitEvent(t, evW, "A's done event", func(ev map[string]any) bool { return ev["event"] == "done" })
	job, _ := done["job"].(map[string]any)
	prog, _ := job["progress"].(map[string]any)
	step, _ := prog["step"].(float64)
	if job["status"] != jobCancelled {
		t.Errorf("A ended %v, want cancelled: %v", job["status"], done)
	}
	in := jobStatus(t, base, idA)
	if in.Status != jobCancelled || in.Error == nil || in.Error.Code != "cancelled" {
		t.Errorf("GET /v1/jobs/%s: %+v", idA, in)
	}
	// A's elapsed decoder time at its last step, per step, times its
	// remaining steps: what B would have waited for.
	elapsed, _ := prog["elapsed_s"].(float64)
	remaining := time.Duration(elapsed / max(step, 1) * (1000 - step) * float64(time.Second))
	t.Logf("A cancelled at decoder step %.0f/1000 (%.0f ms/step; ~%s of steps left); B answered %s after the cancel", step, 1000*elapsed/max(step, 1), round(remaining), round(waited))
	if step >= 1000 || prog["stage"] != "decoder" {
		t.Errorf("A ran to %v step %v: not cancelled", prog["stage"], step)
	}
	if waited > remaining/2 {
		t.Errorf("B waited %s after the cancel; A had ~%s of steps left", waited, remaining)
	}
}

// TestServeTimeout checks that a request past --timeout is answered 504
// and its job stopped.
func TestServeTimeout(t *testing.T) {
	cfg := demoServeConfig()
	cfg.maxSteps, cfg.timeout = 1000, 1500*time.Millisecond
	base, _ := startServe(t, demoPipeline(t), cfg)
	t0 := time.Now()
	r := postJSON(t, base+"/v1/images/generations", `{"prompt":"slow","prior_steps":2,"decoder_steps":1000,"sr_steps":2}`)
	if d := time.Since(t0); d > 15*time.Second {
		t.Errorf("answered after %s", d)
	}
	if r.status != http.StatusGatewayTimeout || r.errorBody(t).Code != "timeout" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	id := r.header.Get("X-Unclip-Job")
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		in := jobStatus(t, base, id)
		if in.Status == jobFailed && in.Error != nil && in.Error.Code == "timeout" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s after the timeout: %+v", id, in)
		}
	}
}

// TestServeShutdown stops the server with a running and a queued job: the
// queued one is answered 503 and the running one finishes (or, with
// cancelOnShutdown, is cancelled and answered 503); serve returns nil.
func TestServeShutdown(t *testing.T) {
	p := demoPipeline(t)
	for _, cancelRunning := range []bool{false, true} {
		t.Run(fmt.Sprintf("cancel=%v", cancelRunning), func(t *testing.T) {
			cfg := demoServeConfig()
			cfg.maxSteps, cfg.cancelOnShutdown = 1000, cancelRunning
			base, stop := startServe(t, p, cfg)
			steps := 30
			if cancelRunning {
				steps = 1000
			}
			evA, respA := openStream(t, context.Background(), base+"/v1/images/generations",
				fmt.Sprintf(`{"prompt":"a","seed":1,"prior_steps":2,"decoder_steps":%d,"sr_steps":2}`, steps))
			defer respA.Body.Close()
			waitEvent(t, evA, "a decoder step", isProgress("decoder"))
			evB, respB := openStream(t, context.Background(), base+"/sdapi/v1/txt2img", `{"prompt":"b","steps":2,"prior_steps":2,"sr_steps":2}`)
			defer respB.Body.Close()
			waitEvent(t, evB, "B queued", func(ev map[string]any) bool { return ev["event"] == "queued" })
			t0 := time.Now()
			stopped := make(chan error, 1)
			go func() { stopped <- stop() }()
			b := waitEvent(t, evB, "B's end", func(ev map[string]any) bool { return ev["event"] == "error" || ev["event"] == "result" })
			if e, _ := b["error"].(map[string]any); b["status"] != float64(503) || e["code"] != "shutting_down" {
				t.Errorf("queued B: %v, want a 503 shutting_down", b)
			}
			a := waitEvent(t, evA, "A's end", func(ev map[string]any) bool { return ev["event"] == "error" || ev["event"] == "result" })
			if cancelRunning {
				if e, _ := a["error"].(map[string]any); a["status"] != float64(503) || e["code"] != "shutting_down" {
					t.Errorf("running A with cancel-on-shutdown: %v, want a 503", a)
				}
				if d := time.Since(t0); d > 10*time.Second {
					t.Errorf("cancelling A took %s", d)
				}
			} else if a["event"] != "result" {
				t.Errorf("running A: %v, want its result", a)
			}
			if err := <-stopped; err != nil {
				t.Fatalf("serve: %v", err)
			}
			if _, err := http.Get(base + "/healthz"); err == nil {
				t.Error("the server still answers after shutdown")
			}
		})
	}
}

// TestServeSignal runs the built binary: SIGTERM while a job runs lets it
// finish, then the server exits 0.
func TestServeSignal(t *testing.T) {
	bin := buildBinary(t)
	cmd := exec.Command(bin, "serve", "-m", "demo", "--device", "cpu", "--addr", "127.0.0.1:0")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var base string
	for deadline := time.Now().Add(60 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, rest, ok := strings.Cut(stderr.String(), "listening on "); ok {
			base, _, _ = strings.Cut(rest, " ")
		}
	}
	if base == "" {
		t.Fatalf("the server did not start: %s", stderr.String())
	}
	ev, resp := openStream(t, context.Background(), base+"/v1/images/generations", `{"prompt":"a","seed":1,"prior_steps":2,"decoder_steps":30,"sr_steps":2}`)
	defer resp.Body.Close()
	waitEvent(t, ev, "a decoder step", isProgress("decoder"))
	cmd.Process.Signal(syscall.SIGTERM)
	end := waitEvent(t, ev, "the result", func(ev map[string]any) bool { return ev["event"] == "error" || ev["event"] == "result" })
	if end["event"] != "result" {
		t.Errorf("the running job after SIGTERM: %v", end)
	}
	stuck := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer stuck.Stop()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr: %s", err, stderr.String())
	}
	for _, want := range []string{"shutting down: finishing the running job", "stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q does not say %q", stderr.String(), want)
		}
	}
}

// multipartBody builds a variations form.
func multipartBody(t *testing.T, filename string, image []byte, fields ...string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		mw.WriteField(fields[i], fields[i+1])
	}
	if image != nil {
		fw, err := mw.CreateFormFile("image", filename)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(image)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

// TestServeVariations serves the image-variations fixture: an uploaded
// image's variations are byte for byte what unclip vary writes for a file
// of the same name; bad uploads get their 4xx.
func TestServeVariations(t *testing.T) {
	model, dir, _ := variationFixture(t)
	inputs := filepath.Join(dir, "inputs")
	p, err := unclip.Load(model, unclip.LoadOptions{Device: tensor.CPU()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := demoServeConfig()
	cfg.modelID, cfg.modelArg, cfg.modelName = "karlo-variations", model, model
	cfg.maxUpload = 1 << 20
	base, _ := startServe(t, p, cfg)
	input, err := os.ReadFile(filepath.Join(inputs, "input0.png"))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	t.Chdir(inputs)
	if code, _, stderr := runCLI("vary", "-m", model, "-i", "input0.png", "-n", "2", "--seed", "3", "--decoder-steps", "2", "--sr-steps", "2",
		"--device", "cpu", "--quiet", "-o", filepath.Join(out, "v-%d.png")); code != 0 {
		t.Fatalf("vary: exit %d: %s", code, stderr)
	}
	size := outputSize(p)
	ctype, body := multipartBody(t, "input0.png", input, "n", "2", "seed", "3", "decoder_steps", "2", "sr_steps", "2",
		"size", fmt.Sprintf("%dx%d", size, size), "response_format", "b64_json", "model", "karlo-variations")
	got := pngs(t, do(t, http.DefaultClient, "POST", base+"/v1/images/variations", ctype, body))
	if len(got) != 2 {
		t.Fatalf("%d images", len(got))
	}
	for i := range got {
		want, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("v-%d.png", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[i], want) {
			gt, _ := pngText(got[i])
			wt, _ := pngText(want)
			t.Errorf("variation %d differs from vary's\nserver: %q\nvary:   %q", i+1, gt["parameters"], wt["parameters"])
		}
	}
	for _, c := range []struct {
		name   string
		ctype  string
		body   []byte
		status int
		code   string
	}{
		{"text endpoint", "application/json", []byte(`{"prompt":"x"}`), 400, "unsupported_model"},
		{"JSON body", "application/json", []byte(`{"n":1}`), 415, "unsupported_media_type"},
		{"no image", "", nil, 400, "missing_field"},
		{"not an image", "", []byte("GIF89a not really"), 400, "invalid_image"},
		{"unknown field", "", input, 400, "unknown_field"},
		{"n too large", "", input, 400, "invalid_value"},
		{"n not a number", "", input, 400, "invalid_type"},
		{"oversize", "", bytes.Repeat(input, 1+(1<<20)/len(input)), 413, "request_too_large"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctype, body, path := c.ctype, c.body, "/v1/images/variations"
			switch c.name {
			case "text endpoint":
				path = "/v1/images/generations"
			case "unknown field":
				ctype, body = multipartBody(t, "a.png", c.body, "mask", "x")
			case "n too large":
				ctype, body = multipartBody(t, "a.png", c.body, "n", "100")
			case "n not a number":
				ctype, body = multipartBody(t, "a.png", c.body, "n", "two")
			case "no image", "not an image", "oversize":
				ctype, body = multipartBody(t, "a.png", c.body)
			}
			r := do(t, http.DefaultClient, "POST", base+path, ctype, body)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if e := r.errorBody(t); e.Code != c.code {
				t.Errorf("code %q, want %q: %s", e.Code, c.code, e.Message)
			}
		})
	}
}

// TestServeLoad sends 200 requests (40 with -short; UNCLIP_SERVE_LOAD=N
// sends N) from 8 concurrent clients, alternating the two text endpoints,
// with a queue one place too short for them all, so that some answers are
// 503 (retried after 20 ms). It checks that every request succeeds and
// that neither goroutines nor the heap grow between the end of the first
// quarter and the end. On the project's 2-core machine 200 take ~37 s.
func TestServeLoad(t *testing.T) {
	total := 200
	if testing.Short() {
		total = 40
	}
	if v := os.Getenv("UNCLIP_SERVE_LOAD"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 4 {
			t.Fatalf("UNCLIP_SERVE_LOAD=%q: want a number of requests ≥ 4", v)
		}
		total = n
	}
	const clients = 8
	cfg := demoServeConfig()
	cfg.maxQueue = 6 // 7 jobs in the server for 8 clients: some 503s
	base, _ := startServe(t, demoPipeline(t), cfg)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * clients}, Timeout: 5 * time.Minute}
	defer client.CloseIdleConnections()
	var busy, failures atomic.Int64
	var failMu sync.Mutex
	var failed []string
	// phase sends n requests from the clients and waits for all of them.
	phase := func(from, n int) {
		var next atomic.Int64
		next.Store(int64(from))
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= from+n {
						return
					}
					path, body := "/v1/images/generations", fmt.Sprintf(`{"prompt":"load %d","seed":%d,"prior_steps":2,"decoder_steps":2,"sr_steps":2}`, i, i)
					if i%2 == 1 {
						path, body = "/sdapi/v1/txt2img", fmt.Sprintf(`{"prompt":"load %d","seed":%d,"steps":2,"prior_steps":2,"sr_steps":2}`, i, i)
					}
					for {
						r, err := fetch(client, "POST", base+path, "application/json", []byte(body))
						if err != nil {
							r.status, r.body = -1, []byte(err.Error())
						}
						if r.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") != "" {
							busy.Add(1)
							time.Sleep(20 * time.Millisecond)
							continue
						}
						if r.status != http.StatusOK || !bytes.Contains(r.body, []byte("iVBORw0KGgo")) { // a base64 PNG
							failures.Add(1)
							failMu.Lock()
							failed = append(failed, fmt.Sprintf("request %d: %d %.200s", i, r.status, r.body))
							failMu.Unlock()
						}
						break
					}
				}
			})
		}
		wg.Wait()
	}
	measure := func() (int, uint64) {
		client.CloseIdleConnections()
		g := runtime.NumGoroutine()
		for i := 0; i < 100; i++ { // let closed connections' goroutines exit
			time.Sleep(20 * time.Millisecond)
			if n := runtime.NumGoroutine(); n >= g && i > 5 {
				break
			} else {
				g = n
			}
		}
		return g, heapAfterGC()
	}
	t0 := time.Now()
	quarter := total / 4
	phase(0, quarter)
	g1, h1 := measure()
	phase(quarter, total-quarter)
	g2, h2 := measure()
	elapsed := time.Since(t0)
	t.Logf("%d requests from %d clients in %s (%.1f/s): %d failures, %d 503 answers (retried); after %d requests: %d goroutines, heap %.2f MiB; after %d: %d goroutines, heap %.2f MiB",
		total, clients, round(elapsed), float64(total)/elapsed.Seconds(), failures.Load(), busy.Load(), quarter, g1, float64(h1)/(1<<20), total, g2, float64(h2)/(1<<20))
	if failures.Load() > 0 {
		t.Errorf("%d failures: %s", failures.Load(), strings.Join(failed[:min(len(failed), 5)], "\n"))
	}
	if g2 > g1+2 {
		t.Errorf("goroutines grew from %d to %d", g1, g2)
	}
	if h2 > h1+4<<20 {
		t.Errorf("heap grew from %.2f to %.2f MiB", float64(h1)/(1<<20), float64(h2)/(1<<20))
	}
}
