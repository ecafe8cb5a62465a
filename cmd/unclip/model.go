package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/unclip-go/unclip/models/modelfile"
	"github.com/unclip-go/unclip/models/unclip"
)

// karloRepo is the Hugging Face repository of the published Karlo model.
const karloRepo = "kakaobrain/karlo-v1-alpha"

// karloVariationsRepo is the image-variations model; its main branch has
// PyTorch .bin weights only, the safetensors are on refs/pr/2.
const karloVariationsRepo = "kakaobrain/karlo-v1-alpha-image-variations"

// resolveModel turns a -m value into a model folder:
//
//   - "demo" is returned unchanged (the caller handles it);
//   - an existing folder must hold model_index.json (a bare tokenizer folder
//     is also returned, for tokenize);
//   - ORG/NAME, when no such folder exists, is looked up as a Hugging Face
//     repository id in the local Hugging Face cache, at revision (default
//     "main": a branch or tag name, or a 40-hex commit hash).
//
// It reads nothing from the network. The errors say what was looked for,
// where, and how to download the model. A one-line note naming the
// snapshot found in the cache goes to stderr.
func resolveModel(m, revision string, stderr io.Writer) (string, error) {
	if m == "demo" {
		return m, nil
	}
	if m == "" {
		return "", errors.New("no model given (-m DIR or -m ORG/NAME)")
	}
	st, err := os.Stat(m)
	switch {
	case err == nil && st.IsDir():
		return checkModelDir(m)
	case err == nil:
		return "", fmt.Errorf("%s is a file, not a model folder (-m takes a diffusers model folder, the one holding model_index.json)", m)
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("model %s: %w", m, err)
	}
	if org, name, ok := repoID(m); ok {
		return resolveHub(org, name, revision, stderr)
	}
	return "", fmt.Errorf("model folder %s does not exist (-m takes a diffusers model folder, a Hugging Face repository id such as %s, or demo)", m, karloRepo)
}

// checkModelDir accepts dir when it is a diffusers model folder, explains
// what it is when it is not, and lets a bare tokenizer folder through
// (tokenize accepts one; the other commands reject it when they read
// model_index.json).
func checkModelDir(dir string) (string, error) {
	if fileExists(filepath.Join(dir, "model_index.json")) {
		return dir, nil
	}
	if isTokenizerDir(dir) {
		return dir, nil
	}
	msg := fmt.Sprintf("%s is not a diffusers model folder (no model_index.json)", dir)
	if comp, ok := componentName(dir); ok {
		parent := filepath.Dir(filepath.Clean(dir))
		if fileExists(filepath.Join(parent, "model_index.json")) {
			return "", fmt.Errorf("%s: it is the %s component folder of the model in %s; pass that folder: -m %s", msg, comp, parent, parent)
		}
		return "", fmt.Errorf("%s: it looks like a %s component folder; pass the folder that holds model_index.json and all the component folders", msg, comp)
	}
	if snaps := filepath.Join(dir, "snapshots"); isDir(snaps) && strings.HasPrefix(filepath.Base(filepath.Clean(dir)), "models--") {
		return "", fmt.Errorf("%s: it is a Hugging Face cache entry; pass one of its snapshots (%s/<commit>) or the repository id", msg, snaps)
	}
	return "", errors.New(msg)
}

// isTokenizerDir reports whether dir holds CLIP tokenizer files.
func isTokenizerDir(dir string) bool {
	return fileExists(filepath.Join(dir, "vocab.json")) || fileExists(filepath.Join(dir, "tokenizer.json"))
}

// componentName reports which unCLIP component dir looks like: its name is
// a component's, or its parent holds model_index.json, or its config names
// a component class.
func componentName(dir string) (string, bool) {
	dir = filepath.Clean(dir)
	base := filepath.Base(dir)
	for _, c := range append(unclip.Components, unclip.VariationComponents...) {
		if base == c.Name {
			return c.Name, true
		}
	}
	for _, cfg := range []string{"config.json", "scheduler_config.json"} {
		data, err := modelfile.Read(filepath.Join(dir, cfg), modelfile.ConfigLimit)
		if err != nil {
			continue
		}
		var head struct {
			Class string `json:"_class_name"`
		}
		if json.Unmarshal(data, &head) == nil && head.Class != "" {
			for _, c := range append(unclip.Components, unclip.VariationComponents...) {
				if head.Class == c.Class {
					return c.Class, true
				}
			}
			return head.Class, true
		}
	}
	if fileExists(filepath.Join(filepath.Dir(dir), "model_index.json")) {
		return fmt.Sprintf("%q", base), true
	}
	return "", false
}

// repoPart is one half of a Hugging Face repository id.
var repoPart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// repoID splits a Hugging Face repository id ORG/NAME.
func repoID(m string) (org, name string, ok bool) {
	org, name, ok = strings.Cut(m, "/")
	if !ok || !repoPart.MatchString(org) || !repoPart.MatchString(name) ||
		strings.Contains(m, "..") || strings.Contains(m, "--") || len(org) > 96 || len(name) > 96 {
		return "", "", false
	}
	return org, name, true
}

var commitHash = regexp.MustCompile(`^[0-9a-f]{40}$`)

// hubCache returns the Hugging Face hub cache folder, resolved as
// huggingface_hub does, and says how it was chosen.
func hubCache() (dir, how string) {
	env := func(k string) string { return expandHome(os.Getenv(k)) }
	switch {
	case env("HF_HUB_CACHE") != "":
		return env("HF_HUB_CACHE"), "$HF_HUB_CACHE"
	case env("HUGGINGFACE_HUB_CACHE") != "":
		return env("HUGGINGFACE_HUB_CACHE"), "$HUGGINGFACE_HUB_CACHE"
	case env("HF_HOME") != "":
		return filepath.Join(env("HF_HOME"), "hub"), "$HF_HOME/hub"
	case env("XDG_CACHE_HOME") != "":
		return filepath.Join(env("XDG_CACHE_HOME"), "huggingface", "hub"), "$XDG_CACHE_HOME/huggingface/hub"
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "~"
	}
	return filepath.Join(home, ".cache", "huggingface", "hub"), "the default, ~/.cache/huggingface/hub"
}

// expandHome replaces a leading ~ by the home folder, as Python's
// os.path.expanduser does for the Hugging Face variables.
func expandHome(p string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return filepath.Join(home, p[1:])
}

// resolveHub finds the snapshot of ORG/NAME at revision in the Hugging Face
// cache.
func resolveHub(org, name, revision string, stderr io.Writer) (string, error) {
	repo := org + "/" + name
	if revision == "" {
		revision = "main"
	}
	if !filepath.IsLocal(revision) || strings.ContainsAny(revision, `\`) {
		return "", fmt.Errorf("bad revision %q for %s", revision, repo)
	}
	hub, how := hubCache()
	repoDir := filepath.Join(hub, "models--"+org+"--"+name)
	where := fmt.Sprintf("looked in the Hugging Face cache %s (%s; set HF_HUB_CACHE or HF_HOME to look elsewhere)", hub, how)
	if !isDir(repoDir) {
		return "", fmt.Errorf("model %s is not downloaded: there is no folder %s here, and no %s in the cache\n%s\n%s",
			repo, repo, filepath.Base(repoDir), where, downloadHint(repo, revision))
	}
	commit := revision
	if !commitHash.MatchString(revision) {
		data, err := modelfile.Read(filepath.Join(repoDir, "refs", revision), modelfile.RefLimit)
		switch {
		case err == nil:
			commit = strings.TrimSpace(string(data))
			if !filepath.IsLocal(commit) || strings.ContainsAny(commit, `/\`) {
				shown := commit
				if len(shown) > 64 {
					shown = shown[:64] + "…"
				}
				return "", fmt.Errorf("%s: %s holds %q, not a commit hash", repo, filepath.Join(repoDir, "refs", revision), shown)
			}
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("%s: revision %q: %w", repo, revision, err)
		case isDir(filepath.Join(repoDir, "snapshots", revision)):
			// A snapshot folder named by the revision itself (a short hash, say).
		default:
			return "", fmt.Errorf("revision %q of %s is not in the cache: no %s (cached revisions: %s)\n%s\n%s",
				revision, repo, filepath.Join(repoDir, "refs", revision), cachedRevisions(repoDir), where, downloadHint(repo, revision))
		}
	}
	snap := filepath.Join(repoDir, "snapshots", commit)
	if !isDir(snap) {
		return "", fmt.Errorf("revision %q of %s is not in the cache: no snapshot %s (the download may have been interrupted)\n%s\n%s",
			revision, repo, snap, where, downloadHint(repo, revision))
	}
	if !fileExists(filepath.Join(snap, "model_index.json")) {
		return "", fmt.Errorf("the cached snapshot %s of %s has no model_index.json: the download is incomplete, or %s is not a diffusers model\n%s",
			snap, repo, repo, downloadHint(repo, revision))
	}
	short := commit
	if len(short) > 12 {
		short = short[:12]
	}
	say(stderr, "model: %s (%s, commit %s) from the Hugging Face cache: %s\n", repo, revision, short, snap)
	return snap, nil
}

// cachedRevisions lists the refs and snapshots present in a cached
// repository folder.
func cachedRevisions(repoDir string) string {
	var revs []string
	filepath.WalkDir(filepath.Join(repoDir, "refs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if rel, err := filepath.Rel(filepath.Join(repoDir, "refs"), p); err == nil {
				revs = append(revs, filepath.ToSlash(rel))
			}
		}
		return nil
	})
	if ents, err := os.ReadDir(filepath.Join(repoDir, "snapshots")); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				revs = append(revs, e.Name())
			}
		}
	}
	slices.Sort(revs)
	if len(revs) == 0 {
		return "none"
	}
	return strings.Join(revs, ", ")
}

// downloadHint says how to fetch a repository into the Hugging Face cache.
func downloadHint(repo, revision string) string {
	rev, pyRev := "", ""
	if strings.EqualFold(repo, karloVariationsRepo) && revision == "main" {
		revision = "refs/pr/2" // the revision with safetensors
	}
	if revision != "main" {
		rev = " --revision " + revision
		pyRev = fmt.Sprintf(", revision='%s'", revision)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "To download it (pip install -U huggingface_hub; newer versions also name the command \"hf download\"):\n")
	fmt.Fprintf(&b, "  huggingface-cli download %s%s --include \"*.json\" \"*.txt\" \"*/model.safetensors\" \"*/diffusion_pytorch_model.safetensors\"\n", repo, rev)
	fmt.Fprintf(&b, "or from Python:\n")
	fmt.Fprintf(&b, "  python -c \"from huggingface_hub import snapshot_download; snapshot_download('%s'%s, allow_patterns=['*.json', '*.txt', '*/model.safetensors', '*/diffusion_pytorch_model.safetensors'])\"\n", repo, pyRev)
	if strings.EqualFold(repo, karloRepo) {
		fmt.Fprintf(&b, "unclip reads only the .json, .txt and .safetensors files: about 13.7 GB in float32 (the repository also holds\n"+
			"the same weights as PyTorch .bin files, which a download without --include fetches too: ~27 GB; it has no fp16 files).\n")
	}
	if strings.EqualFold(repo, karloVariationsRepo) {
		fmt.Fprintf(&b, "Its safetensors are on the revision refs/pr/2 (then run unclip with --revision refs/pr/2); its main branch holds\n"+
			"only PyTorch .bin weights, which unclip also reads (without running their pickle):\n"+
			"  huggingface-cli download %s --include \"*.json\" \"*.txt\" \"*/pytorch_model.bin\" \"*/diffusion_pytorch_model.bin\"\n"+
			"Either is about 10.8 GB in float32 (no prior; a ViT-L/14 image encoder).\n", karloVariationsRepo)
	}
	fmt.Fprintf(&b, "Or pass a local diffusers model folder: -m DIR.")
	return b.String()
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
