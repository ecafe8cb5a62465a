// Package clip implements the CLIP text side of unCLIP: the byte-level BPE
// tokenizer used by CLIPTokenizer (this file) and the text encoder.
package clip

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/unclip-go/unclip/models/modelfile"
)

// Default special tokens and sequence length of the CLIP tokenizer.
const (
	DefaultBOS       = "<|startoftext|>"
	DefaultEOS       = "<|endoftext|>"
	DefaultUNK       = "<|endoftext|>"
	DefaultPad       = "<|endoftext|>"
	DefaultMaxLength = 77
)

const (
	// clipVocabSize and clipMerges describe the full CLIP BPE: its vocabulary
	// has 49408 entries and only the first 49152-256-2 merges of the original
	// merge list are used (transformers' slow CLIPTokenizer slices merges.txt
	// to that length).
	clipVocabSize = 49408
	clipMerges    = 49152 - 256 - 2

	endOfWord = "</w>"

	// maxSaneLength bounds model_max_length; larger values (transformers
	// writes 1e30 for "no limit") fall back to DefaultMaxLength.
	maxSaneLength = 1 << 20
	// maxTokenID bounds the ids accepted from a vocabulary file.
	maxTokenID = 1 << 24
	// cacheEntries and cacheKeyLen bound the BPE word cache.
	cacheEntries = 10000
	cacheKeyLen  = 256
)

// TokenizerOptions configures NewTokenizer. Empty token strings select the
// CLIP defaults (DefaultBOS, DefaultEOS, DefaultUNK, DefaultPad) and a zero
// MaxLength selects DefaultMaxLength.
type TokenizerOptions struct {
	BOS, EOS, UNK, Pad string
	// MaxLength is the padded sequence length, bos and eos included.
	MaxLength int
	// LowerCase lower-cases the text before BPE. CLIP always uses true.
	LowerCase bool
}

// DefaultTokenizerOptions returns the options of the stock CLIP tokenizer:
// default special tokens (pad = eos), 77 tokens, lower-casing on. Karlo
// (unCLIP) uses the same options with Pad set to "!".
func DefaultTokenizerOptions() TokenizerOptions {
	return TokenizerOptions{
		BOS: DefaultBOS, EOS: DefaultEOS, UNK: DefaultUNK, Pad: DefaultPad,
		MaxLength: DefaultMaxLength, LowerCase: true,
	}
}

// Tokenizer is a CLIP byte-level BPE tokenizer loaded from a
// diffusers/transformers `tokenizer/` folder.
//
// It reproduces the transformers 5.x (tokenizers-backed) CLIPTokenizer:
//
//  1. the raw text is split on the special tokens (bos, eos, unk, pad and any
//     added tokens), longest match first; each occurrence maps straight to
//     its id (so with Karlo's pad token "!" every "!" becomes id 0);
//  2. every other segment is NFC-normalised, runs of white space become one
//     space and each character is lower-cased with its full Unicode lowercase
//     mapping (U+0130 becomes "i\u0307"; no final-sigma context rule);
//  3. the segment is split with the CLIP pattern
//     <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//     (white space dropped), and each piece again with the GPT-2 byte-level
//     pattern, which only changes the special-token alternatives:
//     "<|endoftext|>" (e.g. from a lower-cased "<|EndOfText|>") becomes
//     "<|", "endoftext", "|>". Both patterns match case-sensitively, as in
//     tokenizer.json; the slow tokenizer's IGNORECASE flag differs only for
//     case-folding oddities such as "'ſ" (not a contraction here);
//  4. each piece's UTF-8 bytes are mapped through bytes_to_unicode, "</w>" is
//     appended to the last symbol and the pieces are merged by BPE rank;
//  5. the content is truncated to MaxLength-2 ids, wrapped in bos/eos and
//     right-padded with the pad id.
//
// A Tokenizer is safe for concurrent use.
type Tokenizer struct {
	vocab    map[string]int
	tokens   []string // id -> token string ("" for unused ids)
	merges   map[uint64]mergeInfo
	specials []special // sorted longest first

	byteID    [256]int32 // id of the byte's symbol, -1 if absent
	byteEndID [256]int32 // id of the byte's symbol + "</w>", -1 if absent

	bos, eos, unk, pad int32
	maxLen             int
	lower              bool

	mu    sync.RWMutex
	cache map[string][]int32
}

type mergeInfo struct {
	rank  int32
	newID int32
}

type special struct {
	content string
	id      int32
}

// Encoding is one tokenized, padded prompt.
type Encoding struct {
	IDs       []int64  // len MaxLength: bos, content, eos, padding with the pad id
	Mask      []int64  // 1 for bos..eos, 0 for padding
	Tokens    []string // the token strings for IDs[:Len] (bos..eos), as in the vocab
	Len       int      // number of real tokens incl. bos and eos
	Truncated bool     // true when content was cut to MaxLength-2 ids
}

// MaxLength returns the padded sequence length (bos and eos included).
func (t *Tokenizer) MaxLength() int { return t.maxLen }

// PadID returns the id used for padding.
func (t *Tokenizer) PadID() int64 { return int64(t.pad) }

// BOSID returns the id of the beginning-of-sequence token.
func (t *Tokenizer) BOSID() int64 { return int64(t.bos) }

// EOSID returns the id of the end-of-sequence token.
func (t *Tokenizer) EOSID() int64 { return int64(t.eos) }

// UNKID returns the id that symbols missing from the vocabulary map to.
func (t *Tokenizer) UNKID() int64 { return int64(t.unk) }

// VocabSize returns the number of token ids: one more than the largest id in
// the vocabulary and added tokens (49408 for CLIP). It is the row count an
// embedding table must have.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// Token returns the token string of id, or "" when id is unused.
func (t *Tokenizer) Token(id int64) string {
	if id < 0 || id >= int64(len(t.tokens)) {
		return ""
	}
	return t.tokens[id]
}

// NewTokenizer builds a tokenizer from in-memory data: the vocabulary
// (token -> id), the ordered merge list (each entry "a b"; rank = index; a
// leading "#version" entry is skipped) and options.
//
// Merge rule: when the vocabulary has exactly 49408 entries (the CLIP BPE),
// only the first 48894 merges are used, as in transformers' CLIPTokenizer,
// so the full 262k-line OpenAI merge list gives the same result as the
// Hugging Face merges.txt. Merges whose parts or result are not in the
// vocabulary are ignored (they could never yield a known token). A repeated
// merge takes the rank of its last occurrence, like tokenizers and the
// Python tokenizer.
func NewTokenizer(vocab map[string]int, merges []string, opt TokenizerOptions) (*Tokenizer, error) {
	pairs := make([][2]string, 0, len(merges))
	for i, m := range merges {
		if i == 0 && strings.HasPrefix(m, "#version") {
			continue
		}
		a, b, ok := splitMerge(m)
		if !ok {
			return nil, fmt.Errorf("clip: tokenizer: merge %d %q is not two space-separated symbols", i, m)
		}
		pairs = append(pairs, [2]string{a, b})
	}
	return build(vocab, pairs, nil, opt)
}

// splitMerge splits a merge line "a b" into its two symbols.
func splitMerge(m string) (string, string, bool) {
	m = strings.TrimRight(m, "\r\n")
	a, b, ok := strings.Cut(m, " ")
	if !ok || a == "" || b == "" || strings.Contains(b, " ") {
		return "", "", false
	}
	return a, b, true
}

// build assembles a Tokenizer. added holds extra added tokens (content -> id)
// that are split out of the raw text like the special tokens.
func build(vocab map[string]int, merges [][2]string, added map[string]int, opt TokenizerOptions) (*Tokenizer, error) {
	if len(vocab) == 0 {
		return nil, errors.New("clip: tokenizer: empty vocabulary")
	}
	if opt.BOS == "" {
		opt.BOS = DefaultBOS
	}
	if opt.EOS == "" {
		opt.EOS = DefaultEOS
	}
	if opt.UNK == "" {
		opt.UNK = DefaultUNK
	}
	if opt.Pad == "" {
		opt.Pad = DefaultPad
	}
	if opt.MaxLength == 0 {
		opt.MaxLength = DefaultMaxLength
	}
	if opt.MaxLength < 2 || opt.MaxLength > maxSaneLength {
		return nil, fmt.Errorf("clip: tokenizer: max length %d out of range [2, %d]", opt.MaxLength, maxSaneLength)
	}

	t := &Tokenizer{
		vocab:  make(map[string]int, len(vocab)+len(added)),
		merges: make(map[uint64]mergeInfo, len(merges)),
		maxLen: opt.MaxLength,
		lower:  opt.LowerCase,
		cache:  make(map[string][]int32),
	}
	maxID := -1
	for tok, id := range vocab {
		if id < 0 || id >= maxTokenID {
			return nil, fmt.Errorf("clip: tokenizer: token %q has id %d out of range [0, %d)", tok, id, maxTokenID)
		}
		t.vocab[tok] = id
		maxID = max(maxID, id)
	}
	// Added tokens take precedence over the model vocabulary, as in tokenizers.
	for tok, id := range added {
		if tok == "" {
			continue
		}
		if id < 0 || id >= maxTokenID {
			return nil, fmt.Errorf("clip: tokenizer: added token %q has id %d out of range [0, %d)", tok, id, maxTokenID)
		}
		t.vocab[tok] = id
		maxID = max(maxID, id)
	}
	// The id → token table has maxID+1 entries: ids far past the number
	// of tokens would make a few bytes of vocabulary cost hundreds of MiB.
	if limit := 2*len(t.vocab) + 1024; maxID >= limit {
		name := ""
		for tok, id := range t.vocab {
			if id == maxID && (name == "" || tok < name) {
				name = tok
			}
		}
		return nil, fmt.Errorf("clip: tokenizer: token %q has id %d, but there are only %d tokens (ids must be below %d)", name, maxID, len(t.vocab), limit)
	}
	t.tokens = make([]string, maxID+1)
	for tok, id := range t.vocab {
		// Deterministic choice when two strings share an id.
		if cur := t.tokens[id]; cur == "" || tok < cur {
			t.tokens[id] = tok
		}
	}

	lookup := func(what, tok string) (int32, error) {
		id, ok := t.vocab[tok]
		if !ok {
			return 0, fmt.Errorf("clip: tokenizer: %s token %q is not in the vocabulary", what, tok)
		}
		return int32(id), nil
	}
	var err error
	if t.bos, err = lookup("bos", opt.BOS); err != nil {
		return nil, err
	}
	if t.eos, err = lookup("eos", opt.EOS); err != nil {
		return nil, err
	}
	if t.unk, err = lookup("unk", opt.UNK); err != nil {
		return nil, err
	}
	if t.pad, err = lookup("pad", opt.Pad); err != nil {
		return nil, err
	}

	seen := map[string]bool{}
	addSpecial := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			t.specials = append(t.specials, special{s, int32(t.vocab[s])})
		}
	}
	for _, s := range []string{opt.BOS, opt.EOS, opt.UNK, opt.Pad} {
		addSpecial(s)
	}
	for s := range added {
		addSpecial(s)
	}
	sort.Slice(t.specials, func(i, j int) bool {
		a, b := t.specials[i].content, t.specials[j].content
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return a < b
	})

	for b := range 256 {
		c := string(byteToRune[b])
		t.byteID[b], t.byteEndID[b] = -1, -1
		if id, ok := t.vocab[c]; ok {
			t.byteID[b] = int32(id)
		}
		if id, ok := t.vocab[c+endOfWord]; ok {
			t.byteEndID[b] = int32(id)
		}
	}

	if len(vocab) == clipVocabSize && len(merges) > clipMerges {
		merges = merges[:clipMerges]
	}
	for rank, m := range merges {
		a, okA := t.vocab[m[0]]
		b, okB := t.vocab[m[1]]
		c, okC := t.vocab[m[0]+m[1]]
		if !okA || !okB || !okC {
			continue
		}
		t.merges[pairKey(int32(a), int32(b))] = mergeInfo{rank: int32(rank), newID: int32(c)}
	}
	return t, nil
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// byteToRune is GPT-2's bytes_to_unicode table: the 188 printable bytes
// 33-126, 161-172 and 174-255 map to themselves, the other 68 bytes, in
// increasing order, to U+0100, U+0101, ...
var byteToRune = func() [256]rune {
	var m [256]rune
	n := rune(0)
	for b := range 256 {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			m[b] = rune(b)
		} else {
			m[b] = 256 + n
			n++
		}
	}
	return m
}()

// Encode tokenizes text into a padded Encoding of MaxLength ids. It returns
// an error when text is not valid UTF-8 and never panics.
func (t *Tokenizer) Encode(text string) (Encoding, error) {
	if !utf8.ValidString(text) {
		off := 0
		for off < len(text) {
			r, size := utf8.DecodeRuneInString(text[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return Encoding{}, fmt.Errorf("clip: tokenizer: input is not valid UTF-8 (invalid byte 0x%02x at offset %d)", text[off], off)
	}

	limit := t.maxLen - 2
	content := make([]int32, 0, limit+1)
	full := func() bool { return len(content) > limit }

	// Split on special tokens (leftmost, longest first); encode the text between.
	start := 0
	for i := 0; i < len(text) && !full(); {
		if sp, ok := t.matchSpecial(text[i:]); ok {
			if start < i {
				content = t.encodeSegment(content, text[start:i], limit)
			}
			if !full() {
				content = append(content, sp.id)
			}
			i += len(sp.content)
			start = i
			continue
		}
		i++
	}
	if start < len(text) && !full() {
		content = t.encodeSegment(content, text[start:], limit)
	}

	enc := Encoding{}
	if len(content) > limit {
		content = content[:limit]
		enc.Truncated = true
	}
	n := len(content) + 2
	enc.Len = n
	enc.IDs = make([]int64, t.maxLen)
	enc.Mask = make([]int64, t.maxLen)
	enc.Tokens = make([]string, n)
	enc.IDs[0] = int64(t.bos)
	for i, id := range content {
		enc.IDs[i+1] = int64(id)
	}
	enc.IDs[n-1] = int64(t.eos)
	for i := n; i < t.maxLen; i++ {
		enc.IDs[i] = int64(t.pad)
	}
	for i := range n {
		enc.Mask[i] = 1
		enc.Tokens[i] = t.tokens[enc.IDs[i]]
	}
	return enc, nil
}

// matchSpecial reports the longest special token that s starts with.
func (t *Tokenizer) matchSpecial(s string) (special, bool) {
	for _, sp := range t.specials {
		if strings.HasPrefix(s, sp.content) {
			return sp, true
		}
	}
	return special{}, false
}

// encodeSegment normalises, pre-tokenizes and BPE-encodes one segment of
// text free of special tokens, appending ids to dst. It stops early once dst
// holds more than limit ids (the rest would be truncated anyway).
func (t *Tokenizer) encodeSegment(dst []int32, seg string, limit int) []int32 {
	s := t.normalize(seg)
	for i := 0; i < len(s) && len(dst) <= limit; {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case unicode.IsSpace(r):
			i += size
			continue
		case r == '<' && (strings.HasPrefix(s[i:], "<|startoftext|>") || strings.HasPrefix(s[i:], "<|endoftext|>")):
			// The CLIP pattern keeps this as one piece; the byte-level
			// pre-tokenizer that follows splits it again.
			name := s[i+2 : i+strings.IndexByte(s[i+2:], '|')+2]
			dst = t.bpe(dst, "<|")
			dst = t.bpe(dst, name)
			dst = t.bpe(dst, "|>")
			i += len(name) + 4
			continue
		case r == '\'':
			if n := contraction(s[i:]); n > 0 {
				dst = t.bpe(dst, s[i:i+n])
				i += n
				continue
			}
		case unicode.IsLetter(r):
			j := i + size
			for j < len(s) {
				r2, sz := utf8.DecodeRuneInString(s[j:])
				if !unicode.IsLetter(r2) {
					break
				}
				j += sz
			}
			dst = t.bpe(dst, s[i:j])
			i = j
			continue
		case unicode.IsNumber(r):
			dst = t.bpe(dst, s[i:i+size])
			i += size
			continue
		}
		// Run of characters that are neither space, letter nor number.
		j := i + size
		for j < len(s) {
			r2, sz := utf8.DecodeRuneInString(s[j:])
			if unicode.IsSpace(r2) || unicode.IsLetter(r2) || unicode.IsNumber(r2) {
				break
			}
			j += sz
		}
		dst = t.bpe(dst, s[i:j])
		i = j
	}
	return dst
}

// contraction returns the length of the contraction ('s 't 're 've 'm 'll
// 'd) that s starts with, or 0. Matching is case-sensitive like the
// tokenizers pattern (the text is normally lower-cased already).
func contraction(s string) int {
	for _, c := range [...]string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"} {
		if strings.HasPrefix(s, c) {
			return len(c)
		}
	}
	return 0
}

// normalize applies NFC, collapses white-space runs to one space and, when
// enabled, lower-cases each character with its full lowercase mapping.
func (t *Tokenizer) normalize(seg string) string {
	s := norm.NFC.String(seg)
	var b strings.Builder
	b.Grow(len(s))
	inSpace := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			if !inSpace {
				b.WriteByte(' ')
			}
			inSpace = true
			continue
		}
		inSpace = false
		if t.lower {
			writeLower(&b, r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// writeLower writes the full (unconditional) Unicode lowercase mapping of r,
// as Rust's char::to_lowercase does. The only multi-character lowercase
// mapping in SpecialCasing.txt that is not context- or language-dependent is
// U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE -> "i\u0307"; everything else
// is the simple mapping that unicode.ToLower implements.
func writeLower(b *strings.Builder, r rune) {
	if r == '\u0130' {
		b.WriteString("i\u0307")
		return
	}
	b.WriteRune(unicode.ToLower(r))
}

// bpe encodes one pre-tokenized piece and appends its ids to dst.
func (t *Tokenizer) bpe(dst []int32, piece string) []int32 {
	if piece == "" {
		return dst
	}
	cacheable := len(piece) <= cacheKeyLen
	if cacheable {
		t.mu.RLock()
		ids, ok := t.cache[piece]
		t.mu.RUnlock()
		if ok {
			return append(dst, ids...)
		}
	}
	ids := t.mergeWord(piece)
	if cacheable {
		t.mu.Lock()
		if len(t.cache) < cacheEntries {
			t.cache[piece] = ids
		}
		t.mu.Unlock()
	}
	return append(dst, ids...)
}

type symbol struct {
	id         int32
	prev, next int
	dead       bool
}

type mergeCand struct {
	rank int32
	pos  int
	id   int32
}

// mergeWord runs BPE over the bytes of piece, as the tokenizers library
// does: a min-heap of candidate merges ordered by (rank, position); stale
// candidates are skipped.
func (t *Tokenizer) mergeWord(piece string) []int32 {
	n := len(piece)
	syms := make([]symbol, n)
	for i := range n {
		id := t.byteID[piece[i]]
		if i == n-1 {
			id = t.byteEndID[piece[i]]
		}
		if id < 0 {
			id = t.unk
		}
		syms[i] = symbol{id: id, prev: i - 1, next: i + 1}
	}
	syms[n-1].next = -1

	var h candHeap
	for i := 0; i+1 < n; i++ {
		if m, ok := t.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h = append(h, mergeCand{m.rank, i, m.newID})
		}
	}
	h.init()
	for len(h) > 0 {
		top := h.pop()
		cur := &syms[top.pos]
		if cur.dead || cur.next < 0 {
			continue
		}
		right := syms[cur.next]
		if m, ok := t.merges[pairKey(cur.id, right.id)]; !ok || m.newID != top.id {
			continue // stale candidate
		}
		cur.id = top.id
		syms[cur.next].dead = true
		cur.next = right.next
		if right.next >= 0 {
			syms[right.next].prev = top.pos
		}
		if cur.prev >= 0 {
			if m, ok := t.merges[pairKey(syms[cur.prev].id, cur.id)]; ok {
				h.push(mergeCand{m.rank, cur.prev, m.newID})
			}
		}
		if cur.next >= 0 {
			if m, ok := t.merges[pairKey(cur.id, syms[cur.next].id)]; ok {
				h.push(mergeCand{m.rank, top.pos, m.newID})
			}
		}
	}
	var out []int32
	for i := 0; i >= 0; i = syms[i].next {
		out = append(out, syms[i].id)
	}
	return out
}

// candHeap is a binary min-heap of merge candidates by (rank, pos).
type candHeap []mergeCand

func (h candHeap) less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}

func (h candHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h candHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func (h *candHeap) push(c mergeCand) {
	*h = append(*h, c)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *candHeap) pop() mergeCand {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	*h = s[:last]
	(*h).down(0)
	return top
}

// ---- loading ----

// LoadTokenizer reads a tokenizer folder: vocab.json + merges.txt, or
// tokenizer.json (its model.vocab and model.merges, merges given as "a b"
// strings or [a, b] arrays, plus its added_tokens) when those are absent.
// tokenizer_config.json and special_tokens_map.json (both optional; the
// latter wins) supply the bos/eos/unk/pad tokens (plain strings or objects
// with a "content" field), model_max_length (default 77; values above 2^20,
// such as transformers' 1e30 "unlimited", mean 77) and do_lower_case
// (default true; transformers 5.x always lower-cases, CLIP folders never set
// it false). Added tokens from tokenizer.json's added_tokens or
// tokenizer_config.json's added_tokens_decoder are split out of the raw text
// like the special tokens. Merges are filtered as described for NewTokenizer.
func LoadTokenizer(dir string) (*Tokenizer, error) {
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("clip: tokenizer: folder %s does not exist: %w", dir, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("clip: tokenizer: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("clip: tokenizer: %s is not a folder", dir)
	}

	opt := TokenizerOptions{LowerCase: true}
	added := map[string]int{}
	if err := readConfig(filepath.Join(dir, "tokenizer_config.json"), &opt, added); err != nil {
		return nil, err
	}
	if err := readConfig(filepath.Join(dir, "special_tokens_map.json"), &opt, nil); err != nil {
		return nil, err
	}

	vocabPath := filepath.Join(dir, "vocab.json")
	mergesPath := filepath.Join(dir, "merges.txt")
	jsonPath := filepath.Join(dir, "tokenizer.json")
	haveVocab, haveMerges, haveJSON := fileExists(vocabPath), fileExists(mergesPath), fileExists(jsonPath)

	var (
		vocab  map[string]int
		merges [][2]string
	)
	switch {
	case haveVocab && haveMerges:
		if vocab, err = readVocab(vocabPath); err != nil {
			return nil, err
		}
		if merges, err = readMerges(mergesPath); err != nil {
			return nil, err
		}
	case haveJSON:
		var unk string
		if vocab, merges, unk, err = readTokenizerJSON(jsonPath, added); err != nil {
			return nil, err
		}
		if opt.UNK == "" {
			opt.UNK = unk
		}
	case haveVocab:
		return nil, fmt.Errorf("clip: tokenizer: read %s: %w (and no tokenizer.json)", mergesPath, fs.ErrNotExist)
	default:
		return nil, fmt.Errorf("clip: tokenizer: read %s: %w (and no tokenizer.json)", vocabPath, fs.ErrNotExist)
	}
	t, err := build(vocab, merges, added, opt)
	if err != nil {
		return nil, fmt.Errorf("%w (folder %s)", err, dir)
	}
	return t, nil
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

// readConfig applies tokenizer_config.json or special_tokens_map.json to
// opt; a missing file is not an error. Added tokens listed in
// added_tokens_decoder are stored in added when it is non-nil.
func readConfig(path string, opt *TokenizerOptions, added map[string]int) error {
	data, err := modelfile.Read(path, modelfile.ConfigLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clip: tokenizer: read %s: %w", path, err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("clip: tokenizer: parse %s: %w", path, err)
	}
	for key, dst := range map[string]*string{
		"bos_token": &opt.BOS, "eos_token": &opt.EOS, "unk_token": &opt.UNK, "pad_token": &opt.Pad,
	} {
		raw, ok := cfg[key]
		if !ok {
			continue
		}
		s, err := tokenContent(raw)
		if err != nil {
			return fmt.Errorf("clip: tokenizer: parse %s: %s: %w", path, key, err)
		}
		if s != "" {
			*dst = s
		}
	}
	if raw, ok := cfg["model_max_length"]; ok && string(raw) != "null" {
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("clip: tokenizer: parse %s: model_max_length: %w", path, err)
		}
		switch {
		case math.IsNaN(f) || f <= 0 || f > maxSaneLength:
			opt.MaxLength = DefaultMaxLength
		case f < 2 || f != math.Trunc(f):
			return fmt.Errorf("clip: tokenizer: parse %s: model_max_length %v is not an integer >= 2", path, f)
		default:
			opt.MaxLength = int(f)
		}
	}
	if raw, ok := cfg["do_lower_case"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &opt.LowerCase); err != nil {
			return fmt.Errorf("clip: tokenizer: parse %s: do_lower_case: %w", path, err)
		}
	}
	if raw, ok := cfg["added_tokens_decoder"]; ok && added != nil && string(raw) != "null" {
		var dec map[string]struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(raw, &dec); err != nil {
			return fmt.Errorf("clip: tokenizer: parse %s: added_tokens_decoder: %w", path, err)
		}
		for k, v := range dec {
			id, err := strconv.Atoi(k)
			if err != nil {
				return fmt.Errorf("clip: tokenizer: parse %s: added_tokens_decoder key %q: %w", path, k, err)
			}
			if v.Content != "" {
				added[v.Content] = id
			}
		}
	}
	return nil
}

// tokenContent decodes a special-token entry: a string, an object with a
// "content" field, or null.
func tokenContent(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", err
	}
	if obj.Content == nil {
		return "", errors.New(`object without a "content" field`)
	}
	return *obj.Content, nil
}

func readVocab(path string) (map[string]int, error) {
	data, err := modelfile.Read(path, modelfile.TokenizerLimit)
	if err != nil {
		return nil, fmt.Errorf("clip: tokenizer: read %s: %w", path, err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(data, &vocab); err != nil {
		return nil, fmt.Errorf("clip: tokenizer: parse %s: %w", path, err)
	}
	if len(vocab) == 0 {
		return nil, fmt.Errorf("clip: tokenizer: parse %s: empty vocabulary", path)
	}
	return vocab, nil
}

// readMerges reads merges.txt: an optional "#version" first line, then one
// "a b" merge per line; blank lines are skipped.
func readMerges(path string) ([][2]string, error) {
	f, err := modelfile.Open(path, modelfile.TokenizerLimit)
	if err != nil {
		return nil, fmt.Errorf("clip: tokenizer: read %s: %w", path, err)
	}
	defer f.Close()
	var merges [][2]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimRight(sc.Text(), "\r")
		if s == "" || (line == 1 && strings.HasPrefix(s, "#version")) {
			continue
		}
		a, b, ok := splitMerge(s)
		if !ok {
			return nil, fmt.Errorf("clip: tokenizer: parse %s: line %d %q is not two space-separated symbols", path, line, s)
		}
		merges = append(merges, [2]string{a, b})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("clip: tokenizer: read %s: %w", path, err)
	}
	return merges, nil
}

// readTokenizerJSON reads the BPE model of a tokenizers-library
// tokenizer.json; its added tokens are stored in added. It returns the
// model's unk_token ("" when unset).
func readTokenizerJSON(path string, added map[string]int) (map[string]int, [][2]string, string, error) {
	data, err := modelfile.Read(path, modelfile.TokenizerLimit)
	if err != nil {
		return nil, nil, "", fmt.Errorf("clip: tokenizer: read %s: %w", path, err)
	}
	var doc struct {
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
		Model struct {
			Type     string            `json:"type"`
			Vocab    map[string]int    `json:"vocab"`
			Merges   []json.RawMessage `json:"merges"`
			UNKToken *string           `json:"unk_token"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, "", fmt.Errorf("clip: tokenizer: parse %s: %w", path, err)
	}
	if doc.Model.Type != "" && doc.Model.Type != "BPE" {
		return nil, nil, "", fmt.Errorf("clip: tokenizer: parse %s: model type %q, want BPE", path, doc.Model.Type)
	}
	if len(doc.Model.Vocab) == 0 {
		return nil, nil, "", fmt.Errorf("clip: tokenizer: parse %s: model.vocab is missing or empty", path)
	}
	merges := make([][2]string, 0, len(doc.Model.Merges))
	for i, raw := range doc.Model.Merges {
		var pair []string
		var s string
		switch {
		case json.Unmarshal(raw, &s) == nil:
			a, b, ok := splitMerge(s)
			if !ok {
				return nil, nil, "", fmt.Errorf("clip: tokenizer: parse %s: model.merges[%d] %q is not two space-separated symbols", path, i, s)
			}
			pair = []string{a, b}
		case json.Unmarshal(raw, &pair) == nil && len(pair) == 2:
		default:
			return nil, nil, "", fmt.Errorf("clip: tokenizer: parse %s: model.merges[%d] is neither \"a b\" nor [a, b]", path, i)
		}
		merges = append(merges, [2]string{pair[0], pair[1]})
	}
	for _, at := range doc.AddedTokens {
		if at.Content != "" {
			added[at.Content] = at.ID
		}
	}
	unk := ""
	if doc.Model.UNKToken != nil {
		unk = *doc.Model.UNKToken
	}
	return doc.Model.Vocab, merges, unk, nil
}
