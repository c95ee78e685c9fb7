package upstream

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSaneRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"0af7651916cd43dd8448eb211c80319c":                        true,
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01": true,
		"Root=1-67891233-abcdef012345678912345678":                true,
		"abc_DEF.1:2/3+4=":                                        true,
		string(make([]byte, 0)):                                   false,
		"has space":                                               false,
		"new\nline":                                               false,
		"tab\t":                                                   false,
		"<script>":                                                false,
		`quote"`:                                                  false,
		"semi;colon":                                              false,
		"ünïcode":                                                 false,
		string(make([]byte, 129)):                                 false,
	} {
		if got := SaneRequestID(id); got != want {
			t.Errorf("SaneRequestID(%q) = %v, want %v", id, got, want)
		}
	}
	long := make([]byte, 128)
	for i := range long {
		long[i] = 'a'
	}
	if !SaneRequestID(string(long)) || SaneRequestID(string(long)+"a") {
		t.Error("the length limit is not 128")
	}
}

func TestGeneratedRequestIDsAreSaneAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		r := httptest.NewRequest("GET", "/", nil)
		id := RequestID(r)
		if !SaneRequestID(id) || seen[id] {
			t.Fatalf("generated ID %q: sane %v, seen before %v", id, SaneRequestID(id), seen[id])
		}
		seen[id] = true
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header["X-Request-Id"] = []string{"a", "b"}
	if id := RequestID(r); id == "a" || id == "b" {
		t.Fatal("one of two X-Request-Id values was kept")
	}
}

func TestClientIP(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:5555":          "192.0.2.7",
		"[::ffff:192.0.2.7]:5555": "192.0.2.7",
		"[2001:db8::7]:5555":      "2001:db8::7",
		"garbage":                 "",
	} {
		if got := ClientIP(addr); got != want {
			t.Errorf("clientIP(%q) = %q, want %q", addr, got, want)
		}
	}
}

// FuzzSaneRequestID checks that an ID is kept only if it is safe in a
// header and a log line, and that a replacement is always safe.
func FuzzSaneRequestID(f *testing.F) {
	for _, s := range []string{"0af7651916cd43dd8448eb211c80319c", "a b", "x\r\nInjected: 1", "", strings.Repeat("z", 128), strings.Repeat("z", 129), "é", "a=b+c/d:e.f_g-h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		sane := SaneRequestID(id)
		if sane {
			if len(id) == 0 || len(id) > 128 {
				t.Fatalf("sane ID of length %d", len(id))
			}
			for i := 0; i < len(id); i++ {
				if c := id[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"'<>\;,%&{}|^`+"`", c) >= 0 {
					t.Fatalf("sane ID %q has byte %q", id, c)
				}
			}
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["X-Request-Id"] = []string{id}
		got := RequestID(r)
		if sane && got != id {
			t.Fatalf("sane ID %q replaced by %q", id, got)
		}
		if !sane && (got == id || !SaneRequestID(got)) {
			t.Fatalf("unsane ID %q: requestID gave %q", id, got)
		}
	})
}
