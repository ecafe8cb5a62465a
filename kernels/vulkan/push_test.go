package vulkan

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/shaders"
)

// shaderDir holds the shader sources and the .spv files package shaders
// embeds.
const shaderDir = "../../shaders"

// TestPushBlocks checks, for every compiled shader, that its push-constant
// struct (pushBlocks) lays out the shader's push-constant block: the
// block's members, read from the embedded SPIR-V (Offset and ArrayStride
// decorations, types, array lengths), against the struct's fields (reflect
// offsets, types, lengths) position by position, the struct's size
// against the block's, and the field names against the GLSL member names
// (OpMemberName where the SPIR-V keeps debug names, else the .comp source
// preprocessed with the variant's macros), so that two swapped members of
// one type fail too. No device needed.
func TestPushBlocks(t *testing.T) {
	spvs, err := filepath.Glob(filepath.Join(shaderDir, "*.spv"))
	if err != nil || len(spvs) == 0 {
		t.Fatalf("no .spv files in %s: %v", shaderDir, err)
	}
	srcNames, err := glslPushNames(shaderDir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range spvs {
		name := strings.TrimSuffix(filepath.Base(p), ".spv")
		seen[name] = true
		code, err := shaders.SPIRV(name) // the embedded copy
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		blk, ok, err := pushBlockOf(code)
		if err != nil {
			t.Errorf("%s.spv: %v", name, err)
			continue
		}
		typ, registered := pushBlocks[name]
		switch {
		case !ok && registered:
			t.Errorf("%s: the shader has no push-constant block, but pushBlocks gives it %v", name, typ)
			continue
		case !ok:
			continue
		case !registered:
			t.Errorf("%s: no push-constant struct in pushBlocks (push.go) for its %d-byte block", name, blk.size())
			continue
		}
		from := "the .comp source"
		if blk.members[0].name != "" {
			from = "OpMemberName"
		}
		t.Logf("%s: %d members, %d bytes, names from %s: %v", name, len(blk.members), blk.size(), from, typ)
		for _, e := range checkPushBlock(typ, blk, srcNames[name]) {
			t.Errorf("%s: %s", name, e)
		}
	}
	for name := range pushBlocks {
		if !seen[name] {
			t.Errorf("pushBlocks has %s, but there is no %s.spv", name, name)
		}
	}
}

// checkPushBlock compares Go struct typ with SPIR-V block blk; names are
// the GLSL member names when blk has none of its own. It returns the
// mismatches.
func checkPushBlock(typ reflect.Type, blk *spvBlock, names []string) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if typ.Kind() != reflect.Struct {
		return []string{fmt.Sprintf("%v is not a struct", typ)}
	}
	if len(blk.members) > 0 && blk.members[0].name != "" {
		names = names[:0:0]
		for _, m := range blk.members {
			names = append(names, m.name)
		}
	}
	if len(names) != len(blk.members) {
		bad("%d members in the SPIR-V block, %d GLSL names %v (check the .comp's push_constant block)", len(blk.members), len(names), names)
		names = nil
	}
	nameOf := func(i int) string {
		if names == nil {
			return fmt.Sprintf("#%d", i)
		}
		return fmt.Sprintf("#%d %s", i, names[i])
	}
	for i, m := range blk.members {
		if i >= typ.NumField() {
			bad("member %s (%s at offset %d) has no Go field: %v has %d", nameOf(i), m.glsl(), m.offset, typ, typ.NumField())
			continue
		}
		f := typ.Field(i)
		field := typ.Name() + "." + f.Name
		if names != nil && !sameMember(f.Name, names[i]) {
			bad("member %s is Go field %s (its name must be the GLSL name capitalised, _ for a pad)", nameOf(i), field)
		}
		if uint32(f.Offset) != m.offset {
			bad("member %s at SPIR-V Offset %d, Go field %s at offset %d", nameOf(i), m.offset, field, f.Offset)
		}
		ft := f.Type
		if m.array {
			if ft.Kind() != reflect.Array {
				bad("member %s is %s, Go field %s is %v", nameOf(i), m.glsl(), field, ft)
				continue
			}
			if uint32(ft.Len()) != m.length || uint32(ft.Elem().Size()) != m.stride {
				bad("member %s is %s, Go field %s is %v (stride %d)", nameOf(i), m.glsl(), field, ft, ft.Elem().Size())
			}
			ft = ft.Elem()
		} else if ft.Kind() == reflect.Array {
			bad("member %s is %s, Go field %s is %v", nameOf(i), m.glsl(), field, ft)
			continue
		}
		if s, w := goScalar(ft); s != m.scalar || w != m.width {
			bad("member %s is %s, Go field %s is %v", nameOf(i), m.glsl(), field, f.Type)
		}
	}
	for i := len(blk.members); i < typ.NumField(); i++ {
		bad("Go field %s.%s has no member in the block (%d members)", typ.Name(), typ.Field(i).Name, len(blk.members))
	}
	if uint32(typ.Size()) != blk.size() {
		bad("the block is %d bytes, Go %v %d bytes", blk.size(), typ, typ.Size())
	}
	if typ.Size() > pushSize {
		bad("Go %v is %d bytes, more than pushSize (%d)", typ, typ.Size(), pushSize)
	}
	return errs
}

// sameMember reports whether Go field name goes with GLSL member glsl: the
// same name ignoring case and trailing underscores, or a blank field for
// a pad member.
func sameMember(goName, glsl string) bool {
	if goName == "_" {
		return strings.HasPrefix(glsl, "pad")
	}
	return strings.EqualFold(goName, strings.TrimRight(glsl, "_"))
}

// goScalar is the SPIR-V scalar a Go field type encodes as.
func goScalar(t reflect.Type) (string, uint32) {
	w := uint32(t.Size() * 8)
	switch t.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "uint", w
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "int", w
	case reflect.Float32, reflect.Float64:
		return "float", w
	}
	return t.String(), 0
}

// TestPushBlockMismatches shows that checkPushBlock catches the mistakes
// it is there for, on real shaders' blocks.
func TestPushBlockMismatches(t *testing.T) {
	srcNames, err := glslPushNames(shaderDir)
	if err != nil {
		t.Fatal(err)
	}
	block := func(name string) *spvBlock {
		code, err := shaders.SPIRV(name)
		if err != nil {
			t.Fatal(err)
		}
		blk, ok, err := pushBlockOf(code)
		if err != nil || !ok {
			t.Fatalf("%s: no push-constant block: %v", name, err)
		}
		return blk
	}
	type swapped struct{ Rows, C, Xoff, Doff uint32 }
	type floatAsUint struct {
		N, Kind, Doff, Soff uint32
		F0, F1              uint32
	}
	type shortArray struct {
		N, Rank, Ddt, Sdt, Doff, Soff uint32
		Shape                         [5]uint32
		Dstr, Sstr                    [6]uint32
	}
	type missing struct {
		N, Mode, K, H, W, OH, OW, Doff uint32
	}
	type extra struct {
		Rows, C, Doff, Xoff, More uint32
	}
	for _, c := range []struct {
		shader string
		typ    reflect.Type
		want   string
	}{
		{"softmax", reflect.TypeFor[swapped](), "member #2 doff is Go field swapped.Xoff"},
		{"unary16", reflect.TypeFor[floatAsUint](), "member #4 f0 is float32, Go field floatAsUint.F0 is uint32"},
		{"copy", reflect.TypeFor[shortArray](), "member #7 dstr at SPIR-V Offset 48, Go field shortArray.Dstr at offset 44"},
		{"pool", reflect.TypeFor[missing](), "member #8 xoff (uint32 at offset 32) has no Go field"},
		{"softmax", reflect.TypeFor[extra](), "Go field extra.More has no member in the block"},
		{"gemmconv", reflect.TypeFor[gemmPush](), "member #10 C is Go field gemmPush.Ldb"},
	} {
		errs := checkPushBlock(c.typ, block(c.shader), srcNames[c.shader])
		if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, c.want) }) {
			t.Errorf("%s with %v: want an error containing %q, got %q", c.shader, c.typ, c.want, errs)
		}
	}
}

func TestEncodePush(t *testing.T) {
	pc := flashPush{H: 1, Scale: 0.5, Biasoff: 7, Qs: [3]uint32{2, 3, 4}, Bs: [4]uint32{math.MaxUint32}}
	got, err := encodePush("flash", pc)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, reflect.TypeFor[flashPush]().Size())
	binary.LittleEndian.PutUint32(want[0:], 1)
	binary.LittleEndian.PutUint32(want[28:], math.Float32bits(0.5))
	binary.LittleEndian.PutUint32(want[56:], 7)
	binary.LittleEndian.PutUint32(want[64:], 2)
	binary.LittleEndian.PutUint32(want[68:], 3)
	binary.LittleEndian.PutUint32(want[72:], 4)
	binary.LittleEndian.PutUint32(want[112:], math.MaxUint32)
	if !bytes.Equal(got, want) {
		t.Errorf("encodePush(flash):\ngot  %x\nwant %x", got, want)
	}
	if _, err := encodePush("flash", gemmPush{}); err == nil {
		t.Error("encodePush took a gemmPush for flash")
	}
	if _, err := encodePush("nosuch", softmaxPush{}); err == nil {
		t.Error("encodePush took an unregistered shader")
	}
	if _, err := encodePush("softmax", &softmaxPush{}); err == nil {
		t.Error("encodePush took a pointer")
	}
}

// glslPushNames returns, for every shader compiled from the sources in dir
// (one per .comp and one per "//!variant NAME MACRO..." line), the member
// names of its push-constant block, read from the source preprocessed
// with the variant's macros (#ifdef, #ifndef, #else, #endif, #define).
func glslPushNames(dir string) (map[string][]string, error) {
	srcs, err := filepath.Glob(filepath.Join(dir, "*.comp"))
	if err != nil || len(srcs) == 0 {
		return nil, fmt.Errorf("no shader sources in %s: %v", dir, err)
	}
	out := map[string][]string{}
	for _, src := range srcs {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		text := string(data)
		targets := map[string][]string{strings.TrimSuffix(filepath.Base(src), ".comp"): nil}
		for _, line := range strings.Split(text, "\n") {
			line = strings.TrimSpace(line)
			if rest, ok := strings.CutPrefix(line, "//!variant "); ok {
				fs := strings.Fields(rest)
				if len(fs) == 0 {
					continue
				}
				var defs []string
				for _, d := range fs[1:] {
					if !strings.HasPrefix(d, "@") {
						defs = append(defs, strings.SplitN(d, "=", 2)[0])
					}
				}
				targets[fs[0]] = defs
			}
		}
		for name, defs := range targets {
			names, err := pushMemberNames(preprocess(text, defs))
			if err != nil {
				return nil, fmt.Errorf("%s (%s): %w", filepath.Base(src), name, err)
			}
			out[name] = names
		}
	}
	return out, nil
}

// preprocess keeps the lines of text that the conditionals leave active
// with macros defs defined. Conditions it cannot evaluate (#if
// expressions) count as true.
func preprocess(text string, defs []string) string {
	defined := map[string]bool{}
	for _, d := range defs {
		defined[d] = true
	}
	type frame struct{ parent, taken, active bool }
	var stack []frame
	active := true
	var out strings.Builder
	lines := strings.Split(strings.ReplaceAll(text, "\\\n", " "), "\n")
	for _, line := range lines {
		tr := strings.TrimSpace(line)
		if !strings.HasPrefix(tr, "#") {
			if active {
				out.WriteString(line)
				out.WriteByte('\n')
			}
			continue
		}
		fs := strings.Fields(strings.TrimPrefix(tr, "#"))
		if len(fs) == 0 {
			continue
		}
		arg := ""
		if len(fs) > 1 {
			arg = fs[1]
		}
		switch fs[0] {
		case "ifdef", "ifndef", "if":
			cond := true
			switch fs[0] {
			case "ifdef":
				cond = defined[arg]
			case "ifndef":
				cond = !defined[arg]
			}
			stack = append(stack, frame{parent: active, taken: cond, active: active && cond})
			active = active && cond
		case "elif", "else":
			// #elif's condition is not evaluated (no shader uses one): it
			// is taken as #else.
			if len(stack) > 0 {
				f := &stack[len(stack)-1]
				f.active = f.parent && !f.taken
				f.taken = true
				active = f.active
			}
		case "endif":
			if len(stack) > 0 {
				active = stack[len(stack)-1].parent
				stack = stack[:len(stack)-1]
			}
		case "define":
			if active && arg != "" {
				defined[strings.SplitN(arg, "(", 2)[0]] = true
			}
		case "undef":
			if active {
				delete(defined, arg)
			}
		}
	}
	return out.String()
}

var (
	glslComment   = regexp.MustCompile(`(?s)//[^\n]*|/\*.*?\*/`)
	glslPushBlock = regexp.MustCompile(`layout\s*\(\s*push_constant\s*\)\s*uniform\s+\w+\s*\{([^}]*)\}`)
	glslArraySize = regexp.MustCompile(`\[[^\]]*\]`)
)

// pushMemberNames returns the member names of the push-constant block in
// preprocessed GLSL text (nil when there is none).
func pushMemberNames(text string) ([]string, error) {
	text = glslComment.ReplaceAllString(text, " ")
	ms := glslPushBlock.FindAllStringSubmatch(text, -1)
	switch len(ms) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fmt.Errorf("%d push_constant blocks", len(ms))
	}
	var names []string
	for _, decl := range strings.Split(ms[0][1], ";") {
		decl = strings.TrimSpace(glslArraySize.ReplaceAllString(decl, ""))
		if decl == "" {
			continue
		}
		fs := strings.Fields(strings.ReplaceAll(decl, ",", " , "))
		// Qualifiers and the type, then names separated by commas.
		i := 0
		for i < len(fs) && slices.Contains([]string{"highp", "mediump", "lowp", "const"}, fs[i]) {
			i++
		}
		i++ // the type
		for ; i < len(fs); i++ {
			if fs[i] != "," {
				names = append(names, fs[i])
			}
		}
	}
	return names, nil
}
