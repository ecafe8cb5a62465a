package clip

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/nn/nntest"
)

// allocated runs f and returns the bytes it allocated on the Go heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// loaderAllocLimit bounds what loading one small fuzzed file (and building
// a model against no weights) may allocate.
const loaderAllocLimit = 64 << 20

// FuzzTextConfig loads a fuzzed text_encoder/config.json (issue 16,
// finding 2). A config that loads must validate, and building it against
// an empty state dict must fail at the first missing weight without a
// panic and without allocating what the config declares.
func FuzzTextConfig(f *testing.F) {
	seeds := []string{
		`{}`,
		`{"vocab_size": 514, "hidden_size": 32, "intermediate_size": 37, "projection_dim": 32, "num_hidden_layers": 5, "num_attention_heads": 4, "eos_token_id": 513}`,
		`{"text_config": {"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12}}`,
		`{"hidden_size": 1099511627776}`,
		`{"num_hidden_layers": 1000000000}`,
		`{"max_position_embeddings": 1000000000000}`,
		`{"vocab_size": -5}`,
		`{"hidden_size": 65536, "num_attention_heads": 1}`,
		`{"num_hidden_layers": 1024, "hidden_size": 8, "num_attention_heads": 1}`,
		`{"intermediate_size": 262144, "hidden_size": 65536, "num_attention_heads": 65536}`,
		`{"hidden_act": "relu"}`,
		`{"hidden_size": 1e3}`,
		`[]`,
		`{"text_config": null}`,
	}
	nntest.FuzzConfig(f, seeds, nntest.ConfigFuzz[TextConfig]{
		Context: "clip:", Load: LoadTextConfig, Validate: TextConfig.Validate,
		Build: func(c TextConfig, sd *nn.StateDict, t nn.Target) error { _, err := NewTextModel(c, sd, t); return err }, MaxAlloc: loaderAllocLimit,
	})
}

// FuzzTokenizerFiles loads a tokenizer folder made of a fuzzed vocab.json,
// merges.txt and tokenizer_config.json (an empty input leaves the file
// out). Loading must fail or give a tokenizer that encodes text into ids
// of its vocabulary, without a panic, a hang or an allocation out of
// proportion with the files.
func FuzzTokenizerFiles(f *testing.F) {
	vocab := `{"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2, "b": 3, "ab": 4, "a</w>": 5, "b</w>": 6, "ab</w>": 7}`
	merges := "#version: 0.2\na b\na b</w>\n"
	for _, s := range [][3]string{
		{vocab, merges, ""},
		{vocab, merges, `{"model_max_length": 8, "pad_token": "<|endoftext|>", "do_lower_case": false}`},
		{vocab, merges, `{"model_max_length": 1e30}`},
		{vocab, merges, `{"model_max_length": 1048576}`},
		{vocab, merges, `{"added_tokens_decoder": {"9": {"content": "<x>"}}}`},
		{vocab, merges, `{"added_tokens_decoder": {"16777215": {"content": "<x>"}}}`},
		{vocab, merges, `{"bos_token": {"content": "a"}, "eos_token": {"no": 1}}`},
		{`{"<|startoftext|>": 0, "<|endoftext|>": 16777215}`, "", ""},
		{`{"<|startoftext|>": -1}`, "", ""},
		{`{}`, "", ""},
		{vocab, "a\n", ""},
		{vocab, strings.Repeat("a b\n", 1000), ""},
		{`{"<|startoftext|>": 0, "<|endoftext|>": 0}`, "\n\n", `{"unk_token": null}`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]), []byte(s[2]))
	}
	dir := f.TempDir()
	write := func(t *testing.T, name string, data []byte) {
		p := filepath.Join(dir, name)
		os.Remove(p)
		if len(data) == 0 {
			return
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, vocab, merges, config []byte) {
		write(t, "vocab.json", vocab)
		write(t, "merges.txt", merges)
		write(t, "tokenizer_config.json", config)
		var tok *Tokenizer
		var err error
		budget := uint64(loaderAllocLimit + 64*(len(vocab)+len(merges)+len(config)))
		if n := allocated(func() { tok, err = LoadTokenizer(dir) }); n > budget {
			t.Fatalf("loading %d bytes of files allocated %d MiB (error: %v)", len(vocab)+len(merges)+len(config), n>>20, err)
		}
		if err != nil {
			return
		}
		enc, err := tok.Encode("a photo of an ab, AB & 日本 <|endoftext|> b")
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		if len(enc.IDs) != tok.MaxLength() || enc.Len > tok.MaxLength() {
			t.Fatalf("%d ids, length %d, max length %d", len(enc.IDs), enc.Len, tok.MaxLength())
		}
		for _, id := range enc.IDs {
			if id < 0 || id >= int64(tok.VocabSize()) {
				t.Fatalf("id %d out of [0, %d)", id, tok.VocabSize())
			}
			_ = tok.Token(id)
		}
	})
}
