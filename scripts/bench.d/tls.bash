# The TLS modes of scripts/bench, which sources this file after its own
# helpers are defined and calls tls_run, then tls_report.
#
# Every target but "direct" (the backends speak plain HTTP) serves HTTPS
# with the same self-signed ECDSA P-256 certificate for bench.test, made
# once per run by bench.d, and proxies to the same plain backends: srp in
# HTTPS mode with that certificate pre-filled in its autocert cache (-certs)
# and an ACME directory that is never contacted; nginx "listen ... ssl
# http2"; HAProxy "bind ... ssl crt ... alpn h2,http/1.1", one thread; Caddy
# "tls cert key" with HTTP/1.1 and HTTP/2; the Go baseline through net/http's
# own TLS and HTTP/2. Each server keeps its own TLS defaults (all choose
# TLS 1.3, X25519 and AES-128-GCM with these clients) and its own session
# tickets.
#
# Modes (TLS_MODES, in this order by default):
#   h1        HTTP/1.1 keep-alive, 64-byte answers: wrk, CONNS connections
#   h1-16k    the same with 16 KiB answers
#   h2        HTTP/2, 64-byte answers: h2load, CONNS connections x H2_STREAMS
#             concurrent streams (10)
#   handshake a full handshake per request: bench.d tlsload, CONNS clients,
#             each dialing, handshaking, asking one GET with Connection:
#             close and hanging up; no session is ever offered
#   resume    the same, each client offering the ticket of its previous
#             connection (TLS 1.3 PSK with X25519, as browsers resume)
# Why not wrk for the last two: wrk times a request from its write, so the
# connect and handshake are not in its latency, and on reconnecting it
# offers the previous session (SSL_clear keeps it), so it can only resume,
# silently. openssl s_time -new/-reuse handshakes one connection at a time
# and reports no latency. tlsload counts the connections the server really
# resumed (Go's ConnectionState.DidResume) out of those that offered a
# ticket (every one but each client's first); the tables show that share,
# and the report warns of a resume round below 99% or a full-handshake round
# with any.
#
# The load generator has one core too, and a handshake costs the client as
# much as the server (tlsload spends about 220 µs on a full one: X25519 and
# the check of the server's ECDSA signature), so at about 4,000 full
# handshakes a second the client's core is full. Every table shows the
# client's CPU share of its core (client%): near 100, req/s and latency are
# the client's limit; CPU µs per request is the target's either way.
#
# Each mode starts the targets afresh, warms each up for WARMUP with the
# mode's own load, runs TLS_ROUNDS interleaved rounds of TLS_DURATION, and
# stops them, so the peak RSS it reports (the sum of VmHWM over the target's
# whole process tree: srp's supervisor and worker, nginx's master and
# worker) belongs to that mode alone.
#
# Settings (environment): TLS (1; 0 skips these modes), TLS_MODES (above),
# TLS_TARGETS (TARGETS without direct), TLS_ROUNDS (EXTRA_ROUNDS),
# TLS_DURATION (EXTRA_DURATION if set, else 4s), H2_STREAMS (10), TLS_IDLE
# (1; 0 skips the idle HTTPS connections: IDLE_CONNS over HTTP/1.1, then
# over HTTP/2, measured as the plain ones are).

tls=${TLS:-1}
tls_modes=${TLS_MODES:-h1 h1-16k h2 handshake resume}
tls_targets=${TLS_TARGETS:-$(for t in $targets; do [ "$t" = direct ] || printf '%s ' "$t"; done)}
tls_rounds=${TLS_ROUNDS:-$extra_rounds}
# 4 s rounds by default keep a full run under 20 minutes.
tls_duration=${TLS_DURATION:-${EXTRA_DURATION:-4s}}
h2_streams=${H2_STREAMS:-10}
tls_idle=${TLS_IDLE:-1}
tls_name=bench.test # srp's HTTPS mode wants a dotted name, not an address
tls_dir= # set by tls_run
tls_tools=
[ "$tls" = 0 ] || tls_tools="h2load:nghttp2-client unshare:util-linux mount:mount"

# tls_mode MODE: "LOAD ARGS..." that measure runs for the mode.
tls_mode() {
	case $1 in
	h1) echo "wrk_tls /64" ;;
	h1-16k) echo "wrk_tls /16k" ;;
	h2) echo "h2load_tls /64" ;;
	handshake) echo "tlsload_tls /64" ;;
	resume) echo "tlsload_tls /64 -resume" ;;
	*) die "unknown TLS mode $1 (known: h1 h1-16k h2 handshake resume)" ;;
	esac
}

# tls_title MODE: what the mode's table is about.
tls_title() {
	case $1 in
	h1) echo "HTTPS, HTTP/1.1 keep-alive, 64-byte answers (wrk, $conns connections)" ;;
	h1-16k) echo "HTTPS, HTTP/1.1 keep-alive, 16 KiB answers (wrk, $conns connections)" ;;
	h2) echo "HTTPS, HTTP/2, 64-byte answers (h2load, $conns connections x $h2_streams streams)" ;;
	handshake) echo "HTTPS, a full TLS handshake per request, 64-byte answers (tlsload, $conns clients; latency from dial to last byte)" ;;
	resume) echo "HTTPS, a resumed TLS handshake per request (session ticket), 64-byte answers (tlsload -resume, $conns clients; resumed% of the connections offering a ticket)" ;;
	esac
}

# with_hosts CMD...: runs CMD where bench.test resolves to 127.0.0.1. wrk
# takes both the address and the SNI name from its one URL and has no
# --resolve or --connect-to; HOSTALIASES only maps names without a dot. So
# CMD runs in a mount namespace of its own in which a hosts file naming
# bench.test is bind-mounted over /etc/hosts: nothing outside that process
# sees it, and nothing is left behind. Root may do this; anyone else gets a
# user namespace for it.
with_hosts() {
	local userns=()
	[ "$(id -u)" = 0 ] || userns=(--map-root-user)
	unshare "${userns[@]}" --mount sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$tls_dir/hosts" "$@"
}

# wrk_tls NAME PATH DURATION: one wrk run over HTTPS with keep-alive.
wrk_tls() {
	local name=$1 path=$2 dur=$3 out
	out=$(with_hosts timeout $(($(seconds "$dur") + 30)) taskset -c "$load_cpu" \
		wrk -t1 -c"$conns" -d"$dur" --latency "https://$tls_name:${port[$name]}$path" 2>&1) ||
		die "wrk against $name failed: $out"
	wrk_summary "$out" || die "no requests completed against $name: $out"
}

# h2load_tls NAME PATH DURATION: one h2load run; --connect-to sends it to
# the target's port while SNI and :authority stay bench.test. Latency
# percentiles come from its per-request log (microseconds to the answer's
# end); the round fails unless HTTP/2 was negotiated.
h2load_tls() {
	local name=$1 path=$2 dur=$3 out log="$dir/h2load.log"
	out=$(timeout $(($(seconds "$dur") + 30)) taskset -c "$load_cpu" \
		h2load -t1 -c"$conns" -m"$h2_streams" -D "$dur" --connect-to "127.0.0.1:${port[$name]}" \
		--log-file "$log" "https://$tls_name:${port[$name]}$path" 2>&1) ||
		die "h2load against $name failed: $out"
	grep -q '^Application protocol: h2$' <<<"$out" || die "h2load against $name did not get HTTP/2: $out"
	local p50 p99
	read -r p50 p99 < <(awk '{print $3}' "$log" | sort -n |
		awk '{v[NR] = $1} END {if (NR) print v[int(0.5 * (NR - 1)) + 1], v[int(0.99 * (NR - 1)) + 1]}')
	rm -f "$log"
	awk -v p50="${p50:-0}" -v p99="${p99:-0}" '
		/^finished in/ { rps = $4 }
		/^requests:/ { reqs = $8; errs += $10 + $12 + $14 }
		/^status codes:/ { errs += $5 + $7 + $9 }
		END {
			if (reqs == 0) exit 1
			print reqs, rps, p50, p99, errs + 0
		}' <<<"$out" || die "no requests completed against $name: $out"
}

# tlsload_tls NAME PATH DURATION [-resume]: one bench.d tlsload run, a new
# connection per request; prints as the last field the share (%) of the
# connections that offered a session which the server resumed, or where none
# offered one (full handshakes), the share of all that were resumed.
tlsload_tls() {
	local name=$1 path=$2 dur=$3 out
	shift 3
	out=$(timeout $(($(seconds "$dur") + 30)) taskset -c "$load_cpu" \
		"$dir/bench.d" tlsload -addr "127.0.0.1:${port[$name]}" -name "$tls_name" -path "$path" \
		-c "$conns" -d "$dur" "$@" 2>&1) || die "tlsload against $name failed: $out"
	grep -v '^requests ' <<<"$out" >&2 || true # the first error, if any
	awk '$1 == "requests" {
			printf "%s %s %s %s %s %.1f\n", $2, $6, $8, $10, $12, $14 ? 100 * $16 / $14 : 100 * $16 / $2; found = 1
		}
		END { exit !found }' <<<"$out" || die "tlsload against $name printed no result: $out"
}

start_tls_srp() {
	cat >"$dir/srp-tls.json" <<-JSON
		{"Services": {"$tls_name": {"Backends": ["127.0.0.1:$b1", "127.0.0.1:$b2"]}}}
	JSON
	# The plain listener only redirects here; nothing is asked of the ACME
	# directory while the cached certificate is valid.
	start srp "$dir/srp" -c "$dir/srp-tls.json" -url "https://$tls_name" \
		-http-addr "127.0.0.1:${port[srp-http]}" -https-addr "127.0.0.1:${port[srp]}" \
		-certs "$tls_dir/srp-certs" -acme-directory https://127.0.0.1:1/dir -pidfile "$dir/srp.pid"
}

# wait_https NAME: waits until NAME answers over HTTPS with the bench
# certificate (curl checks it against that certificate alone).
wait_https() {
	wait_http "$1" --cacert "$tls_dir/cert.pem" --resolve "$tls_name:${port[$1]}:127.0.0.1" "https://$tls_name:${port[$1]}/64"
}

# alive PID: the process runs (a zombie does not).
alive() {
	local st
	st=$(ps -o stat= -p "$1") && [[ $st != Z* ]]
}

# stop NAME: stops a target started here and its whole tree, waiting up to
# 10 s for a clean exit before killing what is left of that tree.
stop() {
	local name=$1 main=${pid[$1]} procs p left deadline=$((SECONDS + 10)) keep=()
	procs=$(tree "$main")
	kill "$main" 2>/dev/null || true
	while :; do
		left=
		for p in $procs; do alive "$p" && left+=" $p"; done
		[ -n "$left" ] && [ $SECONDS -lt $deadline ] || break
		sleep 0.1
	done
	for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
	wait "$main" 2>/dev/null || true
	for p in "${pids[@]}"; do [ "$p" = "$main" ] || keep+=("$p"); done
	pids=("${keep[@]}")
}

# tree_hwm NAME: peak RSS in KiB, summed over the target's process tree.
tree_hwm() {
	local p sum=0 k
	for p in $(tree "${pid[$1]}"); do
		k=$(status_kib "$p" VmHWM 2>/dev/null) || continue
		sum=$((sum + ${k:-0}))
	done
	echo "$sum"
}

declare -A tls_rss

# tls_run: every TLS mode in turn over fresh TLS targets.
tls_run() {
	[ "$tls" != 0 ] && [ -n "$tls_targets" ] || return 0
	local mode name r load free
	tls_dir=$dir/tls
	mkdir -p "$tls_dir"
	"$dir/bench.d" cert -dir "$tls_dir" -name "$tls_name"
	printf '127.0.0.1 localhost\n127.0.0.1 %s\n' "$tls_name" >"$tls_dir/hosts"
	# The plain targets are done; stopping them keeps the core to the TLS ones.
	for name in $targets; do [ "$name" = direct ] || stop "$name"; done
	free=($("$dir/bench.d" ports -n 6))
	port[srp]=${free[0]} port[srp-http]=${free[1]} port[nginx]=${free[2]}
	port[haproxy]=${free[3]} port[caddy]=${free[4]} port[goproxy]=${free[5]}
	for mode in $tls_modes; do
		read -ra load <<<"$(tls_mode "$mode")"
		say "TLS $mode: $(tls_title "$mode")"
		for name in $tls_targets; do
			if [ "$name" = srp ]; then start_tls_srp; else "start_$name" tls; fi
			wait_https "$name"
		done
		for name in $tls_targets; do measure tls-warmup "$name" "${load[0]}" "${load[1]}" "$warmup" "${load[@]:2}"; done
		for ((r = 1; r <= tls_rounds; r++)); do
			say "  $mode round $r/$tls_rounds"
			for name in $tls_targets; do
				measure "tls-$mode" "$name" "${load[0]}" "${load[1]}" "$tls_duration" "${load[@]:2}"
			done
		done
		for name in $tls_targets; do
			tls_rss[$mode,$name]=$(tree_hwm "$name")
			stop "$name"
		done
	done
	[ "$tls_idle" = 0 ] || tls_idle_run
}

declare -A tls_idle_kib

# tls_idle_run: the plain idle measurement over HTTPS, HTTP/1.1 and then
# HTTP/2, each on a target started afresh.
tls_idle_run() {
	local name proto before after settled
	say "TLS idle: $idle_conns idle HTTPS connections, then as many again after $idle_settle"
	for proto in h1 h2; do
		for name in $tls_targets; do
			if [ "$name" = srp ]; then start_tls_srp; else "start_$name" tls; fi
			wait_https "$name"
			read -r before after settled < <(taskset -c "$load_cpu" "$dir/bench.d" idle -tls "-h2=$([ "$proto" = h2 ] && echo true || echo false)" \
				-addr "127.0.0.1:${port[$name]}" -host "$tls_name" -n "$idle_conns" \
				-pid "$(serving "$name")" -settle "$idle_settle") ||
				{ say "idle $proto connections to $name failed"; before=0 after=0 settled=0; }
			tls_idle_kib[$proto,$name]="$before $after $settled"
			stop "$name"
		done
	done
}

# tls_report: a table per TLS mode, then srp's figures over each peer's.
tls_report() {
	[ "$tls" != 0 ] && [ -n "$tls_targets" ] || return 0
	local mode name peer phase res
	printf '\nTLS: one self-signed ECDSA P-256 certificate for %s; %s; %s; median of %s x %s per mode;\n' \
		"$tls_name" "$(version h2load --version)" "$(openssl version | cut -d" " -f1,2)" "$tls_rounds" "$tls_duration"
	printf 'peak RSS summed over the whole process tree, targets started afresh for each mode;\n'
	printf 'srp/PEER rows: srp'"'"'s figure over the peer'"'"'s (above 1 favours srp for req/s, below 1 for the rest);\n'
	printf 'client%%: the load generator'"'"'s CPU over the round, on its one core (near 100, req/s is the client'"'"'s limit)\n'
	for mode in $tls_modes; do
		phase=tls-$mode res=
		[[ $mode == handshake || $mode == resume ]] && res=1
		printf '\n%s\n' "$(tls_title "$mode")"
		printf '%-12s %9s %9s %9s %8s %8s %5s %7s %7s %7s' target req/s p50_us p99_us cpu_us rss_MiB sys% csw/req errors client%
		[ -n "$res" ] && printf ' %8s' resumed%
		printf '\n'
		for name in $tls_targets; do
			printf '%-12s %9.0f %9.0f %9.0f %8.1f %8.1f %5.0f %7.2f %7s %7.0f' "$name" \
				"$(median "$phase" "$name" 3)" "$(median "$phase" "$name" 4)" "$(median "$phase" "$name" 5)" \
				"$(median "$phase" "$name" 6)" "$(awk -v k="${tls_rss[$mode,$name]}" 'BEGIN {print k / 1024}')" \
				"$(median "$phase" "$name" 9)" "$(median "$phase" "$name" 10)" "$(errors "$phase" "$name")" \
				"$(median "$phase" "$name" 12)"
			[ -n "$res" ] && printf ' %8.1f' "$(median "$phase" "$name" 11)"
			printf '\n'
		done
		[[ " $tls_targets " == *" srp "* ]] || continue
		for peer in $tls_targets; do
			[ "$peer" = srp ] && continue
			printf '%-12s %9s %9s %9s %8s %8s\n' "srp/$peer" \
				"$(ratio "$(median "$phase" srp 3)" "$(median "$phase" "$peer" 3)")" \
				"$(ratio "$(median "$phase" srp 4)" "$(median "$phase" "$peer" 4)")" \
				"$(ratio "$(median "$phase" srp 5)" "$(median "$phase" "$peer" 5)")" \
				"$(ratio "$(median "$phase" srp 6)" "$(median "$phase" "$peer" 6)")" \
				"$(ratio "${tls_rss[$mode,srp]}" "${tls_rss[$mode,$peer]}")"
		done
	done
	[ "$tls_idle" = 0 ] || tls_idle_report
	tls_check_resumption
}

tls_idle_report() {
	local name proto before after settled
	printf '\n%s idle HTTPS keep-alive connections (RSS of the serving process), then %s more after %s\n' \
		"$idle_conns" "$idle_conns" "$idle_settle"
	printf '%-8s %-5s %10s %10s %12s %10s %12s\n' target proto before_KiB after_KiB KiB_per_conn then_KiB settled_KiB
	for proto in h1 h2; do
		for name in $tls_targets; do
			read -r before after settled <<<"${tls_idle_kib[$proto,$name]}"
			printf '%-8s %-5s %10s %10s %12.1f %10s %12.1f\n' "$name" "$proto" "$before" "$after" \
				"$(awk -v a="$after" -v b="$before" -v n="$idle_conns" 'BEGIN {print (a - b) / n}')" "$settled" \
				"$(awk -v a="$settled" -v b="$after" -v n="$idle_conns" 'BEGIN {print (a - b) / n}')"
		done
	done
}

# tls_check_resumption: says so when a resume round resumed less than 99%
# of the connections that offered a ticket, or a full-handshake round
# resumed any.
tls_check_resumption() {
	awk -F'\t' '
		$1 == "tls-resume" && $11 < 99 { printf "warning: %s resumed only %s%% of the connections that offered a ticket\n", $2, $11 }
		$1 == "tls-handshake" && $11 > 0 { printf "warning: %s resumed %s%% of its connections without being offered a session\n", $2, $11 }
	' "$dir/results.tsv"
}

# Settings that would fail only after the plain modes fail now instead.
if [ "$tls" != 0 ]; then
	for m in $tls_modes; do tls_mode "$m" >/dev/null; done
	[[ " $tls_targets " != *" direct "* ]] || die "TLS_TARGETS: direct (the backend) serves plain HTTP only"
fi
