package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
)

const (
	hashMain = "0123456789abcdef0123456789abcdef01234567"
	hashV1   = "89abcdef0123456789abcdef0123456789abcdef"
	hashBare = "fedcba9876543210fedcba9876543210fedcba98"
)

// fakeHub lays out a Hugging Face cache entry for kakaobrain/karlo-v1-alpha
// under hub: refs/main and refs/v1.0 pointing at snapshots, one snapshot
// reachable only by its hash, and one ref whose snapshot is missing.
func fakeHub(t *testing.T, hub string) string {
	t.Helper()
	repo := filepath.Join(hub, "models--kakaobrain--karlo-v1-alpha")
	write := func(rel, data string) {
		p := filepath.Join(repo, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("refs/main", hashMain) // the hub writes no trailing newline
	write("refs/v1.0", hashV1+"\n")
	write("refs/gone", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	write("refs/partial", hashBare[:39]+"0")
	for _, h := range []string{hashMain, hashV1, hashBare} {
		write("snapshots/"+h+"/model_index.json", `{"_class_name": "UnCLIPPipeline"}`)
	}
	write("snapshots/"+hashBare[:39]+"0/text_encoder/config.json", `{}`)
	return repo
}

// isolateHub points every Hugging Face cache variable away from the real
// cache; the test sets the one it exercises.
func isolateHub(t *testing.T, home string) {
	for _, k := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"} {
		t.Setenv(k, "")
	}
	t.Setenv("HOME", home)
}

func TestResolveModel(t *testing.T) {
	fixtures.Require(t)
	model, _, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	home := filepath.Join(root, "home")
	hubHome := filepath.Join(home, ".cache", "huggingface", "hub")
	hubExplicit := filepath.Join(root, "hubcache")
	hfHome := filepath.Join(root, "hfhome")
	xdg := filepath.Join(root, "xdg")
	repoDefault := fakeHub(t, hubHome)
	repoExplicit := fakeHub(t, hubExplicit)
	repoHFHome := fakeHub(t, filepath.Join(hfHome, "hub"))
	repoXDG := fakeHub(t, filepath.Join(xdg, "huggingface", "hub"))

	plain := filepath.Join(root, "plain")
	if err := os.MkdirAll(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(plain, "notes.txt"), []byte("hi"), 0o644)
	schedOnly := filepath.Join(root, "sched")
	os.MkdirAll(schedOnly, 0o755)
	os.WriteFile(filepath.Join(schedOnly, "scheduler_config.json"), []byte(`{"_class_name": "UnCLIPScheduler"}`), 0o644)
	aFile := filepath.Join(plain, "notes.txt")

	snap := func(repo, h string) string { return filepath.Join(repo, "snapshots", h) }
	tests := []struct {
		name     string
		env      map[string]string // on top of isolateHub
		m, rev   string
		want     string   // resolved folder ("" when an error is wanted)
		errHas   []string // substrings of the error
		noteHas  string   // substring of the stderr note
		wantNote bool
	}{
		{name: "demo", m: "demo", want: "demo"},
		{name: "dir", m: model, want: model},
		{name: "tokenizer dir passes for tokenize", m: filepath.Join(model, "tokenizer"), want: filepath.Join(model, "tokenizer")},
		{name: "repo id via refs/main in default cache", m: "kakaobrain/karlo-v1-alpha",
			want: snap(repoDefault, hashMain), wantNote: true, noteHas: "kakaobrain/karlo-v1-alpha"},
		{name: "repo id via HF_HUB_CACHE", env: map[string]string{"HF_HUB_CACHE": hubExplicit, "HF_HOME": hfHome},
			m: "kakaobrain/karlo-v1-alpha", want: snap(repoExplicit, hashMain), wantNote: true},
		{name: "repo id via HUGGINGFACE_HUB_CACHE", env: map[string]string{"HUGGINGFACE_HUB_CACHE": hubExplicit, "HF_HOME": hfHome},
			m: "kakaobrain/karlo-v1-alpha", want: snap(repoExplicit, hashMain), wantNote: true},
		{name: "repo id via HF_HOME", env: map[string]string{"HF_HOME": hfHome, "XDG_CACHE_HOME": xdg},
			m: "kakaobrain/karlo-v1-alpha", want: snap(repoHFHome, hashMain), wantNote: true},
		{name: "repo id via XDG_CACHE_HOME", env: map[string]string{"XDG_CACHE_HOME": xdg},
			m: "kakaobrain/karlo-v1-alpha", want: snap(repoXDG, hashMain), wantNote: true},
		{name: "HF_HOME with ~", env: map[string]string{"HF_HOME": "~/.cache/huggingface"},
			m: "kakaobrain/karlo-v1-alpha", want: snap(repoDefault, hashMain), wantNote: true},
		{name: "explicit revision ref", m: "kakaobrain/karlo-v1-alpha", rev: "v1.0",
			want: snap(repoDefault, hashV1), wantNote: true, noteHas: "v1.0"},
		{name: "explicit main", m: "kakaobrain/karlo-v1-alpha", rev: "main", want: snap(repoDefault, hashMain), wantNote: true},
		{name: "commit hash", m: "kakaobrain/karlo-v1-alpha", rev: hashBare, want: snap(repoDefault, hashBare), wantNote: true},
		{name: "missing cache", env: map[string]string{"HF_HUB_CACHE": filepath.Join(root, "empty")},
			m: "kakaobrain/karlo-v1-alpha", errHas: []string{
				"not downloaded", filepath.Join(root, "empty"), "models--kakaobrain--karlo-v1-alpha", "$HF_HUB_CACHE",
				"huggingface-cli download kakaobrain/karlo-v1-alpha", "snapshot_download('kakaobrain/karlo-v1-alpha'",
				"13.7 GB", "no fp16 files", `--include "*.json" "*.txt" "*/model.safetensors" "*/diffusion_pytorch_model.safetensors"`}},
		{name: "missing repo in default cache", m: "someone/other-model", errHas: []string{
			"not downloaded", hubHome, "huggingface-cli download someone/other-model"}},
		{name: "unknown revision", m: "kakaobrain/karlo-v1-alpha", rev: "v9",
			errHas: []string{`revision "v9"`, "refs", "main", "v1.0", "--revision v9", "revision='v9'"}},
		{name: "unknown commit", m: "kakaobrain/karlo-v1-alpha", rev: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
			errHas: []string{"not in the cache", "no snapshot"}},
		{name: "ref to missing snapshot", m: "kakaobrain/karlo-v1-alpha", rev: "gone",
			errHas: []string{"no snapshot", "interrupted", "huggingface-cli download"}},
		{name: "snapshot without model_index.json", m: "kakaobrain/karlo-v1-alpha", rev: "partial",
			errHas: []string{"no model_index.json", "incomplete"}},
		{name: "bad revision", m: "kakaobrain/karlo-v1-alpha", rev: "../../etc", errHas: []string{"bad revision"}},
		{name: "non-model folder", m: plain,
			errHas: []string{plain + " is not a diffusers model folder (no model_index.json)"}},
		{name: "component folder", m: filepath.Join(model, "text_encoder"),
			errHas: []string{"is not a diffusers model folder (no model_index.json)", "text_encoder component folder", "-m " + model}},
		{name: "component by config class", m: schedOnly,
			errHas: []string{"no model_index.json", "UnCLIPScheduler component folder"}},
		{name: "cache entry folder", m: repoDefault, errHas: []string{"Hugging Face cache entry", "snapshots"}},
		{name: "a file", m: aFile, errHas: []string{"is a file, not a model folder"}},
		{name: "missing local path", m: filepath.Join(root, "nope", "model"), errHas: []string{"does not exist", "kakaobrain/karlo-v1-alpha"}},
		{name: "not a repo id", m: "a/b/c", errHas: []string{"does not exist"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolateHub(t, home)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stderr bytes.Buffer
			got, err := resolveModel(tc.m, tc.rev, &stderr)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("resolveModel(%q, %q) = %q, want an error", tc.m, tc.rev, got)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error lacks %q:\n%v", s, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("resolveModel(%q, %q): %v", tc.m, tc.rev, err)
			}
			if got != tc.want {
				t.Errorf("resolveModel(%q, %q) = %q, want %q", tc.m, tc.rev, got, tc.want)
			}
			if note := stderr.String(); tc.wantNote != (note != "") || !strings.Contains(note, tc.noteHas) {
				t.Errorf("stderr note %q (want note %v containing %q)", note, tc.wantNote, tc.noteHas)
			}
		})
	}
}

// A local folder wins over a repository id of the same spelling.
func TestResolveModelLocalBeforeHub(t *testing.T) {
	root := t.TempDir()
	isolateHub(t, filepath.Join(root, "home"))
	fakeHub(t, filepath.Join(root, "home", ".cache", "huggingface", "hub"))
	local := filepath.Join(root, "kakaobrain", "karlo-v1-alpha")
	if err := os.MkdirAll(local, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local, "model_index.json"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	got, err := resolveModel("kakaobrain/karlo-v1-alpha", "", nil)
	if err != nil || got != "kakaobrain/karlo-v1-alpha" {
		t.Fatalf("resolveModel = %q, %v; want the local folder", got, err)
	}
}

func TestRepoID(t *testing.T) {
	for _, tc := range []struct {
		m  string
		ok bool
	}{
		{"kakaobrain/karlo-v1-alpha", true}, {"org/name.v2", true}, {"Org_1/Name_2", true},
		{"karlo", false}, {"a/b/c", false}, {"/abs", false}, {"./rel", false}, {"../x", false},
		{"org/", false}, {"/name", false}, {"org/na--me", false}, {"org/a..b", false}, {"-org/name", false},
	} {
		if _, _, ok := repoID(tc.m); ok != tc.ok {
			t.Errorf("repoID(%q) ok = %v, want %v", tc.m, ok, tc.ok)
		}
	}
}

// The commands resolve repository ids through the cache, whose snapshots
// hold symbolic links into blobs/ as huggingface_hub lays them out.
func TestResolveModelCLI(t *testing.T) {
	fixtures.Require(t)
	model, _, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	isolateHub(t, filepath.Join(root, "home"))
	hub := filepath.Join(root, "hub")
	t.Setenv("HF_HUB_CACHE", hub)

	code, out, errs := cli(t, "tokenize", "-m", "kakaobrain/karlo-v1-alpha", "hello")
	wantError(t, code, out, errs, 1, "tokenize", "not downloaded", hub, "huggingface-cli download kakaobrain/karlo-v1-alpha")

	repo := filepath.Join(hub, "models--kakaobrain--karlo-v1-alpha")
	snap := filepath.Join(repo, "snapshots", hashMain)
	for _, dir := range []string{filepath.Join(snap, "tokenizer"), filepath.Join(repo, "refs")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(repo, "refs", "main"), []byte(hashMain), 0o644)
	links := []string{"model_index.json"}
	ents, err := os.ReadDir(filepath.Join(model, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		links = append(links, filepath.Join("tokenizer", e.Name()))
	}
	for _, l := range links {
		if err := os.Symlink(filepath.Join(model, l), filepath.Join(snap, l)); err != nil {
			t.Skipf("no symbolic links here: %v", err)
		}
	}
	code, out, errs = cli(t, "tokenize", "-m", "kakaobrain/karlo-v1-alpha", "hello")
	if code != 0 || !strings.Contains(out, "hello</w>") || !strings.Contains(errs, snap) {
		t.Errorf("tokenize from the cache: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}
