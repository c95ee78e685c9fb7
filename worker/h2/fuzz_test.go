//lint:file-ignore SA1019 x/net's HTTP/2 server, on a plain connection, is the reference the server is held to

package h2

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzDifferential holds the server to x/net's: a client script decoded
// from the input is played against each, both serving fuzzEcho, and what
// became of every request and of the connection must agree, but for the
// deliberate differences normalised below.
//
// Outcomes must not depend on goroutine scheduling, so after each frame
// the client waits for a PING's ACK and for every request it has finished
// to be answered, then for one more ACK, as net/http forgets a stream only
// once the frame ending it is written. And it sends nothing on a stream it
// knows closed (RFC 9113 5.1), where the servers could differ only in
// timing.
func FuzzDifferential(f *testing.F) {
	f.Add([]byte{})                                                                         // GET
	f.Add([]byte{0, 0, endOnData, 0, 2, 3, 4, 1, 0, 0, 0, 0, 1, 16})                        // POST, two DATA, Content-Length
	f.Add([]byte{0, 0, endTrailers, 0, 1, 2, 1, 1, 0, 0, 0, 2, 23, 13, 0})                  // trailers
	f.Add([]byte{0, 1, endReset, 1, 1, 3, 1, 0, 0, 0, 0, 0, endOnHeaders})                  // reset mid-body, then GET
	f.Add([]byte{1, 3, 0, 0, endOnData, 0, 1, 3, 1, 0, 0, 0, 0, 0, 0, 5, 0, 1, 7, 2, 1, 0}) // window 0, PING, WINDOW_UPDATE
	f.Add([]byte{0, 0, endOnHeaders, 0, 0, 0, 0, 0, 0, 2, 8, 0})                            // Connection: close

	srp := &Server{Handler: http.HandlerFunc(fuzzEcho), MaxHeaderBytes: fuzzMaxHeaderBytes, Log: slog.New(slog.DiscardHandler)}
	ref, refOpts := new(http2.Server), &http2.ServeConnOpts{Handler: http.HandlerFunc(fuzzEcho),
		BaseConfig: &http.Server{MaxHeaderBytes: fuzzMaxHeaderBytes, ErrorLog: log.New(io.Discard, "", 0)}}
	serve := [2]func(net.Conn){srp.ServeConn, func(c net.Conn) { ref.ServeConn(c, refOpts) }}
	var lns [2]net.Listener
	for i := range lns {
		var err error
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { _ = lns[i].Close() })
	}
	var lingering sync.WaitGroup
	f.Cleanup(lingering.Wait)
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, plans := decodeScript(data)
		var res [2][]string
		var wg sync.WaitGroup
		for i := range res {
			wg.Go(func() { res[i] = fuzzPlay(t, lns[i], serve[i], ops, len(plans), i == 1, &lingering) })
		}
		wg.Wait()
		got, want := res[0], res[1]
		if got == nil || want == nil {
			return // fuzzPlay said why
		}
		for i, p := range plans {
			// RFC 9113 8.2.2 makes these requests malformed, which 8.1.1
			// makes a stream error; net/http answers 400 instead.
			if p.h1only && strings.HasPrefix(want[i], "400 ") && got[i] == "reset" {
				want[i] = "reset"
			}
			// 8.1.1 makes a Content-Length other than the body's length
			// malformed too; net/http only minds the body running past it.
			// A Content-Length field elsewhere in the script can reach this
			// head through the HPACK table the client's encoder keeps for
			// heads it then left unsent; srp's reset is then 8.1.1's too.
			if (p.clBad || anyLength(plans) || lengthMismatch(want[i])) && got[i] == "reset" {
				want[i] = "reset"
			}
			// Malformed trailers behind a head answered at once (431):
			// net/http resets the stream if they come before its
			// handler's answer, which runs on a goroutine of its own.
			early := func(o string) bool { return o == "431" || o == "reset" }
			if p.end == endTrailersOpen && early(got[i]) && early(want[i]) {
				want[i] = got[i]
			}
			// Trailers on a stream the server has answered early and
			// reset: srp drops them, as RFC 9113 5.1 says; net/http does
			// while its reset is queued, and ends the connection after.
			last := len(want) - 1
			if (p.end == endTrailers || p.end == endTrailersOpen) && want[last] == "connection: GOAWAY PROTOCOL_ERROR" && got[last] == "connection: " {
				want[last] = got[last]
			}
		}
		if !slices.Equal(got, want) {
			var s strings.Builder
			for _, o := range ops {
				s.WriteString("\n  " + o.desc)
			}
			t.Errorf("script:%s\nsrp:\n  %s\nnet/http:\n  %s", &s, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	})
}

// anyLength reports whether a head of the script has a Content-Length.
func anyLength(plans []*fuzzPlan) bool {
	for _, p := range plans {
		for _, f := range p.head {
			if f.Name == "content-length" {
				return true
			}
		}
	}
	return false
}

// lengthMismatch reports whether an echoed request declared a
// Content-Length other than the body it had: HPACK's table can bring a
// field into a head that its plan did not list.
func lengthMismatch(echo string) bool {
	m := echoLength.FindStringSubmatch(echo)
	return m != nil && m[1] != m[2]
}

var echoLength = regexp.MustCompile(`Content-Length: \[\\?"([^"\\]*)\\?"\](?s:.*)body (\d+) `)

// fuzzEcho answers with what the request looked like to the handler.
func fuzzEcho(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// A bad body is a reset from one server and a failed Read from
		// the other: aborting makes both a reset.
		panic(http.ErrAbortHandler)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q %q %q %d\n", r.Method, r.RequestURI, r.URL.String(), r.Host, r.ContentLength)
	for _, k := range slices.Sorted(maps.Keys(r.Header)) {
		fmt.Fprintf(&b, "%s: %q\n", k, r.Header[k])
	}
	fmt.Fprintf(&b, "body %d %08x\n", len(body), crc32.ChecksumIEEE(body))
	for _, k := range slices.Sorted(maps.Keys(r.Trailer)) {
		fmt.Fprintf(&b, "trailer %s: %q\n", k, r.Trailer[k])
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

const (
	fuzzMaxHeaderBytes = 512 // a head with the long field is too much: 431
	fuzzDeadline       = 2 * time.Second
	fuzzMaxControl     = 8 // PING, SETTINGS and WINDOW_UPDATE frames in a script
)

// How the client ends a request.
const (
	endOnHeaders    = iota // no body
	endOnData              // END_STREAM on the last DATA
	endTrailers            // a HEADERS frame after the body
	endTrailersOpen        // the same without END_STREAM: malformed
	endReset               // RST_STREAM after the body so far
)

var (
	fuzzMethods = []string{"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS", "get", ""}
	fuzzPaths   = []string{"/", "/a/b?q=1", "*", "", "rel", "/%zz", "//x", "/a#f"}
	fuzzSchemes = []string{"https", "http", "ftp", ""}
	fuzzAuths   = []string{"example.com", "example.com:443", "", "u@example.com", "bad host", "[::1]:8"}
	// Content-Length "=" is the body's length, "+" one more.
	fuzzFields = [][2]string{{"user-agent", "fuzz"}, {"accept", "*/*"}, {"cookie", "a=1"}, {"cookie", "b=2"},
		{"x-empty", ""}, {"X-Upper", "1"}, {"x-dup", "1"}, {"x-dup", "2"}, {"connection", "close"},
		{"keep-alive", "5"}, {"proxy-connection", "x"}, {"transfer-encoding", "chunked"}, {"upgrade", "h2c"},
		{"te", "trailers"}, {"te", "gzip"}, {"te", ""}, {"content-length", "="}, {"content-length", "+"},
		{"content-length", "x"}, {"content-length", "0"}, {"host", "example.com"}, {"host", "other.example"},
		{"expect", "100-continue"}, {"trailer", "x-t"}, {"trailer", "x-t, content-length"},
		{"trailer", "authorization"}, {"x-long", strings.Repeat("l", 700)}, {":path", "/p"},
		{":method", "GET"}, {":protocol", "websocket"}, {"x-bad", "a\x01b"}}
	fuzzTrailers = [][2]string{{"x-t", "1"}, {"x-u", "2"}, {"content-length", "0"}, {"authorization", "z"},
		{":path", "/"}, {"x-t", ""}, {"X-T", "u"}}
	fuzzSettings = []struct {
		id   http2.SettingID
		vals []uint32
	}{{http2.SettingHeaderTableSize, []uint32{0, 4096, 1 << 16}}, {http2.SettingEnablePush, []uint32{0, 1, 2}},
		{http2.SettingMaxConcurrentStreams, []uint32{0, 100}},
		{http2.SettingInitialWindowSize, []uint32{0, 1, 100, 65535, 1 << 20, 1<<31 - 1, 1 << 31}},
		{http2.SettingMaxFrameSize, []uint32{16384, 16383, 1 << 20, 1 << 24}},
		{http2.SettingMaxHeaderListSize, []uint32{100, 1 << 20}}, {http2.SettingEnableConnectProtocol, []uint32{0, 1, 2}},
		{http2.SettingNoRFC7540Priorities, []uint32{0, 1, 2}}, {0x99, []uint32{7}}}
	fuzzIncrements = []uint32{1, 1000, 65535, 0, 1<<31 - 1}
)

// fuzzPlan is one request of the script.
type fuzzPlan struct {
	head, trailers []hpack.HeaderField
	chunks         []int // DATA payload sizes
	end            int
	pad            []byte
	h1only, clBad  bool // has a field net/http answers 400 for; a Content-Length not the body's
	big            bool // too large a head
	step, steps    int
	id             uint32
}

func decodePlan(pick func(int) int) *fuzzPlan {
	p := &fuzzPlan{end: pick(5), pad: make([]byte, 3*pick(2))}
	if p.end != endOnHeaders {
		for n := pick(4); n > 0; n-- {
			p.chunks = append(p.chunks, []int{0, 1, 7, 100, 1000}[pick(5)])
		}
	}
	hf := func(k, v string) hpack.HeaderField { return hpack.HeaderField{Name: k, Value: v} }
	m, pa := hf(":method", fuzzMethods[pick(8)]), hf(":path", fuzzPaths[pick(8)])
	s, a := hf(":scheme", fuzzSchemes[pick(4)]), hf(":authority", fuzzAuths[pick(6)])
	p.head = [][]hpack.HeaderField{{m, s, pa, a}, {m, pa, a}, {m, s, pa}, {a, m, s, pa}, {m, s, pa, pa},
		{m, a}, {s, pa, a}, {m, s, pa, a, m}}[pick(8)]
	tes := 0
	for n := pick(6); n > 0; n-- {
		f := fuzzFields[pick(len(fuzzFields))]
		switch f[0] {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			p.h1only = true
		case "te":
			tes++
			p.h1only = p.h1only || (f[1] != "trailers" && f[1] != "") || tes > 1
		}
		p.big = p.big || f[0] == "x-long"
		p.head = append(p.head, hf(f[0], f[1]))
	}
	if p.big || p.h1only || tes > 1 { // a server may answer at once: a body would race with the answer
		p.end, p.chunks = endOnHeaders, nil
	}
	if p.end == endOnData && len(p.chunks) == 0 {
		p.chunks = []int{0}
	}
	n := 0
	for _, c := range p.chunks {
		n += c
	}
	for i, f := range p.head {
		if f.Name == "content-length" && (f.Value == "=" || f.Value == "+") {
			p.head[i].Value = strconv.Itoa(n + strings.Count(f.Value, "+"))
		}
		p.clBad = p.clBad || f.Name == "content-length" && p.head[i].Value != strconv.Itoa(n)
	}
	p.steps = 1 + len(p.chunks)
	if p.end >= endTrailers {
		p.steps++
	}
	if p.end == endTrailers || p.end == endTrailersOpen {
		for k := 1 + pick(3); k > 0; k-- {
			f := fuzzTrailers[pick(len(fuzzTrailers))]
			p.trailers = append(p.trailers, hf(f[0], f[1]))
		}
	}
	return p
}

// fuzzOp is a step of the script: its frames, and what they mean to the client.
type fuzzOp struct {
	desc        string
	frames, alt []byte // alt, when set, goes to net/http instead
	plan        int    // the request it advances, or -1
	id          uint32 // the stream it is on
	open        bool   // it opens the request's stream
	ends, reset bool   // the client has finished the request, or given up on it
	win, peak   int64  // the SETTINGS_INITIAL_WINDOW_SIZE it leaves and the highest on the way, or -1
	inc         int64  // a WINDOW_UPDATE's increment
}

func decodeScript(data []byte) (ops []fuzzOp, plans []*fuzzPlan) {
	pick := func(n int) int {
		if len(data) == 0 {
			return 0
		}
		v := int(data[0])
		data = data[1:]
		return v % n
	}
	var buf, hbuf bytes.Buffer
	fr, henc := http2.NewFramer(&buf, nil), hpack.NewEncoder(&hbuf)
	fr.AllowIllegalWrites = true
	add := func(o fuzzOp, desc string, args ...any) {
		o.desc, o.frames = fmt.Sprintf(desc, args...), bytes.Clone(buf.Bytes())
		ops = append(ops, o)
		buf.Reset()
	}
	block := func(fields []hpack.HeaderField, skippable bool) []byte {
		hbuf.Reset()
		for _, f := range fields {
			f.Sensitive = skippable // a block the client may skip must leave the HPACK table alone
			_ = henc.WriteField(f)
		}
		return hbuf.Bytes()
	}
	settingsOp(pick, fr, add)
	plans = make([]*fuzzPlan, 1+pick(4))
	for i := range plans {
		plans[i] = decodePlan(pick)
	}
	for nextID, control := uint32(1), 0; ; {
		i := slices.IndexFunc(plans, func(p *fuzzPlan) bool { return p.step < p.steps })
		if i < 0 {
			return ops, plans
		}
		b := pick(256)
		if j := b / 8 % len(plans); plans[j].step < plans[j].steps {
			i = j
		}
		o, p := fuzzOp{plan: -1, win: -1, peak: -1}, plans[i]
		if b%8 < 5 || control == fuzzMaxControl {
			o.plan, o.id, p.step = i, p.id, p.step+1
		} else {
			control++
		}
		switch {
		case b%8 == 5 && o.plan < 0:
			// A plain PING, an ACK of none, or one on a stream (malformed).
			k, payload := pick(3), [8]byte{byte(pick(128))}
			_ = fr.WriteRawFrame(http2.FramePing, http2.Flags(k&1), uint32(k>>1), payload[:])
			add(o, "PING kind=%d", k)
		case b%8 == 6 && o.plan < 0:
			settingsOp(pick, fr, add)
		case b%8 == 7 && o.plan < 0:
			inc := fuzzIncrements[pick(len(fuzzIncrements))]
			if t := pick(4); t == 3 {
				o.id = nextID + 2 // idle
			} else if t > 0 {
				o.id = plans[pick(len(plans))].id
			}
			_ = fr.WriteWindowUpdate(o.id, inc)
			o.inc = int64(inc)
			add(o, "WINDOW_UPDATE id=%d +%d", o.id, inc)
		case p.step == 1:
			p.id, o.id, o.open, o.ends, nextID = nextID, nextID, true, p.end == endOnHeaders, nextID+2
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: p.id, BlockFragment: block(p.head, false),
				EndStream: o.ends, EndHeaders: true})
			add(o, "HEADERS s%d id=%d end=%v %s", i, p.id, o.ends, fieldsDesc(p.head))
		case p.step <= 1+len(p.chunks):
			data := bytes.Repeat([]byte{byte('a' + p.step)}, p.chunks[p.step-2])
			o.ends = p.step == p.steps && p.end == endOnData
			_ = fr.WriteDataPadded(p.id, o.ends, data, p.pad)
			add(o, "DATA s%d %dB end=%v pad=%d", i, len(data), o.ends, len(p.pad))
		case p.end == endReset:
			_ = fr.WriteRSTStream(p.id, http2.ErrCodeCancel)
			o.reset = true
			add(o, "RST_STREAM s%d", i)
		default:
			o.ends = true
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: p.id, BlockFragment: block(p.trailers, true),
				EndStream: p.end == endTrailers, EndHeaders: true})
			add(o, "HEADERS s%d trailers end=%v %s", i, p.end == endTrailers, fieldsDesc(p.trailers))
		}
	}
}

func fieldsDesc(fields []hpack.HeaderField) string {
	var s []string
	for _, f := range fields {
		s = append(s, fmt.Sprintf("%s=%.12q", f.Name, f.Value))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func settingsOp(pick func(int) int, fr *http2.Framer, add func(fuzzOp, string, ...any)) {
	var ss []http2.Setting
	o, ids := fuzzOp{plan: -1, win: -1, peak: -1}, map[http2.SettingID]bool{}
	for n := pick(4); n > 0; n-- {
		s := fuzzSettings[pick(len(fuzzSettings))]
		ss = append(ss, http2.Setting{ID: s.id, Val: s.vals[pick(len(s.vals))]})
		ids[s.id] = true
	}
	for _, s := range ss {
		if s.Valid() != nil {
			break
		}
		if s.ID == http2.SettingInitialWindowSize {
			o.win, o.peak = int64(s.Val), max(o.peak, int64(s.Val))
		}
	}
	if len(ids) < len(ss) {
		// net/http hangs up on a SETTINGS frame that repeats a parameter;
		// srp applies the values in order, as RFC 9113 6.5.3 has it. So
		// net/http gets a frame per value or, where the Framer refuses the
		// whole frame for its first window size, that alone.
		alt, each := ss, new(bytes.Buffer)
		if i := slices.IndexFunc(ss, func(s http2.Setting) bool { return s.ID == http2.SettingInitialWindowSize }); i >= 0 && ss[i].Val > 1<<31-1 {
			alt = ss[i : i+1]
		}
		for _, s := range alt {
			_ = http2.NewFramer(each, nil).WriteSettings(s)
		}
		o.alt = each.Bytes()
	}
	_ = fr.WriteSettings(ss...)
	add(o, "SETTINGS %v", ss)
}

// fuzzOutcome is what became of one request, as the client saw it.
type fuzzOutcome struct {
	status      string
	fields      []string
	body        []byte
	done, reset bool // the answer ended; the server reset the stream
	ended, gone bool // the client finished the request; reset it
}

func (o *fuzzOutcome) String() string {
	switch {
	case o.done && o.status == "431":
		return "431" // the body is each server's own error page
	case o.done:
		return fmt.Sprintf("%s %q %q", o.status, o.fields, o.body)
	case o.reset:
		return "reset"
	case o.gone:
		return "cancelled"
	}
	return "no answer"
}

// fuzzPeer is the client's side of a connection.
type fuzzPeer struct {
	fr         *http2.Framer
	out        []fuzzOutcome
	ids        map[uint32]int   // stream to request
	credit     map[uint32]int64 // stream to window granted beyond SETTINGS_INITIAL_WINDOW_SIZE
	closed     map[uint32]bool  // reset by either side
	win        int64            // SETTINGS_INITIAL_WINDOW_SIZE
	seq, acked uint64           // barrier PINGs
	end        string           // how the connection ended
}

// fuzzPlay plays the script on a connection to ln, served by serve, and
// returns what became of each request, then of the connection.
func fuzzPlay(t *testing.T, ln net.Listener, serve func(net.Conn), ops []fuzzOp, n int, ref bool, lingering *sync.WaitGroup) []string {
	c, err := net.Dial("tcp", ln.Addr().String())
	var sc net.Conn
	if err == nil {
		sc, err = ln.Accept()
	}
	if err != nil {
		t.Error(err)
		return nil
	}
	served := make(chan struct{})
	go func() { defer close(served); serve(sc) }()
	defer func() {
		_ = c.Close()
		if ref {
			// net/http keeps a connection for a second after a connection
			// error, whatever the client does.
			lingering.Go(func() { <-served })
			return
		}
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("srp kept the connection after the client left")
		}
	}()
	_ = c.SetDeadline(time.Now().Add(fuzzDeadline))
	p := &fuzzPeer{fr: http2.NewFramer(c, c), out: make([]fuzzOutcome, n), ids: map[uint32]int{},
		credit: map[uint32]int64{}, closed: map[uint32]bool{}, win: 65535}
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.fr.SetMaxReadFrameSize(1<<24 - 1)
	_, _ = io.WriteString(c, http2.ClientPreface)
	for _, o := range ops {
		if i, ok := p.ids[o.id]; p.closed[o.id] || ok && p.out[i].done && p.out[i].ended {
			continue
		}
		if ref && p.overflows(o.peak) {
			// RFC 9113 6.9.2 makes this a connection error; net/http
			// notices only when it next uses the window.
			p.end = "GOAWAY FLOW_CONTROL_ERROR"
			break
		}
		if o.plan >= 0 {
			s := &p.out[o.plan]
			if o.open {
				p.ids[o.id] = o.plan
			}
			s.ended, s.gone = s.ended || o.ends, s.gone || o.reset
		}
		p.closed[o.id] = p.closed[o.id] || o.reset
		p.credit[o.id] += o.inc
		if o.win >= 0 {
			p.win = o.win
		}
		b := o.frames
		if ref && o.alt != nil {
			b = o.alt
		}
		if _, err := c.Write(b); err != nil || !p.barrier() {
			break
		}
	}
	res := make([]string, 0, n+1)
	for i := range p.out {
		res = append(res, p.out[i].String())
	}
	return append(res, "connection: "+p.end)
}

// overflows says whether a SETTINGS_INITIAL_WINDOW_SIZE of win overflows
// the window of a stream the server still holds.
func (p *fuzzPeer) overflows(win int64) bool {
	for id, i := range p.ids {
		if o := p.out[i]; win+p.credit[id] > 1<<31-1 && !p.closed[id] && !(o.done && o.ended) {
			return true
		}
	}
	return false
}

// barrier returns once the server has acted on all the client sent, or
// false if the connection ended first.
func (p *fuzzPeer) barrier() bool {
	waiting := func() bool {
		return slices.ContainsFunc(p.out, func(o fuzzOutcome) bool { return o.ended && !o.gone && !o.done && !o.reset })
	}
	for {
		settled := !waiting()
		p.seq++
		var data [8]byte
		binary.BigEndian.PutUint64(data[:], 0xff<<56|p.seq)
		_ = p.fr.WritePing(false, data)
		for p.acked != p.seq || !settled && waiting() {
			if !p.read() {
				return false
			}
		}
		if settled {
			return true
		}
	}
}

// read takes a frame from the server, or says the connection ended.
func (p *fuzzPeer) read() bool {
	f, err := p.fr.ReadFrame()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		p.end = "timeout"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
		p.end = "closed"
	case err != nil:
		p.end = err.Error()
	}
	if err != nil {
		return false
	}
	var o *fuzzOutcome
	if i, ok := p.ids[f.Header().StreamID]; ok && !p.out[i].gone {
		o = &p.out[i]
	}
	switch f := f.(type) {
	case *http2.GoAwayFrame:
		p.end = "GOAWAY " + f.ErrCode.String()
		return false
	case *http2.PingFrame:
		if f.IsAck() && f.Data[0] == 0xff {
			p.acked = binary.BigEndian.Uint64(f.Data[:]) &^ (0xff << 56)
		}
	case *http2.SettingsFrame: // each server's own values: srp's windows differ
		if !f.IsAck() {
			_ = p.fr.WriteSettingsAck()
		}
	case *http2.RSTStreamFrame:
		p.closed[f.StreamID] = true
		if o != nil {
			o.reset = true
		}
	case *http2.DataFrame:
		p.credit[f.StreamID] -= int64(f.Length)
		if o != nil && !o.done {
			o.body, o.done = append(o.body, f.Data()...), f.StreamEnded()
		}
	case *http2.MetaHeadersFrame:
		status := f.PseudoValue("status")
		if o == nil || o.done || o.status == "" && strings.HasPrefix(status, "1") {
			break // RFC 9110 15.2.1 lets a server skip 100 (Continue) once the body is in
		}
		if o.status == "" && !f.StreamEnded() && p.win < 4096 {
			// Let the answer through; the window stays far from overflowing.
			_ = p.fr.WriteWindowUpdate(f.StreamID, 1<<16)
			p.credit[f.StreamID] += 1 << 16
		}
		for _, hf := range f.RegularFields() {
			if hf.Name != "date" && o.status != "" {
				o.fields = append(o.fields, "trailer "+hf.Name+": "+hf.Value)
			} else if hf.Name != "date" {
				o.fields = append(o.fields, hf.Name+": "+hf.Value)
			}
		}
		slices.Sort(o.fields)
		o.status, o.done = cmp.Or(o.status, status), f.StreamEnded()
	}
	return true
}
