package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
)

// encodePNG encodes an 8-bit RGB image (size×size, HWC bytes) as PNG with
// an iTXt chunk "parameters" (UTF-8 text) right after IHDR. Decoders that
// do not know iTXt, image/png among them, skip it.
func encodePNG(rgb []uint8, size int, parameters string) ([]byte, error) {
	return encodePNGRect(rgb, size, size, parameters)
}

// encodePNGRect is encodePNG for a w×h image.
func encodePNGRect(rgb []uint8, w, h int, parameters string) ([]byte, error) {
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, rgbRect(rgb, w, h)); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	// signature (8) + IHDR chunk (4 length + 4 type + 13 data + 4 crc)
	const ihdrEnd = 8 + 25
	if len(data) < ihdrEnd || string(data[12:16]) != "IHDR" {
		return nil, fmt.Errorf("png: unexpected encoder output")
	}
	var chunk bytes.Buffer
	body := append([]byte("parameters\x00\x00\x00\x00\x00"), parameters...) // keyword, no compression, no language, no translated keyword
	binary.Write(&chunk, binary.BigEndian, uint32(len(body)))
	chunk.WriteString("iTXt")
	chunk.Write(body)
	crc := crc32.NewIEEE()
	crc.Write([]byte("iTXt"))
	crc.Write(body)
	binary.Write(&chunk, binary.BigEndian, crc.Sum32())
	out := make([]byte, 0, len(data)+chunk.Len())
	out = append(out, data[:ihdrEnd]...)
	out = append(out, chunk.Bytes()...)
	return append(out, data[ihdrEnd:]...), nil
}

// pngText returns the text of every tEXt/iTXt chunk of a PNG, by keyword.
func pngText(data []byte) (map[string]string, error) {
	if len(data) < 8 || string(data[:8]) != "\x89PNG\r\n\x1a\n" {
		return nil, fmt.Errorf("not a PNG")
	}
	out := map[string]string{}
	for p := 8; p+12 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[p:]))
		typ := string(data[p+4 : p+8])
		if p+12+n > len(data) {
			return nil, fmt.Errorf("truncated %s chunk", typ)
		}
		body := data[p+8 : p+8+n]
		switch typ {
		case "tEXt":
			if k, v, ok := bytes.Cut(body, []byte{0}); ok {
				out[string(k)] = string(v)
			}
		case "iTXt":
			if k, rest, ok := bytes.Cut(body, []byte{0}); ok && len(rest) >= 2 {
				rest = rest[2:]                                   // compression flag, method
				if _, rest, ok = bytes.Cut(rest, []byte{0}); ok { // language
					if _, rest, ok = bytes.Cut(rest, []byte{0}); ok { // translated keyword
						out[string(k)] = string(rest)
					}
				}
			}
		}
		p += 12 + n
	}
	return out, nil
}

// rgbImage wraps an 8-bit RGB image (size×size, HWC bytes) as an opaque
// NRGBA image for the standard library's encoders.
func rgbImage(rgb []uint8, size int) *image.NRGBA { return rgbRect(rgb, size, size) }

// rgbRect wraps an 8-bit RGB w×h image as an opaque NRGBA image.
func rgbRect(rgb []uint8, w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < w*h; i++ {
		copy(img.Pix[4*i:4*i+3], rgb[3*i:3*i+3])
		img.Pix[4*i+3] = 255
	}
	return img
}
