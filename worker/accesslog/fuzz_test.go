package accesslog

import (
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"srp/worker/observe"
)

// FuzzLine checks that any request, whatever its strings hold, gives
// exactly one line in each format, and that the line gives back the
// request's values.
func FuzzLine(f *testing.F) {
	s := sample()
	f.Add(s.RemoteIP, s.Method, s.Host, s.URI, s.Proto, s.Referer, s.UserAgent, s.Backend, s.RequestID,
		s.Start.UnixNano(), int64(s.Duration), s.Status, s.Bytes, s.Retries, s.TLS)
	f.Add("", "", "", "", "", "", "", "", "", int64(0), int64(-1), 0, int64(0), 0, false)
	f.Add("a b", "G\x00T", "h\r\n", "/\"\\\xff\u2028", "HTTP/1.1\n", "-", " ", "\x7f", "\xed\xa0\x80",
		int64(-1), int64(1<<62), -1, int64(-1), -1, true)
	f.Fuzz(func(t *testing.T, remote, method, host, uri, proto, referer, userAgent, backend, requestID string,
		start, duration int64, status int, bytes int64, retries int, tls bool) {
		r := observe.Request{
			Start: time.Unix(0, start), Duration: time.Duration(duration),
			RemoteIP: remote, Method: method, Host: host, URI: uri, Proto: proto,
			Referer: referer, UserAgent: userAgent, Backend: backend, RequestID: requestID,
			Status: status, Bytes: bytes, Retries: retries, TLS: tls,
		}
		checkJSON(t, string(appendJSON(nil, &r)), &r)
		checkCombined(t, string(appendCombined(nil, &r)), &r)
	})
}

func checkOneLine(t *testing.T, line string) {
	t.Helper()
	if !strings.HasSuffix(line, "\n") || strings.ContainsAny(line[:len(line)-1], "\r\n") {
		t.Fatalf("not exactly one line: %q", line)
	}
}

func checkJSON(t *testing.T, line string, r *observe.Request) {
	checkOneLine(t, line)
	var got struct {
		Time       string
		RemoteIP   string `json:"remote_ip"`
		Method     string
		Host       string
		URI        string
		Proto      string
		Status     int
		Bytes      int64
		DurationMS json.Number `json:"duration_ms"`
		Backend    string
		Retries    int
		RequestID  string `json:"request_id"`
		TLS        bool
	}
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	for _, f := range []struct{ name, got, sent string }{
		{"remote_ip", got.RemoteIP, r.RemoteIP}, {"method", got.Method, r.Method},
		{"host", got.Host, r.Host}, {"uri", got.URI, r.URI}, {"proto", got.Proto, r.Proto},
		{"backend", got.Backend, r.Backend}, {"request_id", got.RequestID, r.RequestID},
	} {
		if want := replaceInvalid(f.sent); f.got != want {
			t.Errorf("%s: got %q, want %q", f.name, f.got, want)
		}
	}
	if got.Status != r.Status || got.Bytes != r.Bytes || got.Retries != r.Retries || got.TLS != r.TLS {
		t.Errorf("numbers of %q do not match %+v", line, r)
	}
	if ts, err := time.Parse(time.RFC3339Nano, got.Time); err != nil || !ts.Equal(r.Start.Truncate(time.Millisecond)) {
		t.Errorf("time %q: %v, want %v", got.Time, err, r.Start.UTC())
	}
	if !thousandths.MatchString(string(got.DurationMS)) {
		t.Errorf("duration_ms %q", got.DurationMS)
	}
}

// replaceInvalid replaces each byte that is not valid UTF-8 by U+FFFD.
func replaceInvalid(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

const (
	token  = `(?:[!#-\[\]-~]|\\x[0-9A-F]{2})` // a byte of an unquoted or space-delimited field
	quoted = `(?:[ !#-\[\]-~]|\\x[0-9A-F]{2})`
)

var thousandths = regexp.MustCompile(`^\d+\.\d{3}$`)

var combinedLine = regexp.MustCompile(`^(` + token + `+) - - ` +
	`\[(\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} \+0000)\] ` +
	`"(` + token + `*) (` + token + `*) (` + token + `*)" (-?\d+) (-?\d+) ` +
	`"(` + quoted + `*)" "(` + quoted + `*)" (\d+\.\d{3})\n$`)

func checkCombined(t *testing.T, line string, r *observe.Request) {
	checkOneLine(t, line)
	m := combinedLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("%q does not match %v", line, combinedLine)
	}
	for _, f := range []struct {
		name, got, sent string
		dash            bool // "" is written as "-"
	}{
		{"remote address", m[1], r.RemoteIP, true}, {"method", m[3], r.Method, false},
		{"uri", m[4], r.URI, false}, {"proto", m[5], r.Proto, false},
		{"referer", m[8], r.Referer, true}, {"user agent", m[9], r.UserAgent, true},
	} {
		got, err := unescapeCLF(f.got)
		if f.dash && f.sent == "" {
			f.sent = "-"
		}
		if err != nil || got != f.sent {
			t.Errorf("%s: %q unescapes to %q (%v), want %q", f.name, f.got, got, err, f.sent)
		}
	}
	if m[6] != strconv.Itoa(r.Status) || m[7] != strconv.FormatInt(r.Bytes, 10) {
		t.Errorf("status and bytes %q %q, want %d %d", m[6], m[7], r.Status, r.Bytes)
	}
	ts, err := time.Parse("02/Jan/2006:15:04:05 -0700", m[2])
	if err != nil || !ts.Equal(r.Start.Truncate(time.Second)) {
		t.Errorf("time %q: %v, want %v", m[2], err, r.Start.UTC())
	}
}

// unescapeCLF undoes appendCLF.
func unescapeCLF(s string) (string, error) {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		if i+4 > len(s) || s[i+1] != 'x' {
			return "", errors.New("bad escape")
		}
		n, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
		if err != nil {
			return "", err
		}
		b = append(b, byte(n))
		i += 3
	}
	return string(b), nil
}
