package link

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestMessageRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	keys := [][32]byte{{1, 2, 3}, {4}}
	for _, m := range []Message{
		{Config, []byte(`{"Services": {}}`)},
		{Keys, EncodeKeys(keys)},
		{Ready, nil},
		{Error, []byte("line one\nline two")},
		{Drain, nil},
		{Unready, nil},
	} {
		if err := Write(&buf, m.Type, m.Payload); err != nil {
			t.Fatal(err)
		}
		got, err := Read(&buf)
		if err != nil {
			t.Fatalf("%s: %v", m.Type, err)
		}
		if got.Type != m.Type || !bytes.Equal(got.Payload, m.Payload) {
			t.Errorf("sent %s %q, got %s %q", m.Type, m.Payload, got.Type, got.Payload)
		}
	}
	got, err := DecodeKeys(EncodeKeys(keys))
	if err != nil || len(got) != 2 || got[0] != keys[0] || got[1] != keys[1] {
		t.Errorf("keys round trip: %v %v", got, err)
	}
}

func TestMessageErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input []byte
		want  error
	}{
		{"clean end", nil, io.EOF},
		{"unknown type", []byte{'X', 0, 0, 0, 0}, ErrProtocol},
		{"oversized", []byte{'C', 0xff, 0xff, 0xff, 0xff}, ErrProtocol},
		{"short header", []byte{'C', 0}, io.ErrUnexpectedEOF},
		{"short payload", []byte{'C', 0, 0, 0, 5, 'a'}, io.ErrUnexpectedEOF},
	} {
		_, err := Read(bytes.NewReader(tc.input))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, 31), make([]byte, 33)} {
		if _, err := DecodeKeys(bad); !errors.Is(err, ErrProtocol) {
			t.Errorf("DecodeKeys(%d bytes): %v, want a protocol error", len(bad), err)
		}
	}
}

// FuzzReadMsg checks a reader never panics or accepts a frame that does
// not re-encode to its input.
func FuzzReadMsg(f *testing.F) {
	f.Add([]byte{'R', 0, 0, 0, 0})
	f.Add([]byte{'E', 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{'Z', 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := Write(&buf, m.Type, m.Payload); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, buf.Bytes()) {
			t.Fatalf("frame %q re-encodes as %q", data, buf.Bytes())
		}
	})
}

// TestMessageLimits checks each message type has its own size limit, on
// both ends: a peer cannot make the reader allocate more than the largest
// sane message of that type.
func TestMessageLimits(t *testing.T) {
	frame := func(typ byte, n int) []byte {
		b := make([]byte, 5+n)
		b[0] = typ
		b[1], b[2], b[3], b[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return b
	}
	for _, tc := range []struct {
		typ     byte
		ok, bad int
	}{
		{'C', 1 << 20, 16<<20 + 1},
		{'K', 8 * 32, 9 * 32},
		{'R', 20, 21},
		{'E', 8 << 10, 8<<10 + 1},
		{'D', 0, 1},
	} {
		if _, err := Read(bytes.NewReader(frame(tc.typ, tc.ok))); err != nil {
			t.Errorf("%c message of %d bytes: %v", tc.typ, tc.ok, err)
		}
		if _, err := Read(bytes.NewReader(frame(tc.typ, tc.bad))); !errors.Is(err, ErrProtocol) {
			t.Errorf("%c message of %d bytes: %v, want a protocol error", tc.typ, tc.bad, err)
		}
		if err := Write(io.Discard, Type(tc.typ), make([]byte, tc.bad)); !errors.Is(err, ErrProtocol) {
			t.Errorf("writing a %c message of %d bytes: %v, want a protocol error", tc.typ, tc.bad, err)
		}
	}
}
