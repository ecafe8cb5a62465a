package clip

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/unclip-go/unclip/models/golden/fixtures"
)

// fixturesDir returns the shared fixtures folder (see fixtures.Require:
// the test skips without one, or fails when UNCLIP_FIXTURES names none).
func fixturesDir(tb testing.TB) string {
	tb.Helper()
	return fixtures.Require(tb)
}

func fixtureTokenizerDir(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(fixturesDir(tb), "unclip-tiny", "model", "tokenizer")
}

var (
	fixtureOnce sync.Once
	fixtureTok  *Tokenizer
	fixtureErr  error
)

// fixtureTokenizer loads the fixture tokenizer once per test binary. A
// missing fixture fails the test.
func fixtureTokenizer(tb testing.TB) *Tokenizer {
	tb.Helper()
	dir := fixtureTokenizerDir(tb)
	fixtureOnce.Do(func() { fixtureTok, fixtureErr = LoadTokenizer(dir) })
	if fixtureErr != nil {
		tb.Fatalf("load fixture tokenizer (set UNCLIP_FIXTURES to the shared fixtures folder): %v", fixtureErr)
	}
	return fixtureTok
}

type goldenCase struct {
	Text          string  `json:"text"`
	InputIDs      []int64 `json:"input_ids"`
	AttentionMask []int64 `json:"attention_mask"`
}

func goldenCases(t *testing.T) []goldenCase {
	t.Helper()
	path := filepath.Join(fixturesDir(t), "unclip-tiny", "golden.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (set UNCLIP_FIXTURES to the shared fixtures folder): %v", err)
	}
	var g struct {
		TokenizerCases []goldenCase `json:"tokenizer_cases"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	if len(g.TokenizerCases) == 0 {
		t.Fatalf("%s has no tokenizer_cases", path)
	}
	return g.TokenizerCases
}

func checkGolden(t *testing.T, tok *Tokenizer, cases []goldenCase) {
	t.Helper()
	for i, c := range cases {
		t.Run(fmt.Sprintf("%02d", i), func(t *testing.T) {
			enc, err := tok.Encode(c.Text)
			if err != nil {
				t.Fatalf("Encode(%q): %v", c.Text, err)
			}
			if !slices.Equal(enc.IDs, c.InputIDs) {
				t.Errorf("Encode(%q).IDs\n got %v\nwant %v", c.Text, enc.IDs, c.InputIDs)
			}
			if !slices.Equal(enc.Mask, c.AttentionMask) {
				t.Errorf("Encode(%q).Mask\n got %v\nwant %v", c.Text, enc.Mask, c.AttentionMask)
			}
			n := 0
			for _, m := range c.AttentionMask {
				n += int(m)
			}
			if enc.Len != n || len(enc.Tokens) != n {
				t.Errorf("Encode(%q): Len %d, %d tokens, want %d", c.Text, enc.Len, len(enc.Tokens), n)
			}
		})
	}
}

func TestGoldenTokenizerCases(t *testing.T) {
	checkGolden(t, fixtureTokenizer(t), goldenCases(t))
}

func TestLoadFromTokenizerJSON(t *testing.T) {
	cases := goldenCases(t)
	dir := t.TempDir()
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		data, err := os.ReadFile(filepath.Join(fixtureTokenizerDir(t), name))
		if err != nil {
			t.Fatalf("read fixture: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := LoadTokenizer(dir)
	if err != nil {
		t.Fatalf("LoadTokenizer(tokenizer.json only): %v", err)
	}
	if got := tok.VocabSize(); got != 49408 {
		t.Errorf("VocabSize = %d, want 49408", got)
	}
	checkGolden(t, tok, cases)
}

// TestTokenizerJSONStringMerges loads a tokenizer.json whose merges are
// "a b" strings (older tokenizers format) with no config files: defaults
// apply (pad = eos) and the added token "!" is still split out.
func TestTokenizerJSONStringMerges(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(fixtureTokenizerDir(t), "tokenizer.json"))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	var doc struct {
		AddedTokens json.RawMessage `json:"added_tokens"`
		Model       struct {
			Type     string         `json:"type"`
			Vocab    map[string]int `json:"vocab"`
			Merges   [][]string     `json:"merges"`
			UNKToken string         `json:"unk_token"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	merges := make([]string, len(doc.Model.Merges))
	for i, m := range doc.Model.Merges {
		merges[i] = m[0] + " " + m[1]
	}
	out := map[string]any{
		"added_tokens": doc.AddedTokens,
		"model": map[string]any{
			"type": "BPE", "vocab": doc.Model.Vocab, "merges": merges, "unk_token": doc.Model.UNKToken,
		},
	}
	data, err = json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadTokenizer(dir)
	if err != nil {
		t.Fatalf("LoadTokenizer: %v", err)
	}
	if tok.PadID() != 49407 || tok.BOSID() != 49406 || tok.EOSID() != 49407 || tok.MaxLength() != 77 {
		t.Errorf("pad/bos/eos/max = %d/%d/%d/%d, want 49407/49406/49407/77", tok.PadID(), tok.BOSID(), tok.EOSID(), tok.MaxLength())
	}
	enc, err := tok.Encode("A RED Cube, on top of a blue sphere!!")
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{49406, 320, 736, 11353, 267, 525, 1253, 539, 320, 1746, 6987, 0, 0, 49407, 49407}
	if !slices.Equal(enc.IDs[:len(want)], want) {
		t.Errorf("IDs = %v, want prefix %v", enc.IDs, want)
	}
}

func TestSpecReferenceIDs(t *testing.T) {
	tok := fixtureTokenizer(t)
	if tok.PadID() != 0 || tok.BOSID() != 49406 || tok.EOSID() != 49407 || tok.UNKID() != 49407 {
		t.Errorf("pad/bos/eos/unk = %d/%d/%d/%d, want 0/49406/49407/49407", tok.PadID(), tok.BOSID(), tok.EOSID(), tok.UNKID())
	}
	if tok.MaxLength() != 77 || tok.VocabSize() != 49408 {
		t.Errorf("MaxLength %d VocabSize %d, want 77 49408", tok.MaxLength(), tok.VocabSize())
	}
	for _, c := range []struct {
		text string
		want []int64
	}{
		{"horse", []int64{49406, 4558, 49407}},
		{"", []int64{49406, 49407}},
		{"it's 3:45pm", []int64{49406, 585, 568, 274, 281, 275, 276, 990, 49407}},
		{"a photo of an astronaut riding a horse on mars", []int64{49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407}},
		{"!!", []int64{49406, 0, 0, 49407}},
	} {
		enc, err := tok.Encode(c.text)
		if err != nil {
			t.Fatalf("Encode(%q): %v", c.text, err)
		}
		if !slices.Equal(enc.IDs[:enc.Len], c.want) || enc.Len != len(c.want) {
			t.Errorf("Encode(%q) = %v (Len %d), want %v", c.text, enc.IDs[:enc.Len], enc.Len, c.want)
		}
		for i := enc.Len; i < len(enc.IDs); i++ {
			if enc.IDs[i] != 0 || enc.Mask[i] != 0 {
				t.Fatalf("Encode(%q): position %d = id %d mask %d, want padding", c.text, i, enc.IDs[i], enc.Mask[i])
			}
		}
	}
	enc, _ := tok.Encode("horse")
	if want := []string{"<|startoftext|>", "horse</w>", "<|endoftext|>"}; !slices.Equal(enc.Tokens, want) {
		t.Errorf("Tokens = %q, want %q", enc.Tokens, want)
	}
}

// contentIDs returns the ids between bos and eos.
func contentIDs(t *testing.T, tok *Tokenizer, text string) []int64 {
	t.Helper()
	enc, err := tok.Encode(text)
	if err != nil {
		t.Fatalf("Encode(%q): %v", text, err)
	}
	return enc.IDs[1 : enc.Len-1]
}

// TestNormalization checks normaliser and pre-tokenizer details by
// comparing texts that must (or must not) tokenize alike.
func TestNormalization(t *testing.T) {
	tok := fixtureTokenizer(t)
	for _, c := range []struct {
		name string
		a, b string
		same bool
	}{
		{"full lowercase of U+0130", "İ", "i\u0307", true},
		{"U+0130 is not plain i", "İ", "i", false},
		{"no final sigma rule", "ΟΔΟΣ", "οδοσ", true},
		{"final sigma not produced", "ΟΔΟΣ", "οδος", false},
		{"NFC", "cafe\u0301", "café", true},
		{"unicode white space", "a\u00a0b\u3000c\u2029d\u0085e", "a b c d e", true},
		{"zero-width space is not white space", "a\u200bb", "a b", false},
		{"contraction split", "you're", "you 're", true},
		{"contraction is case-sensitive", "'ſx", "' ſx", true},
		{"digits are single pieces", "2024", "2 0 2 4", true},
		{"symbol runs stay together", "a+=b", "a += b", true},
		{"lower-cased special text is split by byte-level pattern", "<|ENDOFTEXT|>|", "<| endoftext |> |", true},
		{"lower-cased special text inside a symbol run", "-<|ENDOFTEXT|>", "- <|ENDOFTEXT|>", false},
		{"pad token splits words", "ab!cd", "ab ! cd", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := contentIDs(t, tok, c.a), contentIDs(t, tok, c.b)
			if slices.Equal(a, b) != c.same {
				t.Errorf("Encode(%q) = %v, Encode(%q) = %v, same = %v, want %v", c.a, a, c.b, b, !c.same, c.same)
			}
		})
	}
}

func TestNonUTF8(t *testing.T) {
	tok := fixtureTokenizer(t)
	for _, s := range []string{"\xff", "abc\xc3", "ok \xed\xa0\x80 surrogate"} {
		_, err := tok.Encode(s)
		if err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("Encode(%q) error = %v, want a UTF-8 error", s, err)
		}
	}
}

func TestTruncation(t *testing.T) {
	tok := fixtureTokenizer(t)
	for _, c := range []struct {
		text      string
		len       int
		truncated bool
	}{
		{strings.Repeat("x ", 74), 76, false},
		{strings.Repeat("x ", 75), 77, false},
		{strings.Repeat("x ", 76), 77, true},
		{strings.Repeat("!", 1000), 77, true},
		{strings.Repeat("horse ", 100000), 77, true},
		{strings.Repeat("<|endoftext|>", 80), 77, true},
	} {
		enc, err := tok.Encode(c.text)
		if err != nil {
			t.Fatal(err)
		}
		if enc.Len != c.len || enc.Truncated != c.truncated || len(enc.IDs) != 77 || len(enc.Mask) != 77 {
			t.Errorf("Encode(%.20q…): Len %d Truncated %v len(IDs) %d, want %d %v 77", c.text, enc.Len, enc.Truncated, len(enc.IDs), c.len, c.truncated)
		}
		if enc.IDs[0] != tok.BOSID() || enc.IDs[enc.Len-1] != tok.EOSID() {
			t.Errorf("Encode(%.20q…): bos/eos missing: %v", c.text, enc.IDs)
		}
	}
}

func TestConcurrentEncode(t *testing.T) {
	cases := goldenCases(t)
	tok, err := LoadTokenizer(fixtureTokenizerDir(t)) // fresh, empty cache
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rep := range 3 {
				for i := range cases {
					c := cases[(i+g+rep)%len(cases)]
					enc, err := tok.Encode(c.Text)
					if err != nil {
						errs <- err
						return
					}
					if !slices.Equal(enc.IDs, c.InputIDs) {
						errs <- fmt.Errorf("goroutine %d: Encode(%q) = %v, want %v", g, c.Text, enc.IDs, c.InputIDs)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// tinyVocab is a byte-level vocabulary over the lower-case ASCII letters and
// "!" with a few merges, for NewTokenizer tests.
func tinyVocab() (map[string]int, []string) {
	vocab := map[string]int{}
	add := func(s string) {
		if _, ok := vocab[s]; !ok {
			vocab[s] = len(vocab)
		}
	}
	add("!")
	for c := 'a'; c <= 'z'; c++ {
		add(string(c))
	}
	add("!</w>")
	for c := 'a'; c <= 'z'; c++ {
		add(string(c) + "</w>")
	}
	merges := []string{"#version: 0.2", "h e", "l o</w>", "he l", "hel lo</w>", "l l", "x y"}
	for _, m := range merges[1:6] {
		add(strings.ReplaceAll(m, " ", ""))
	}
	// "x y" has no "xy" in the vocabulary and is ignored.
	add("<s>")
	add("</s>")
	add("<pad>")
	return vocab, merges
}

func TestNewTokenizer(t *testing.T) {
	vocab, merges := tinyVocab()
	tok, err := NewTokenizer(vocab, merges, TokenizerOptions{BOS: "<s>", EOS: "</s>", UNK: "</s>", Pad: "<pad>", MaxLength: 8, LowerCase: true})
	if err != nil {
		t.Fatal(err)
	}
	bos, eos, pad := int64(vocab["<s>"]), int64(vocab["</s>"]), int64(vocab["<pad>"])
	id := func(s string) int64 {
		v, ok := vocab[s]
		if !ok {
			t.Fatalf("no %q in vocab", s)
		}
		return int64(v)
	}
	for _, c := range []struct {
		text      string
		want      []int64
		truncated bool
	}{
		{"hello", []int64{bos, id("hello</w>"), eos, pad, pad, pad, pad, pad}, false},
		{"HEL", []int64{bos, id("he"), id("l</w>"), eos, pad, pad, pad, pad}, false},
		{"xy", []int64{bos, id("x"), id("y</w>"), eos, pad, pad, pad, pad}, false},
		{"hell", []int64{bos, id("hel"), id("l</w>"), eos, pad, pad, pad, pad}, false},
		{"é!", []int64{bos, eos, eos, id("!</w>"), eos, pad, pad, pad}, false}, // 2 unknown bytes -> unk
		{"a b c d e f g", []int64{bos, id("a</w>"), id("b</w>"), id("c</w>"), id("d</w>"), id("e</w>"), id("f</w>"), eos}, true},
		{"<pad><s>", []int64{bos, pad, bos, eos, pad, pad, pad, pad}, false},
	} {
		enc, err := tok.Encode(c.text)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(enc.IDs, c.want) || enc.Truncated != c.truncated {
			t.Errorf("Encode(%q) = %v truncated %v, want %v %v", c.text, enc.IDs, enc.Truncated, c.want, c.truncated)
		}
	}
	if tok.VocabSize() != len(vocab) {
		t.Errorf("VocabSize = %d, want %d", tok.VocabSize(), len(vocab))
	}

	// Lower-casing off: upper-case bytes are not in this vocabulary.
	tok, err = NewTokenizer(vocab, merges, TokenizerOptions{BOS: "<s>", EOS: "</s>", Pad: "<pad>", UNK: "</s>"})
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := tok.Encode("Hi")
	if want := []int64{bos, eos, id("i</w>"), eos}; !slices.Equal(enc.IDs[:4], want) || tok.MaxLength() != DefaultMaxLength {
		t.Errorf("no-lowercase Encode(Hi) = %v (max %d), want prefix %v", enc.IDs[:4], tok.MaxLength(), want)
	}

	for _, opt := range []TokenizerOptions{
		{BOS: "<s>", EOS: "</s>", UNK: "</s>", Pad: "[PAD]"},
		{BOS: "<bos>", EOS: "</s>", UNK: "</s>", Pad: "<pad>"},
		{BOS: "<s>", EOS: "</s>", UNK: "</s>", Pad: "<pad>", MaxLength: 1},
	} {
		if _, err := NewTokenizer(vocab, merges, opt); err == nil {
			t.Errorf("NewTokenizer(%+v) succeeded, want error", opt)
		}
	}
	if _, err := NewTokenizer(vocab, []string{"h e", "bad"}, TokenizerOptions{BOS: "<s>", EOS: "</s>", UNK: "</s>", Pad: "<pad>"}); err == nil {
		t.Error("NewTokenizer with a malformed merge succeeded")
	}
}

// writeTiny writes a tokenizer folder built from tinyVocab plus the given
// extra files (name -> content; "" removes a file).
func writeTiny(t *testing.T, extra map[string]string) string {
	t.Helper()
	vocab, merges := tinyVocab()
	vj, _ := json.Marshal(vocab)
	files := map[string]string{
		"vocab.json":              string(vj),
		"merges.txt":              strings.Join(merges, "\n") + "\n",
		"special_tokens_map.json": `{"bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": false}, "unk_token": "</s>", "pad_token": "<pad>"}`,
	}
	for k, v := range extra {
		files[k] = v
	}
	dir := t.TempDir()
	for name, data := range files {
		if data == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadTokenizerConfig(t *testing.T) {
	dir := writeTiny(t, map[string]string{
		"tokenizer_config.json": `{"model_max_length": 1e30, "do_lower_case": true, "pad_token": "!", "bos_token": {"content": "<s>"}}`,
	})
	tok, err := LoadTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	vocab, _ := tinyVocab()
	// special_tokens_map.json wins over tokenizer_config.json.
	if tok.MaxLength() != 77 || tok.PadID() != int64(vocab["<pad>"]) || tok.EOSID() != int64(vocab["</s>"]) || tok.BOSID() != int64(vocab["<s>"]) {
		t.Errorf("max %d pad %d eos %d bos %d", tok.MaxLength(), tok.PadID(), tok.EOSID(), tok.BOSID())
	}

	dir = writeTiny(t, map[string]string{"tokenizer_config.json": `{"model_max_length": 16, "do_lower_case": false}`})
	tok, err = LoadTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := tok.Encode("A")
	if tok.MaxLength() != 16 || len(enc.IDs) != 16 || enc.IDs[1] != tok.EOSID() { // "A</w>" unknown -> unk
		t.Errorf("max %d, Encode(A) = %v", tok.MaxLength(), enc.IDs)
	}
}

func TestLoadTokenizerErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := LoadTokenizer(missing)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing folder: err = %v", err)
	}

	for _, c := range []struct {
		name  string
		files map[string]string
		want  string // substring of the error
	}{
		{"empty folder", map[string]string{"vocab.json": "", "merges.txt": "", "special_tokens_map.json": ""}, "vocab.json"},
		{"no merges", map[string]string{"merges.txt": ""}, "merges.txt"},
		{"bad vocab json", map[string]string{"vocab.json": `{"a": 1,`}, "vocab.json"},
		{"bad merges line", map[string]string{"merges.txt": "#version: 0.2\nh e\nhel\n"}, "merges.txt: line 3"},
		{"bad config json", map[string]string{"tokenizer_config.json": `{`}, "tokenizer_config.json"},
		{"bad special token", map[string]string{"special_tokens_map.json": `{"pad_token": 3}`}, "special_tokens_map.json"},
		{"bad max length", map[string]string{"tokenizer_config.json": `{"model_max_length": "x"}`}, "model_max_length"},
		{"pad not in vocab", map[string]string{"tokenizer_config.json": `{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "</s>", "pad_token": "[PAD]"}`, "special_tokens_map.json": ""}, `pad token "[PAD]"`},
		{"eos not in vocab", map[string]string{"special_tokens_map.json": `{"bos_token": "<s>", "eos_token": "<eos>"}`}, `eos token "<eos>"`},
		{"bad tokenizer.json", map[string]string{"vocab.json": "", "tokenizer.json": `{"model": {"vocab": []}}`}, "tokenizer.json"},
		{"tokenizer.json bad merge", map[string]string{"vocab.json": "", "tokenizer.json": `{"model": {"vocab": {"a": 0}, "merges": [3]}}`}, "model.merges[0]"},
		{"tokenizer.json not BPE", map[string]string{"vocab.json": "", "tokenizer.json": `{"model": {"type": "WordPiece", "vocab": {"a": 0}}}`}, "BPE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadTokenizer(writeTiny(t, c.files))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "clip: tokenizer: ") {
				t.Errorf("err = %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestFullCLIPMergeListIsTruncated(t *testing.T) {
	// A 49408-entry vocabulary enables the 48894-merge cut: a merge placed
	// past it must be ignored.
	vocab, merges := tinyVocab()
	for i := len(vocab); i < clipVocabSize-1; i++ {
		vocab[fmt.Sprintf("<filler%d>", i)] = i
	}
	vocab["ab</w>"] = len(vocab)
	for len(merges) < clipMerges+1 {
		merges = append(merges, "x y") // ignored: "xy" not in vocab
	}
	merges = append(merges, "a b</w>")
	if len(vocab) != clipVocabSize {
		t.Fatalf("vocab size %d", len(vocab))
	}
	opt := TokenizerOptions{BOS: "<s>", EOS: "</s>", UNK: "</s>", Pad: "<pad>", LowerCase: true}
	tok, err := NewTokenizer(vocab, merges, opt)
	if err != nil {
		t.Fatal(err)
	}
	if got := contentIDs(t, tok, "ab"); !slices.Equal(got, []int64{int64(vocab["a"]), int64(vocab["b</w>"])}) {
		t.Errorf("49408 vocab: Encode(ab) = %v, merge past the cut was used", got)
	}
	// With any other vocabulary size every merge counts.
	delete(vocab, "<filler100>")
	tok, err = NewTokenizer(vocab, merges, opt)
	if err != nil {
		t.Fatal(err)
	}
	if got := contentIDs(t, tok, "ab"); !slices.Equal(got, []int64{int64(vocab["ab</w>"])}) {
		t.Errorf("other vocab: Encode(ab) = %v, want the merge", got)
	}
}
