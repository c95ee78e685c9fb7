package status

import "html/template"

// page is the status page. Every element a test or a script may look for
// carries a stable attribute: data-service (a service's name),
// data-backend (a backend's address), data-state (up, down, degraded,
// none, or a certificate's ok, soon, expired) and data-cert (a host).
// State is always written out as text as well as coloured.
var page = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>srp status</title>
<style>
:root{color-scheme:light dark;--ok:#137333;--bad:#c5221f;--warn:#a35d00;--line:#8884;--dim:#666}
@media (prefers-color-scheme:dark){:root{--ok:#5bd17b;--bad:#ff7b72;--warn:#e3a23a;--dim:#aaa}}
*{box-sizing:border-box}
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;padding:.75rem;max-width:44rem}
h1{font-size:1.2rem;margin:0}
h2{font-size:1.05rem;margin:0;overflow-wrap:anywhere}
header p,footer,.note{color:var(--dim);font-size:.85rem;margin:.2rem 0}
section{border:1px solid var(--line);border-radius:.5rem;padding:.6rem .7rem;margin:.75rem 0}
.head{display:flex;justify-content:space-between;align-items:baseline;gap:.5rem}
.badge{font-weight:700;font-size:.8rem;white-space:nowrap;padding:.1rem .4rem;border-radius:.3rem;border:1px solid currentColor}
[data-state=up]>.head .badge,.backend[data-state=up] .mark,[data-state=ok] .left{color:var(--ok)}
[data-state=down]>.head .badge,.backend[data-state=down] .mark,[data-state=expired] .left{color:var(--bad)}
[data-state=degraded]>.head .badge,[data-state=soon] .left{color:var(--warn)}
[data-state=none]>.head .badge{color:var(--dim)}
dl{display:grid;grid-template-columns:repeat(4,1fr);gap:.3rem;margin:.5rem 0}
dt{font-size:.75rem;color:var(--dim)}
dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums}
ul{list-style:none;margin:.3rem 0 0;padding:0}
li{display:flex;flex-wrap:wrap;gap:0 .5rem;align-items:baseline;padding:.3rem 0;border-top:1px solid var(--line)}
.mark{font-weight:700;font-size:.9rem;min-width:3.9rem}
code{font-size:.85rem;flex:1 0 auto;max-width:100%;overflow-wrap:anywhere}
.rates{font-size:.8rem;font-variant-numeric:tabular-nums;white-space:nowrap;margin-left:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
td{padding:.3rem .2rem;border-top:1px solid var(--line);overflow-wrap:anywhere}
</style>
</head>
<body>
<header>
<h1>srp status</h1>
<p>{{if .Version}}version <span id="version">{{.Version}}</span> · {{end}}up <span id="uptime">{{.Uptime}}</span> · {{.At}}</p>
<p>Rates: <span id="window">{{.Window}}</span>. Refreshes every {{.Refresh}} s.</p>
</header>
<main id="services">
{{- range .Services}}
<section class="service" data-service="{{.Name}}" data-state="{{.State}}">
<div class="head"><h2>{{.Name}}</h2><span class="badge">{{.Label}}</span></div>
<p class="note">{{.Summary}}</p>
<dl>
<div><dt>requests</dt><dd class="req">{{.Req}}</dd></div>
<div><dt>errors</dt><dd class="err">{{.Err}}</dd></div>
<div><dt>p50</dt><dd class="p50">{{.P50}}</dd></div>
<div><dt>p99</dt><dd class="p99">{{.P99}}</dd></div>
</dl>
<p class="note">latency over {{.Latency}}</p>
{{- if .Backends}}
<ul class="backends">
{{- range .Backends}}
<li class="backend" data-backend="{{.Addr}}" data-state="{{.State}}"><span class="mark">{{if eq .State "up"}}▲{{else}}▼{{end}} {{.Label}}</span><code>{{.Addr}}</code><span class="rates">{{.Req}} · {{.Err}} failed</span></li>
{{- end}}
</ul>
{{- end}}
</section>
{{- else}}
<p>No services.</p>
{{- end}}
</main>
{{- if .HasCerts}}
<section id="certs">
<h2>Certificates</h2>
{{- if .Certs}}
<table>
{{- range .Certs}}
<tr class="cert" data-cert="{{.Host}}" data-state="{{.State}}"><td>{{.Host}}</td><td class="left">{{.Left}}</td><td>{{.Expires}}</td></tr>
{{- end}}
</table>
{{- else}}
<p class="note">No certificate held yet.</p>
{{- end}}
</section>
{{- end}}
<footer>
<p>Errors are 5xx answers and failed backend attempts; a backend's figures are its attempts and failed attempts per second.</p>
<p>Requests no service answered (404s, this API): <span id="unrouted">{{.Unrouted}}</span>.</p>
</footer>
</body>
</html>
`))
