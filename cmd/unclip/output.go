package main

import (
	"bytes"
	"errors"
	"fmt"
	"image/jpeg"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Output files. -o names where images go; the rules, in order:
//   - only %d (or a zero-padded %0Nd) is a pattern, formatted with the
//     1-based image index; every other % is literal;
//   - the extension picks the format: .png, or .jpg/.jpeg (baseline JPEG,
//     quality 95, the parameters in a COM segment); anything else is an
//     error, except for a device or FIFO, which gets PNG;
//   - an existing regular file is replaced only with --force;
//   - a symlink is followed: the file it points at is written;
//   - regular files are written to a temporary file beside them and renamed
//     into place, so a reader never sees a partial image; devices and FIFOs
//     (/dev/stdout, a pipe) are written through, and their errors reported.

// imageFormat is an output encoding.
type imageFormat int

const (
	formatPNG imageFormat = iota
	formatJPEG
)

func (f imageFormat) String() string {
	if f == formatJPEG {
		return "JPEG"
	}
	return "PNG"
}

// outFile is one output: the path the user gave, the file that will be
// written (symlinks resolved) and how.
type outFile struct {
	name    string // as given (for messages)
	target  string // after following symlinks
	special bool   // an existing device, FIFO or socket: written through
	format  imageFormat
}

// indexVerb matches the index patterns of -o: %d and %0Nd.
var indexVerb = regexp.MustCompile(`%(0[0-9]+)?d`)

// outputPaths expands -o for n images: %d (or %0Nd) is replaced by the
// 1-based index; without one, "-N" goes before the extension when there
// is more than one image. Any other % is literal.
func outputPaths(pattern string, n int) []string {
	out := make([]string, n)
	if indexVerb.MatchString(pattern) {
		for i := range out {
			out[i] = indexVerb.ReplaceAllStringFunc(pattern, func(v string) string {
				width, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(v, "%"), "d"))
				return fmt.Sprintf("%0*d", width, i+1)
			})
		}
		return out
	}
	if n == 1 {
		return []string{pattern}
	}
	ext := filepath.Ext(pattern)
	base := strings.TrimSuffix(pattern, ext)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d%s", base, i+1, ext)
	}
	return out
}

// planOutput checks that the image file name can be written before any
// work starts and says how it will be.
func planOutput(name string, force bool) (outFile, error) {
	o, err := planFile(name, force)
	if err != nil {
		return o, err
	}
	switch ext := strings.ToLower(filepath.Ext(name)); {
	case ext == ".png":
		o.format = formatPNG
	case ext == ".jpg" || ext == ".jpeg":
		o.format = formatJPEG
	case o.special && ext == "":
		o.format = formatPNG
	default:
		return o, fmt.Errorf("output %s: unknown image format %q (use .png, .jpg or .jpeg)", name, ext)
	}
	return o, nil
}

// planFile checks that name can be written (any kind of file): symlinks
// resolved, an existing regular file only with force, its folder present
// and writable.
func planFile(name string, force bool) (outFile, error) {
	o := outFile{name: name, target: name}
	if name == "" {
		return o, errors.New("output: empty file name")
	}
	target, err := resolveLinks(name)
	if err != nil {
		return o, fmt.Errorf("output %s: %w", name, err)
	}
	o.target = target
	st, err := os.Stat(target)
	switch {
	case err == nil && st.IsDir():
		return o, fmt.Errorf("output %s is a directory", name)
	case err == nil && !st.Mode().IsRegular():
		o.special = true
		return o, nil
	case err == nil && !force:
		return o, fmt.Errorf("output %s exists; pass --force to replace it", name)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return o, fmt.Errorf("output %s: %w", name, err)
	}
	return o, checkDirWritable(name, filepath.Dir(target))
}

// resolveLinks follows symlinks at path (also a dangling one: the file it
// names is the one to create) and returns the path to write.
func resolveLinks(path string) (string, error) {
	for hops := 0; ; hops++ {
		st, err := os.Lstat(path)
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			return path, nil
		}
		if hops == 40 {
			return "", errors.New("too many levels of symbolic links")
		}
		dest, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(dest) {
			dest = filepath.Join(filepath.Dir(path), dest)
		}
		path = dest
	}
}

// checkDirWritable fails early, naming the user's path, when no file can
// be created in dir.
func checkDirWritable(name, dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cannot write %s: folder %s does not exist", name, dir)
	case err != nil:
		return fmt.Errorf("cannot write %s: %w", name, err)
	case !st.IsDir():
		return fmt.Errorf("cannot write %s: %s is not a folder", name, dir)
	}
	f, err := os.CreateTemp(dir, ".unclip-write-test*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("cannot write %s: folder %s: %w", name, dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// encode encodes an 8-bit RGB image (size×size, HWC) in o's format with
// the generation parameters embedded.
func (o outFile) encode(rgb []uint8, size int, parameters string) ([]byte, error) {
	if o.format == formatJPEG {
		return encodeJPEG(rgb, size, parameters)
	}
	return encodePNG(rgb, size, parameters)
}

// write puts data at o: atomically for a regular file, through for a
// device or FIFO (whose write errors, such as /dev/full's, are returned).
func (o outFile) write(data []byte) error {
	if !o.special {
		return writeFileAtomic(o.target, data)
	}
	f, err := os.OpenFile(o.target, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// encodeJPEG encodes an 8-bit RGB image as baseline JPEG (quality 95) with
// parameters in a COM segment right after SOI, split over several
// segments when longer than one can hold.
func encodeJPEG(rgb []uint8, size int, parameters string) ([]byte, error) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, rgbImage(rgb, size), &jpeg.Options{Quality: 95}); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	if len(data) < 2 || data[0] != 0xFF || data[1] != 0xD8 {
		return nil, errors.New("jpeg: unexpected encoder output")
	}
	out := append([]byte(nil), data[:2]...)
	text := []byte(parameters)
	const maxCOM = 65533 // a segment length counts its own two bytes
	for len(text) > 0 {
		n := min(len(text), maxCOM)
		out = append(out, 0xFF, 0xFE, byte((n+2)>>8), byte(n+2))
		out = append(out, text[:n]...)
		text = text[n:]
	}
	return append(out, data[2:]...), nil
}

// jpegComments returns the text of a JPEG's COM segments, joined.
func jpegComments(data []byte) (string, error) {
	if len(data) < 2 || data[0] != 0xFF || data[1] != 0xD8 {
		return "", errors.New("not a JPEG file")
	}
	var sb strings.Builder
	for p := 2; p+4 <= len(data); {
		if data[p] != 0xFF {
			return "", fmt.Errorf("jpeg: no marker at offset %d", p)
		}
		marker := data[p+1]
		if marker == 0xDA { // start of scan: no more header segments
			break
		}
		n := int(data[p+2])<<8 | int(data[p+3])
		if n < 2 || p+2+n > len(data) {
			return "", fmt.Errorf("jpeg: segment at offset %d overruns the file", p)
		}
		if marker == 0xFE {
			sb.Write(data[p+4 : p+2+n])
		}
		p += 2 + n
	}
	return sb.String(), nil
}

// tempFiles are the temporary files being written, removed by a hard exit
// (a second Ctrl-C) so that no partial file is left behind.
var tempFiles sync.Map

// writeFileAtomic writes data to a temporary file beside path and renames
// it into place, so a reader never sees a partial file.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	tempFiles.Store(tmp, true)
	defer tempFiles.Delete(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// removeTempFiles removes the temporary files (and folders: convert's)
// of writes in progress.
func removeTempFiles() {
	tempFiles.Range(func(k, _ any) bool {
		os.RemoveAll(k.(string))
		return true
	})
}
