package accesslog

import (
	"strconv"
	"time"

	"srp/worker/observe"
)

// appendJSON appends r as one JSON object and a newline. The fields and
// their order are fixed, so log tools can rely on them.
func appendJSON(b []byte, r *observe.Request) []byte {
	b = append(b, `{"time":"`...)
	b = appendRFC3339Milli(b, r.Start)
	b = append(b, `","remote_ip":`...)
	b = appendJSONString(b, r.RemoteIP)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, r.Host)
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, r.URI)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, r.Proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, r.Bytes, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendThousandths(b, roundDiv(r.Duration, time.Microsecond))
	b = append(b, `,"backend":`...)
	b = appendJSONString(b, r.Backend)
	b = append(b, `,"retries":`...)
	b = strconv.AppendInt(b, int64(r.Retries), 10)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, r.RequestID)
	b = append(b, `,"tls":`...)
	b = strconv.AppendBool(b, r.TLS)
	return append(b, "}\n"...)
}

// appendCombined appends r in nginx's "combined" format followed by the
// request time in seconds, as nginx writes $request_time:
//
//	REMOTE_IP - - [02/Jan/2006:15:04:05 +0000] "METHOD URI PROTO" STATUS BYTES "REFERER" "USER_AGENT" SECONDS
//
// The time is in UTC. An empty remote address, referer or user agent is
// written as "-". Besides what nginx escapes, a space inside the remote
// address, method, URI or protocol is escaped too, so that splitting the
// request on its spaces always gives back the three parts.
func appendCombined(b []byte, r *observe.Request) []byte {
	b = appendCLFOrDash(b, r.RemoteIP, true)
	b = append(b, " - - ["...)
	b = appendCLFTime(b, r.Start)
	b = append(b, `] "`...)
	b = appendCLF(b, r.Method, true)
	b = append(b, ' ')
	b = appendCLF(b, r.URI, true)
	b = append(b, ' ')
	b = appendCLF(b, r.Proto, true)
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, r.Bytes, 10)
	b = append(b, ` "`...)
	b = appendCLFOrDash(b, r.Referer, false)
	b = append(b, `" "`...)
	b = appendCLFOrDash(b, r.UserAgent, false)
	b = append(b, `" `...)
	b = appendThousandths(b, roundDiv(r.Duration, time.Millisecond))
	return append(b, '\n')
}

func appendCLFOrDash(b []byte, s string, escapeSpace bool) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendCLF(b, s, escapeSpace)
}

// roundDiv is d in units of unit, rounded to nearest; a negative d (a
// clock step) counts as zero so that no line shows a negative time.
func roundDiv(d, unit time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + unit/2) / unit)
}

// appendThousandths appends n/1000 with exactly three decimals.
func appendThousandths(b []byte, n int64) []byte {
	b = strconv.AppendInt(b, n/1000, 10)
	b = append(b, '.')
	return appendDigits(b, int(n%1000), 3)
}

// appendDigits appends n, at least 0, as exactly width digits.
func appendDigits(b []byte, n, width int) []byte {
	for i := width - 1; i >= 0; i-- {
		b = append(b, 0)
	}
	for i := len(b) - 1; width > 0; i, width = i-1, width-1 {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return b
}

// The times are formatted by hand: time.AppendFormat parses its layout on
// every call, which would be a good part of a line's cost. Years outside
// 0000-9999 fall back to it.
// The two functions below share their shape on purpose: each reads top to
// bottom as the format it writes.

// appendRFC3339Milli appends t in UTC as 2006-01-02T15:04:05.000Z.
func appendRFC3339Milli(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1e6, 3)
	return append(b, 'Z')
}

const monthNames = "JanFebMarAprMayJunJulAugSepOctNovDec"

// appendCLFTime appends t in UTC as 02/Jan/2006:15:04:05 +0000.
func appendCLFTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, day, 2)
	b = append(b, '/')
	b = append(b, monthNames[3*(month-1):3*month]...)
	b = append(b, '/')
	b = appendDigits(b, year, 4)
	b = append(b, ':')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	return append(b, " +0000"...)
}
