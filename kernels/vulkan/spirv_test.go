package vulkan

// A small SPIR-V reader for the push-constant test (push_test.go): it
// finds a module's push-constant block and the layout of its members from
// their decorations.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// SPIR-V opcodes, decorations and storage classes the reader needs.
const (
	spvOpName           = 5
	spvOpMemberName     = 6
	spvOpTypeInt        = 21
	spvOpTypeFloat      = 22
	spvOpTypeVector     = 23
	spvOpTypeArray      = 28
	spvOpTypeStruct     = 30
	spvOpTypePointer    = 32
	spvOpConstant       = 43
	spvOpSpecConstant   = 50
	spvOpVariable       = 59
	spvOpDecorate       = 71
	spvOpMemberDecorate = 72

	spvDecorationArrayStride = 6
	spvDecorationOffset      = 35

	spvStoragePushConstant = 9

	spvMagic = 0x07230203
)

// spvMember is one member of a push-constant block.
type spvMember struct {
	name   string // from OpMemberName; "" when the module has no debug names
	offset uint32 // its Offset decoration
	scalar string // "uint", "int" or "float"
	width  uint32 // of the scalar, in bits
	array  bool   // an array (or vector) of length elements
	length uint32
	stride uint32 // array: ArrayStride; vector: the component size
}

// size is the member's size in bytes.
func (m spvMember) size() uint32 {
	if m.array {
		return m.stride * m.length
	}
	return m.width / 8
}

// glsl is the member's GLSL-like type, for messages.
func (m spvMember) glsl() string {
	s := fmt.Sprintf("%s%d", m.scalar, m.width)
	if m.array {
		s += fmt.Sprintf("[%d] (stride %d)", m.length, m.stride)
	}
	return s
}

// spvBlock is a module's push-constant block.
type spvBlock struct {
	name    string // the block's type name (OpName), "" without debug names
	members []spvMember
}

// size is the block's size: its last member's end.
func (b *spvBlock) size() uint32 {
	var s uint32
	for _, m := range b.members {
		s = max(s, m.offset+m.size())
	}
	return s
}

// pushBlockOf reads the push-constant block of SPIR-V code; ok is false
// when the module declares none.
func pushBlockOf(code []byte) (blk *spvBlock, ok bool, err error) {
	if len(code)%4 != 0 || len(code) < 20 {
		return nil, false, fmt.Errorf("%d bytes is not SPIR-V", len(code))
	}
	words := make([]uint32, len(code)/4)
	for i := range words {
		words[i] = binary.LittleEndian.Uint32(code[4*i:])
	}
	if words[0] != spvMagic {
		return nil, false, fmt.Errorf("bad SPIR-V magic %#x", words[0])
	}
	var (
		names       = map[uint32]string{}
		memberNames = map[[2]uint32]string{}
		offsets     = map[[2]uint32]uint32{}
		strides     = map[uint32]uint32{}
		types       = map[uint32][]uint32{} // id → the instruction's words (opcode first)
		consts      = map[uint32]uint32{}
		pushVars    []uint32 // result types of PushConstant variables
	)
	for i := 5; i < len(words); {
		wc, op := int(words[i]>>16), words[i]&0xffff
		if wc == 0 || i+wc > len(words) {
			return nil, false, fmt.Errorf("word %d: bad instruction length %d", i, wc)
		}
		in := words[i : i+wc]
		i += wc
		switch op {
		case spvOpName:
			if wc >= 3 {
				names[in[1]] = spvString(in[2:])
			}
		case spvOpMemberName:
			if wc >= 4 {
				memberNames[[2]uint32{in[1], in[2]}] = spvString(in[3:])
			}
		case spvOpDecorate:
			if wc >= 4 && in[2] == spvDecorationArrayStride {
				strides[in[1]] = in[3]
			}
		case spvOpMemberDecorate:
			if wc >= 5 && in[3] == spvDecorationOffset {
				offsets[[2]uint32{in[1], in[2]}] = in[4]
			}
		case spvOpTypeInt, spvOpTypeFloat, spvOpTypeVector, spvOpTypeArray, spvOpTypeStruct, spvOpTypePointer:
			if wc < 2 {
				return nil, false, fmt.Errorf("type instruction %d without a result", op)
			}
			types[in[1]] = in
		case spvOpConstant, spvOpSpecConstant:
			if wc >= 4 {
				consts[in[2]] = in[3] // the low word: array lengths are 32-bit
			}
		case spvOpVariable:
			if wc >= 4 && in[3] == spvStoragePushConstant {
				pushVars = append(pushVars, in[1])
			}
		}
	}
	switch len(pushVars) {
	case 0:
		return nil, false, nil
	case 1:
	default:
		return nil, false, fmt.Errorf("%d push-constant variables", len(pushVars))
	}
	ptr := types[pushVars[0]]
	if len(ptr) < 4 || ptr[0]&0xffff != spvOpTypePointer {
		return nil, false, errors.New("the push-constant variable's type is not a pointer")
	}
	st := types[ptr[3]]
	if len(st) < 2 || st[0]&0xffff != spvOpTypeStruct {
		return nil, false, errors.New("the push-constant variable does not point to a struct")
	}
	sid := st[1]
	blk = &spvBlock{name: names[sid]}
	scalarOf := func(id uint32) (string, uint32, error) {
		t := types[id]
		switch {
		case len(t) >= 4 && t[0]&0xffff == spvOpTypeInt:
			if t[3] != 0 {
				return "int", t[2], nil
			}
			return "uint", t[2], nil
		case len(t) >= 3 && t[0]&0xffff == spvOpTypeFloat:
			return "float", t[2], nil
		}
		return "", 0, fmt.Errorf("type %%%d is not a scalar", id)
	}
	for k, mt := range st[2:] {
		key := [2]uint32{sid, uint32(k)}
		off, ok := offsets[key]
		if !ok {
			return nil, false, fmt.Errorf("member %d has no Offset decoration", k)
		}
		m := spvMember{name: memberNames[key], offset: off}
		t := types[mt]
		if len(t) == 0 {
			return nil, false, fmt.Errorf("member %d: unknown type %%%d", k, mt)
		}
		switch t[0] & 0xffff {
		case spvOpTypeArray:
			if len(t) < 4 {
				return nil, false, fmt.Errorf("member %d: short OpTypeArray", k)
			}
			if m.scalar, m.width, err = scalarOf(t[2]); err != nil {
				return nil, false, fmt.Errorf("member %d: array of %w", k, err)
			}
			n, ok := consts[t[3]]
			if !ok {
				return nil, false, fmt.Errorf("member %d: array length %%%d is not a constant", k, t[3])
			}
			s, ok := strides[mt]
			if !ok {
				return nil, false, fmt.Errorf("member %d: array without an ArrayStride decoration", k)
			}
			m.array, m.length, m.stride = true, n, s
		case spvOpTypeVector:
			if len(t) < 4 {
				return nil, false, fmt.Errorf("member %d: short OpTypeVector", k)
			}
			if m.scalar, m.width, err = scalarOf(t[2]); err != nil {
				return nil, false, fmt.Errorf("member %d: vector of %w", k, err)
			}
			m.array, m.length, m.stride = true, t[3], m.width/8
		default:
			if m.scalar, m.width, err = scalarOf(mt); err != nil {
				return nil, false, fmt.Errorf("member %d: %w (only scalars, vectors and arrays of scalars)", k, err)
			}
		}
		blk.members = append(blk.members, m)
	}
	return blk, true, nil
}

// spvString decodes a literal string (nul-terminated, in words).
func spvString(ws []uint32) string {
	var sb strings.Builder
	for _, w := range ws {
		for s := 0; s < 32; s += 8 {
			c := byte(w >> s)
			if c == 0 {
				return sb.String()
			}
			sb.WriteByte(c)
		}
	}
	return sb.String()
}
