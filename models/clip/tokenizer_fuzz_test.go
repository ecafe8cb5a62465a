package clip

import (
	"testing"
	"unicode/utf8"
)

// FuzzEncode checks that Encode never panics and always returns a
// well-formed encoding for valid UTF-8 (and an error otherwise).
func FuzzEncode(f *testing.F) {
	for _, s := range []string{
		"", "horse", "A RED Cube, on top of a blue sphere!!", "it's 3:45pm; I'll be there",
		"  lots   of\twhite\n\nspace  ", "naïve café", "日本語のテキスト", "emoji 🐱🚀",
		"<|startoftext|> special <|endoftext|>", "<|ENDOFTEXT|>|", "İΟΔΟΣ'ſx", "\xff\xfe",
		"e\u0301\u0301\u0301", "!!!<|endoftext|!>", "x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x",
	} {
		f.Add(s)
	}
	tok := fixtureTokenizer(f)
	f.Fuzz(func(t *testing.T, s string) {
		enc, err := tok.Encode(s)
		if !utf8.ValidString(s) {
			if err == nil {
				t.Fatalf("Encode(%q): no error for invalid UTF-8", s)
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode(%q): %v", s, err)
		}
		n := tok.MaxLength()
		if len(enc.IDs) != n || len(enc.Mask) != n || enc.Len < 2 || enc.Len > n || len(enc.Tokens) != enc.Len {
			t.Fatalf("Encode(%q): len(IDs) %d len(Mask) %d Len %d len(Tokens) %d", s, len(enc.IDs), len(enc.Mask), enc.Len, len(enc.Tokens))
		}
		if enc.IDs[0] != tok.BOSID() || enc.IDs[enc.Len-1] != tok.EOSID() {
			t.Fatalf("Encode(%q): missing bos/eos: %v", s, enc.IDs)
		}
		if enc.Truncated != (enc.Len == n && enc.Truncated) {
			t.Fatalf("Encode(%q): Truncated with Len %d", s, enc.Len)
		}
		for i := range n {
			real := i < enc.Len
			if (enc.Mask[i] == 1) != real || (!real && enc.IDs[i] != tok.PadID()) {
				t.Fatalf("Encode(%q): position %d id %d mask %d", s, i, enc.IDs[i], enc.Mask[i])
			}
			if enc.IDs[i] < 0 || enc.IDs[i] >= int64(tok.VocabSize()) {
				t.Fatalf("Encode(%q): id %d out of range", s, enc.IDs[i])
			}
		}
	})
}
