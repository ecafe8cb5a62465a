// Package modelfile reads the small files of a model folder — configs,
// tokenizer vocabularies, Hugging Face cache refs — so that a hostile or
// damaged folder gets an error instead of a hang or an unbounded read:
// each file must be a regular file (a FIFO, device or socket named like a
// config is refused before it is opened, so opening cannot block) and no
// larger than the cap for its kind.
package modelfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Size caps by kind of file.
const (
	ConfigLimit    = 4 << 20  // config.json, scheduler_config.json, model_index.json, tokenizer_config.json
	TokenizerLimit = 64 << 20 // vocab.json, merges.txt, tokenizer.json
	RefLimit       = 256      // refs/main of the Hugging Face cache: a commit hash
	PromptsLimit   = 64 << 20 // a prompts file
)

// ErrNotRegular is returned for a path that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// Check returns the file's information if path (symlinks followed) is a
// regular file of at most limit bytes.
func Check(path string, limit int64) (fs.FileInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, kind(st.Mode()))}
	}
	if st.Size() > limit {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%d bytes, more than the %s this kind of file may have", st.Size(), size(limit))}
	}
	return st, nil
}

// Open opens path for reading once Check has passed.
func Open(path string, limit int64) (*os.File, error) {
	if _, err := Check(path, limit); err != nil {
		return nil, err
	}
	return os.Open(path)
}

// Read returns the contents of path, a regular file of at most limit
// bytes (also checked while reading: the file may grow).
func Read(path string, limit int64) ([]byte, error) {
	f, err := Open(path, limit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("more than the %s this kind of file may have", size(limit))}
	}
	return data, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a plain file"
}

func size(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
