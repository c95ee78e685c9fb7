// Package h1 is the HTTP/1.1 wire grammar srp enforces, with no I/O: request
// and response heads, chunked framing, token and character tables, and the
// few answers srp writes itself. The guard (worker/guard) and the fast path
// (worker/fast) both use it, for requests and backend responses alike, so
// the two read the same bytes the same way; every rule here is as strict as
// net/http or stricter, wherever a front proxy or a backend could read the
// same bytes differently.
package h1

import (
	"bytes"
	"math"
)

// BodyKind is how a checked request head frames its body.
type BodyKind uint8

const (
	BodyNone BodyKind = iota
	BodyLength
	BodyChunked
)

// HeadEnd finds the end of the message head at the start of b: just past
// its first empty line, as net/http reads it (an empty first line ends a
// head too, which the server then refuses). from is where the scan resumes:
// the start of the line the previous scan stopped in. It returns the end
// and true, or where to resume and false.
func HeadEnd(b []byte, from int) (int, bool) {
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return from, false
		}
		line := b[from : from+i]
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			return from + i + 1, true
		}
		from += i + 1
	}
}

// Head is how an accepted request head frames what follows it.
type Head struct {
	Kind    BodyKind
	Length  uint64 // with BodyLength
	Upgrade bool   // asks to switch protocols: what follows may be a tunnel
}

// CheckHead checks one complete request head and returns how its body is
// framed, or why it is refused. It is stricter than net/http wherever a
// front proxy or a backend could read the same bytes differently.
func CheckHead(h []byte) (info Head, reason string) {
	if fault := ByteFault(h); fault != "" {
		return info, fault + " in request head"
	}
	line, rest := CutLine(h)
	if len(line) == 0 {
		return info, "empty request line"
	}
	version := line[bytes.LastIndexByte(line, ' ')+1:]
	lengths, codings := 0, 0
	for {
		line, rest = CutLine(rest)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return info, "obsolete line folding"
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return info, "malformed header line"
		}
		name, value := line[:colon], TrimOWS(line[colon+1:])
		if bytes.ContainsAny(name, " \t") {
			return info, "whitespace before colon"
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			lengths++
			n, ok := ParseLength(value)
			switch {
			case lengths > 1:
				return info, "duplicate Content-Length"
			case !ok:
				return info, "invalid Content-Length"
			}
			info.Length = n
		case bytes.EqualFold(name, []byte("Upgrade")):
			info.Upgrade = true
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			codings++
			switch {
			case codings > 1:
				return info, "duplicate Transfer-Encoding"
			case !bytes.EqualFold(value, []byte("chunked")):
				return info, "unsupported Transfer-Encoding"
			}
		}
	}
	switch {
	case codings > 0 && lengths > 0:
		return info, "both Content-Length and Transfer-Encoding"
	case codings > 0 && string(version) != "HTTP/1.1":
		// HTTP/1.0 has no chunked coding; net/http would ignore it and
		// read the chunks as the next request.
		return info, "Transfer-Encoding before HTTP/1.1"
	case codings > 0:
		info.Kind = BodyChunked
	case lengths > 0:
		info.Kind = BodyLength
	}
	return info, ""
}

// ByteFault names a NUL, a bare CR or a bare LF (a line not ended by CRLF)
// in a message head, for requests and responses alike, or returns "".
func ByteFault(h []byte) string {
	for i, c := range h {
		switch {
		case c == 0:
			return "NUL"
		case c == '\r' && (i+1 == len(h) || h[i+1] != '\n'):
			return "bare CR"
		case c == '\n' && (i == 0 || h[i-1] != '\r'):
			return "bare LF"
		}
	}
	return ""
}

// CutLine splits b after its first CRLF; CheckHead has made sure every line
// ends in one.
func CutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil
	}
	return b[:i-1], b[i+1:]
}

func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// ParseLength accepts what net/http accepts: decimal digits only, below 2^63.
func ParseLength(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// Framer follows one message body through the byte stream: for the guard,
// where the next request head starts; for the fast path, where a chunked
// response ends.
type Framer struct {
	state   uint8
	Upgrade bool   // the request being framed asked to switch protocols; the guard clears it
	Scanned int    // in a head: bytes already scanned for its end; the guard keeps it
	n       uint64 // body or chunk bytes left; in a size line, the size so far
	digits  int    // hex digits in the size line
	line    int    // bytes in the current size or trailer line
	trailer int    // trailer bytes so far
}

const (
	inHead        uint8 = iota
	inLength            // n bytes of body left
	inSize              // chunk-size digits
	inSizeExt           // after ';' in a size line
	inSizeOWS           // whitespace after the digits
	inSizeLF            // CR of a size line seen
	inData              // n bytes of chunk data left
	inDataCR            // CRLF after chunk data
	inDataLF            //
	inTrailer           // start of a trailer line, or of the final CRLF
	inTrailerLine       // inside a trailer field line
	inTrailerLF         // CR of a trailer line seen
	inEndLF             // CR of the final empty line seen
)

func (f *Framer) InBody() bool { return f.state != inHead }

// Chunked returns a Framer inside a chunked body, at its first size line.
func Chunked() Framer { return Framer{state: inSize} }

// AtChunkStart reports whether the body ended so far between two chunks:
// a stream cut there lost no part of a chunk.
func (f *Framer) AtChunkStart() bool { return f.state == inSize && f.digits == 0 }

// Start sets up the body that follows a head.
func (f *Framer) Start(h Head) {
	// A handshake has no body; net/http reads ahead for the end of the
	// handler, which the guard needs to tell a tunnel from a next request.
	*f = Framer{Upgrade: h.Upgrade && (h.Kind == BodyNone || h.Kind == BodyLength && h.Length == 0)}
	switch {
	case h.Kind == BodyLength && h.Length > 0:
		f.state, f.n = inLength, h.Length
	case h.Kind == BodyChunked:
		f.state = inSize
	}
}

// Body consumes body bytes from b and returns how many, stopping where the
// body ends. A framing error is returned with the bytes before the
// offending one; ErrTail says what to put in its place.
func (f *Framer) Body(b []byte) (int, string) {
	i := 0
	for i < len(b) && f.state != inHead {
		if f.state == inLength || f.state == inData {
			k := min(uint64(len(b)-i), f.n)
			i += int(k)
			f.n -= k
			if f.n == 0 {
				if f.state == inLength {
					f.state = inHead
				} else {
					f.state = inDataCR
				}
			}
			continue
		}
		c := b[i]
		i++
		if f.state >= inTrailer {
			if f.trailer++; f.trailer > trailerLimit {
				return i - 1, "trailer too long"
			}
		}
		if reason := f.step(c); reason != "" {
			return i - 1, reason
		}
	}
	return i, ""
}

// ErrTail replaces the offending byte after Body returned an error: bytes
// no net/http chunked reader accepts in the state where the error was
// found, so the server fails the body itself instead of waiting for more.
func (f *Framer) ErrTail() string {
	switch f.state {
	case inSize, inSizeExt, inSizeOWS, inSizeLF:
		return "\r\x00\n" // a CR inside the size line
	case inDataCR, inDataLF:
		return "\x00\x00" // not the CRLF after chunk data
	case inTrailerLine:
		return "\r\n\x00\r\n\r\n" // end the field line; then a line with no colon
	case inTrailerLF:
		return "\n\x00\r\n\r\n"
	}
	return "\x00\r\n\r\n" // at a trailer line's start
}

// step advances the chunked framing by one byte outside chunk data. The
// size line follows net/http: hex digits (at most 16), then optional
// whitespace or a ';' extension, then CRLF with no other CR.
func (f *Framer) step(c byte) string {
	switch f.state {
	case inSize, inSizeExt, inSizeOWS:
		if f.line++; f.line > maxChunkLine {
			return "chunk size line too long"
		}
	}
	switch f.state {
	case inSize:
		if v, ok := unhex(c); ok {
			if f.digits == 16 {
				return "chunk size too large"
			}
			f.n, f.digits = f.n<<4|uint64(v), f.digits+1
			return ""
		}
		switch {
		case f.digits == 0:
			return "invalid chunk size"
		case c == ';':
			f.state = inSizeExt
		case c == ' ' || c == '\t':
			f.state = inSizeOWS
		case c == '\r':
			f.state = inSizeLF
		default:
			return "invalid chunk size"
		}
	case inSizeExt:
		switch c {
		case '\r':
			f.state = inSizeLF
		case '\n':
			return "bare LF in chunk size line"
		}
	case inSizeOWS:
		switch c {
		case ' ', '\t':
		case '\r':
			f.state = inSizeLF
		default:
			return "invalid chunk size"
		}
	case inSizeLF:
		if c != '\n' {
			return "bare CR in chunk size line"
		}
		f.line, f.digits = 0, 0
		if f.n == 0 {
			f.state = inTrailer
		} else {
			f.state = inData
		}
	case inDataCR:
		if c != '\r' {
			return "chunk data longer than its size"
		}
		f.state = inDataLF
	case inDataLF:
		if c != '\n' {
			return "chunk data longer than its size"
		}
		f.state, f.n = inSize, 0
	case inTrailer:
		switch c {
		case '\r':
			f.state = inEndLF
		case ' ', '\t':
			return "obsolete line folding in trailer"
		case '\n':
			return "bare LF in trailer"
		case 0:
			return "NUL in trailer"
		default:
			f.state = inTrailerLine
		}
	case inTrailerLine:
		switch c {
		case '\r':
			f.state = inTrailerLF
		case '\n':
			return "bare LF in trailer"
		case 0:
			return "NUL in trailer"
		}
	case inTrailerLF, inEndLF:
		if c != '\n' {
			return "bare CR in trailer"
		}
		if f.state == inEndLF {
			f.state = inHead
		} else {
			f.state = inTrailer
		}
	}
	return ""
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
