package accesslog

import "unicode/utf8"

// appendJSONString appends s as a JSON string that decodes back to s, with
// each byte that is not valid UTF-8 replaced by U+FFFD (as encoding/json
// does), so every line is valid JSON. Control characters and DEL become
// \u00XX, and U+2028 and U+2029 are escaped too: some readers treat them
// as line ends.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			if c == '"' || c == '\\' {
				b = append(b, '\\', c)
			} else {
				b = append(b, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, lowerHex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const (
	lowerHex = "0123456789abcdef"
	upperHex = "0123456789ABCDEF"
)

// appendCLF appends s escaped as nginx escapes log variables by default:
// '"', '\\' and every byte below 0x20 or above 0x7e as \xHH. With
// escapeSpace a space is escaped as well, for fields that spaces delimit.
func appendCLF(b []byte, s string, escapeSpace bool) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '"' && c != '\\' || c == ' ' && !escapeSpace {
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, '\\', 'x', upperHex[c>>4], upperHex[c&0xf])
		start = i + 1
	}
	return append(b, s[start:]...)
}
