package supervisor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// msgType is the first byte of every control message. The set is closed:
// a message of any other type is a protocol error, never skipped.
type msgType byte

const (
	msgConfig msgType = 'C' // supervisor → worker: the validated config file's bytes
	msgKeys   msgType = 'K' // supervisor → worker or new binary: TLS session-ticket keys, 32 bytes each
	msgReady  msgType = 'R' // worker → supervisor: serving; new binary → old: ready, payload is its PID
	msgError  msgType = 'E' // worker or new binary → old: why it cannot start, as text
	msgDrain  msgType = 'D' // supervisor → worker: stop accepting, finish in-flight requests, exit
)

func (t msgType) String() string {
	switch t {
	case msgConfig:
		return "config"
	case msgKeys:
		return "keys"
	case msgReady:
		return "ready"
	case msgError:
		return "error"
	case msgDrain:
		return "drain"
	}
	return fmt.Sprintf("unknown(%#x)", byte(t))
}

// maxPayload bounds one message so a corrupt length cannot make the reader
// allocate without limit. Config files are far smaller.
const maxPayload = 16 << 20

// errProtocol marks a malformed or unexpected message.
var errProtocol = errors.New("supervisor: protocol error")

// message is one frame on a control connection: type, 4-byte big-endian
// payload length, payload.
type message struct {
	typ     msgType
	payload []byte
}

func writeMsg(w io.Writer, typ msgType, payload []byte) error {
	if len(payload) > maxPayload {
		return fmt.Errorf("%w: %s message of %d bytes", errProtocol, typ, len(payload))
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = byte(typ)
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("send %s: %w", typ, err)
	}
	return nil
}

// readMsg reads one frame. It returns io.EOF only for a clean end of stream
// between frames.
func readMsg(r io.Reader) (message, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return message{}, io.EOF
		}
		return message{}, fmt.Errorf("read message header: %w", err)
	}
	m := message{typ: msgType(hdr[0])}
	switch m.typ {
	case msgConfig, msgKeys, msgReady, msgError, msgDrain:
	default:
		return message{}, fmt.Errorf("%w: message type %s", errProtocol, m.typ)
	}
	n := binary.BigEndian.Uint32(hdr[1:5])
	if n > maxPayload {
		return message{}, fmt.Errorf("%w: %s message of %d bytes", errProtocol, m.typ, n)
	}
	m.payload = make([]byte, n)
	if _, err := io.ReadFull(r, m.payload); err != nil {
		return message{}, fmt.Errorf("read %s message: %w", m.typ, io.ErrUnexpectedEOF)
	}
	return m, nil
}

// encodeKeys and decodeKeys carry session-ticket keys as a msgKeys payload.
func encodeKeys(keys [][32]byte) []byte {
	b := make([]byte, 0, 32*len(keys))
	for _, k := range keys {
		b = append(b, k[:]...)
	}
	return b
}

func decodeKeys(b []byte) ([][32]byte, error) {
	if len(b) == 0 || len(b)%32 != 0 {
		return nil, fmt.Errorf("%w: keys payload of %d bytes", errProtocol, len(b))
	}
	keys := make([][32]byte, len(b)/32)
	for i := range keys {
		copy(keys[i][:], b[32*i:])
	}
	return keys, nil
}
