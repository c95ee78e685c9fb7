// Package link is the wire protocol between srp's processes, both ends of
// each conversation in one place:
//
//   - supervisor ↔ worker, on a socket pair the worker finds at fd 3: the
//     supervisor sends the config and the session-ticket keys, the worker
//     answers ready or why it failed, the supervisor says drain;
//   - old supervisor ↔ new binary during an upgrade, on the "handover" socket
//     pair passed through tableflip: keys one way, ready with a PID or the
//     failure the other;
//   - the control socket beside the pidfile, a line protocol for
//     "srp reload" and "srp upgrade".
//
// The message set is closed: anything else is a protocol error, never skipped.
package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Type is the first byte of every message. The set is closed:
// a message of any other type is a protocol error, never skipped.
type Type byte

const (
	Config Type = 'C' // supervisor → worker: the validated config file's bytes
	Keys   Type = 'K' // supervisor → worker or new binary: TLS session-ticket keys, 32 bytes each
	Ready  Type = 'R' // worker → supervisor: serving; new binary → old: ready, payload is its PID
	Error  Type = 'E' // worker or new binary → old: why it cannot start, as text
	Drain  Type = 'D' // supervisor → worker: stop accepting, finish in-flight requests, exit
	// Unready: supervisor → worker: srp is leaving; answer /ready with 503
	// and keep serving until Drain.
	Unready Type = 'U'
)

func (t Type) String() string {
	switch t {
	case Config:
		return "config"
	case Keys:
		return "keys"
	case Ready:
		return "ready"
	case Error:
		return "error"
	case Drain:
		return "drain"
	case Unready:
		return "unready"
	}
	return fmt.Sprintf("unknown(%#x)", byte(t))
}

// Size limits, one per message type, so that neither end can make the
// other allocate more than that message could ever need.
const (
	MaxConfig = 16 << 20 // config files are far smaller
	MaxKeys   = 8        // session-ticket keys in one Keys message
	MaxError  = 8 << 10  // bytes of one Error message; longer texts are cut
	maxReady  = 20       // a PID in decimal
)

// MaxPayload is the largest payload of typ; an unknown type has none.
func MaxPayload(typ Type) int {
	switch typ {
	case Config:
		return MaxConfig
	case Keys:
		return 32 * MaxKeys
	case Ready:
		return maxReady
	case Error:
		return MaxError
	}
	return 0
}

// ErrProtocol marks a malformed or unexpected message.
var ErrProtocol = errors.New("link: protocol error")

// Message is one frame on a control connection: type, 4-byte big-endian
// payload length, payload.
type Message struct {
	Type    Type
	Payload []byte
}

// Write sends one message.
func Write(w io.Writer, typ Type, payload []byte) error {
	if len(payload) > MaxPayload(typ) {
		return fmt.Errorf("%w: %s message of %d bytes, over its limit of %d", ErrProtocol, typ, len(payload), MaxPayload(typ))
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

// Read reads one frame. It returns io.EOF only for a clean end of stream
// between frames.
func Read(r io.Reader) (Message, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return Message{}, io.EOF
		}
		return Message{}, fmt.Errorf("read message header: %w", err)
	}
	m := Message{Type: Type(hdr[0])}
	switch m.Type {
	case Config, Keys, Ready, Error, Drain, Unready:
	default:
		return Message{}, fmt.Errorf("%w: message type %s", ErrProtocol, m.Type)
	}
	n := binary.BigEndian.Uint32(hdr[1:5])
	if uint64(n) > uint64(MaxPayload(m.Type)) {
		return Message{}, fmt.Errorf("%w: %s message of %d bytes, over its limit of %d", ErrProtocol, m.Type, n, MaxPayload(m.Type))
	}
	m.Payload = make([]byte, n)
	if _, err := io.ReadFull(r, m.Payload); err != nil {
		return Message{}, fmt.Errorf("read %s message: %w", m.Type, io.ErrUnexpectedEOF)
	}
	return m, nil
}

// EncodeKeys and DecodeKeys carry session-ticket keys as a Keys payload.
func EncodeKeys(keys [][32]byte) []byte {
	b := make([]byte, 0, 32*len(keys))
	for _, k := range keys {
		b = append(b, k[:]...)
	}
	return b
}

func DecodeKeys(b []byte) ([][32]byte, error) {
	if len(b) == 0 || len(b)%32 != 0 || len(b) > 32*MaxKeys {
		return nil, fmt.Errorf("%w: keys payload of %d bytes", ErrProtocol, len(b))
	}
	keys := make([][32]byte, len(b)/32)
	for i := range keys {
		copy(keys[i][:], b[32*i:])
	}
	return keys, nil
}

// ErrorText is err's text cut to what one Error message carries.
func ErrorText(err error) []byte {
	t := err.Error()
	if len(t) <= MaxError {
		return []byte(t)
	}
	const cut = " …(cut)"
	return []byte(strings.ToValidUTF8(t[:MaxError-len(cut)], "") + cut)
}
