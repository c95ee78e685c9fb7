package supervisor

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestMessageRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	keys := [][32]byte{{1, 2, 3}, {4}}
	for _, m := range []message{
		{msgConfig, []byte(`{"Services": {}}`)},
		{msgKeys, encodeKeys(keys)},
		{msgReady, nil},
		{msgError, []byte("line one\nline two")},
		{msgDrain, nil},
	} {
		if err := writeMsg(&buf, m.typ, m.payload); err != nil {
			t.Fatal(err)
		}
		got, err := readMsg(&buf)
		if err != nil {
			t.Fatalf("%s: %v", m.typ, err)
		}
		if got.typ != m.typ || !bytes.Equal(got.payload, m.payload) {
			t.Errorf("sent %s %q, got %s %q", m.typ, m.payload, got.typ, got.payload)
		}
	}
	got, err := decodeKeys(encodeKeys(keys))
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
		{"unknown type", []byte{'X', 0, 0, 0, 0}, errProtocol},
		{"oversized", []byte{'C', 0xff, 0xff, 0xff, 0xff}, errProtocol},
		{"short header", []byte{'C', 0}, io.ErrUnexpectedEOF},
		{"short payload", []byte{'C', 0, 0, 0, 5, 'a'}, io.ErrUnexpectedEOF},
	} {
		_, err := readMsg(bytes.NewReader(tc.input))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, 31), make([]byte, 33)} {
		if _, err := decodeKeys(bad); !errors.Is(err, errProtocol) {
			t.Errorf("decodeKeys(%d bytes): %v, want a protocol error", len(bad), err)
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
		m, err := readMsg(bytes.NewReader(data))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := writeMsg(&buf, m.typ, m.payload); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, buf.Bytes()) {
			t.Fatalf("frame %q re-encodes as %q", data, buf.Bytes())
		}
	})
}
