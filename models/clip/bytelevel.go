package clip

// ByteLevelTokenizer returns a tokenizer without merges: every byte of a
// word is one token (ids 0–255, or 256–511 for a word's last byte, which
// carries "</w>"), plus <|startoftext|> (512) and <|endoftext|> (513, also
// the pad and unknown token). It needs no files: the built-in demo model
// uses it.
func ByteLevelTokenizer(maxLen int) (*Tokenizer, error) {
	vocab := make(map[string]int, 514)
	for b := 0; b < 256; b++ {
		vocab[string(byteToRune[b])] = b
		vocab[string(byteToRune[b])+"</w>"] = 256 + b
	}
	vocab[DefaultBOS] = 512
	vocab[DefaultEOS] = 513
	opt := DefaultTokenizerOptions()
	opt.MaxLength = maxLen
	return NewTokenizer(vocab, nil, opt)
}
