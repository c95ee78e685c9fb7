package accesslog

import (
	"strings"
	"testing"
	"time"

	"srp/worker/observe"
)

func sample() observe.Request {
	return observe.Request{
		Start:     time.Date(2026, 12, 6, 9, 38, 48, 123456789, time.UTC),
		Duration:  1234567 * time.Nanosecond,
		Service:   "www.example.com",
		Host:      "www.example.com",
		Method:    "GET",
		URI:       "/a?b=c",
		Proto:     "HTTP/1.1",
		RemoteIP:  "192.0.2.1",
		Referer:   "https://ref.example/",
		UserAgent: "curl/8.0",
		RequestID: "abc",
		Backend:   "10.0.0.1:3001",
		Status:    200,
		Bytes:     64,
		Retries:   1,
		TLS:       true,
	}
}

func TestLines(t *testing.T) {
	r := sample()
	wantJSON := `{"time":"2026-12-06T09:38:48.123Z","remote_ip":"192.0.2.1","method":"GET",` +
		`"host":"www.example.com","uri":"/a?b=c","proto":"HTTP/1.1","status":200,"bytes":64,` +
		`"duration_ms":1.235,"backend":"10.0.0.1:3001","retries":1,"request_id":"abc","tls":true}` + "\n"
	if got := string(appendJSON(nil, &r)); got != wantJSON {
		t.Errorf("json:\n got %s want %s", got, wantJSON)
	}
	wantCombined := `192.0.2.1 - - [06/Dec/2026:09:38:48 +0000] "GET /a?b=c HTTP/1.1" 200 64 ` +
		`"https://ref.example/" "curl/8.0" 0.001` + "\n"
	if got := string(appendCombined(nil, &r)); got != wantCombined {
		t.Errorf("combined:\n got %s want %s", got, wantCombined)
	}
}

func TestFields(t *testing.T) {
	long := "/" + strings.Repeat("a", 100<<10)
	tests := []struct {
		name     string
		set      func(r *observe.Request)
		json     string // a part of the JSON line
		combined string // a part of the combined line
	}{
		{"CR LF", func(r *observe.Request) { r.URI = "/a\r\nb" },
			`"uri":"/a\u000d\u000ab"`, `"GET /a\x0D\x0Ab HTTP/1.1"`},
		{"quotes", func(r *observe.Request) { r.URI = `/"q"` },
			`"uri":"/\"q\""`, `"GET /\x22q\x22 HTTP/1.1"`},
		{"backslash", func(r *observe.Request) { r.URI = `/a\b` },
			`"uri":"/a\\b"`, `"GET /a\x5Cb HTTP/1.1"`},
		{"NUL", func(r *observe.Request) { r.URI = "/\x00" },
			`"uri":"/\u0000"`, `"GET /\x00 HTTP/1.1"`},
		{"tab and DEL", func(r *observe.Request) { r.URI = "/\t\x7f" },
			`"uri":"/\u0009\u007f"`, `"GET /\x09\x7F HTTP/1.1"`},
		{"invalid UTF-8", func(r *observe.Request) { r.URI = "/\xff\xfe\xc3" },
			`"uri":"/\ufffd\ufffd\ufffd"`, `"GET /\xFF\xFE\xC3 HTTP/1.1"`},
		{"UTF-8", func(r *observe.Request) { r.URI = "/é" },
			`"uri":"/é"`, `"GET /\xC3\xA9 HTTP/1.1"`},
		{"line separators", func(r *observe.Request) { r.URI = "/\u2028\u2029" },
			`"uri":"/\u2028\u2029"`, `"GET /\xE2\x80\xA8\xE2\x80\xA9 HTTP/1.1"`},
		{"spaces in the request", func(r *observe.Request) { r.Method, r.URI = "G T", "/a b" },
			`"method":"G T","host":"www.example.com","uri":"/a b"`, `"G\x20T /a\x20b HTTP/1.1"`},
		{"spaces elsewhere", func(r *observe.Request) { r.RemoteIP, r.Referer, r.UserAgent = "a b", "c d", "e f" },
			`"remote_ip":"a b"`, `a\x20b - - [06/Dec/2026:09:38:48 +0000] "GET /a?b=c HTTP/1.1" 200 64 "c d" "e f" 0.001`},
		{"hostile header values", func(r *observe.Request) { r.Referer, r.UserAgent = "\"\n", "\\\r" },
			`"uri":"/a?b=c"`, `"\x22\x0A" "\x5C\x0D"`},
		{"empty values", func(r *observe.Request) {
			r.RemoteIP, r.Referer, r.UserAgent, r.Backend, r.RequestID = "", "", "", "", ""
		},
			`"backend":"","retries":1,"request_id":""`, `- - - [06/Dec/2026:09:38:48 +0000] "GET /a?b=c HTTP/1.1" 200 64 "-" "-" 0.001`},
		{"zero bytes, no TLS", func(r *observe.Request) { r.Status, r.Bytes, r.TLS = 304, 0, false },
			`"status":304,"bytes":0,`, `" 304 0 "`},
		{"negative duration", func(r *observe.Request) { r.Duration = -time.Second },
			`"duration_ms":0.000,`, `" 0.000` + "\n"},
		{"slow request", func(r *observe.Request) { r.Duration = 61*time.Second + 999500*time.Microsecond },
			`"duration_ms":61999.500,`, `" 62.000` + "\n"},
		{"other time zone", func(r *observe.Request) {
			r.Start = time.Date(2027, 1, 1, 1, 0, 0, 5e6, time.FixedZone("", 2*3600))
		}, `"time":"2026-12-31T23:00:00.005Z"`, `[31/Dec/2026:23:00:00 +0000]`},
		{"zero time", func(r *observe.Request) { r.Start = time.Time{} },
			`"time":"0001-01-01T00:00:00.000Z"`, `[01/Jan/0001:00:00:00 +0000]`},
		{"very long URI", func(r *observe.Request) { r.URI = long },
			`"uri":"` + long + `"`, `"GET ` + long + ` HTTP/1.1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sample()
			tt.set(&r)
			for _, c := range []struct{ line, want string }{
				{string(appendJSON(nil, &r)), tt.json},
				{string(appendCombined(nil, &r)), tt.combined},
			} {
				if !strings.Contains(c.line, c.want) {
					t.Errorf("line %.300q\nlacks %.300q", c.line, c.want)
				}
				if strings.IndexAny(c.line, "\r\n") != len(c.line)-1 {
					t.Errorf("line %.300q is not one line", c.line)
				}
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, f := range []Format{Off, JSON, Combined} {
		if got, err := Parse(f.String()); got != f || err != nil {
			t.Errorf("Parse(%q) = %v, %v", f.String(), got, err)
		}
	}
	for _, s := range []string{"", "JSON", "clf", "common"} {
		_, err := Parse(s)
		if err == nil || !strings.Contains(err.Error(), `"`+s+`"`) || !strings.Contains(err.Error(), "off, json or combined") {
			t.Errorf("Parse(%q): error %v should name the value and the choices", s, err)
		}
	}
}
