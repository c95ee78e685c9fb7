package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// problems collects every validation problem of one Parse call.
type problems struct {
	file string
	errs []error
}

// prefix is the location of a document-level problem.
func (p *problems) prefix() string { return p.file + ": " }

// at is the location of a problem in the service with the given config key.
func (p *problems) at(host string) string { return fmt.Sprintf("%s: service %q: ", p.file, host) }

// document checks that data is exactly one JSON object and returns it.
func (p *problems) document(data []byte) []byte {
	// Some editors start files with a UTF-8 byte order mark; JSON has no use for it.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	dec := json.NewDecoder(bytes.NewReader(data))
	var doc json.RawMessage
	err := dec.Decode(&doc)
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		p.errorf(p.prefix(), "empty file, expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		p.errorf(p.prefix(), "invalid JSON: unexpected end of file")
	case errors.As(err, &syntaxErr):
		// Offset counts the byte that was rejected.
		p.errorf(p.prefix(), "invalid JSON at %s: %w", position(data, syntaxErr.Offset-1), err)
	case err != nil:
		p.errorf(p.prefix(), "invalid JSON: %w", err)
	case kind(doc) != "object":
		p.errorf(p.prefix(), "must be a JSON object, got %s", kind(doc))
	default:
		end := dec.InputOffset()
		rest := bytes.TrimLeft(data[end:], " \t\r\n")
		if len(rest) > 0 {
			p.errorf(p.prefix(), "unexpected data after the JSON object at %s", position(data, int64(len(data)-len(rest))))
		}
		return doc // report the object's own problems too
	}
	return nil
}

// position describes a byte offset as a 1-based line and column.
func position(data []byte, offset int64) string {
	offset = max(0, min(offset, int64(len(data))))
	before := data[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}

// kind names the JSON type of a valid JSON value, for error messages.
func kind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "list"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

type member struct {
	key string
	val json.RawMessage
}

// objectMembers returns the members of a valid JSON object in document
// order. Unlike decoding into a map it keeps repeated keys, so they can be
// reported instead of silently overwritten.
func objectMembers(raw []byte) []member {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil
	}
	var members []member
	for dec.More() {
		tok, err := dec.Token()
		key, ok := tok.(string)
		if err != nil || !ok {
			break
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			break
		}
		members = append(members, member{key, val})
	}
	return members
}

// fields returns the known fields of a valid JSON object, reporting
// unknown and repeated ones. A null field is left out, as if absent:
// configs written by Go programs have null for nil slices and pointers.
func (p *problems) fields(where string, raw []byte, known ...string) map[string][]byte {
	f := make(map[string][]byte, len(known))
	seen := make(map[string]bool, len(known))
	for _, m := range objectMembers(raw) {
		switch {
		case !slices.Contains(known, m.key):
			if s := suggest(m.key, known); s != "" {
				p.errorf(where, "unknown field %q (did you mean %q?)", m.key, s)
			} else {
				p.errorf(where, "unknown field %q (known fields: %s)", m.key, strings.Join(known, ", "))
			}
		case seen[m.key]:
			p.errorf(where, "field %q appears twice", m.key)
		default:
			seen[m.key] = true
			if kind(m.val) != "null" {
				f[m.key] = m.val
			}
		}
	}
	return f
}

// suggest returns the known field closest to a misspelt key, or "" if none
// is close enough to be a likely typo.
func suggest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		d := distance(strings.ToLower(key), strings.ToLower(k))
		if d < bestDist && d*3 <= len(k) {
			best, bestDist = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b, or a large number
// when their lengths alone make them far apart.
func distance(a, b string) int {
	if len(a)-len(b) > 2 || len(b)-len(a) > 2 {
		return len(a) + len(b)
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
