# Starting and stopping `missive serve` processes for the benchmark scripts. Source it from
# the repository root after building target/release/missive. It makes a work directory,
# removed (with every process started) when the script exits.
#
#   start NAME FLAGS...   one server with data in $work/NAME (emptied first unless KEEP_DATA is
#                         set), waited for until it is ready; its
#                         listeners on 127.0.0.1, or on $BIND inside network namespace $NS
#                         (then without TLS: --insecure-plaintext)
#   stop_all              stops every server started so far
#   tcp_of NAME, ws_of NAME, http_of NAME, admin_of NAME, rpc_of NAME   its addresses
#   (tls://, wss:// and https:// when the server speaks TLS); pid_of NAME   its process
#   watch_rss NAME        notes its resident memory now, then samples it every 0.1 s
#   rss_report NAME       waits 10 s and prints it: before, peak while watched, and now
#   field KEY             a number from the one-line JSON summary on standard input
#   make_certificate      a private CA ($work/ca.pem) and a certificate for 127.0.0.1 signed
#                         by it ($work/node.pem, $work/node.key), for TLS
#
# MISSIVE names another server binary to start (default target/release/missive).

work=$(mktemp -d)
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_all
  rm -rf "$work"
}
trap cleanup EXIT

# The Argon2 cost is lowered only so that accounts are created in seconds; it is not on the
# measured path. Rate limits are off unless RATE_LIMITS=true: a load generator registers
# thousands of accounts from one address and sends faster than any person (the limits cost a
# map lookup per request).
start() {
  local name=$1 bind=${BIND:-127.0.0.1} exec=() plain=()
  shift
  if [ -z "${KEEP_DATA:-}" ]; then rm -rf "${work:?}/$name"; fi
  if [ -n "${NS:-}" ]; then exec=(ip netns exec "$NS"); fi
  if [ "$bind" != 127.0.0.1 ]; then plain=(--insecure-plaintext); fi
  "${exec[@]}" "${MISSIVE:-target/release/missive}" serve --data "$work/$name" --tcp "$bind:0" --http "$bind:0" \
    --admin "$bind:0" "${plain[@]}" --password-memory-kib 64 --password-iterations 1 --rate-limits "${RATE_LIMITS:-false}" "$@" \
    >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  echo $! >"$work/$name.pid"
  for _ in $(seq 1 200); do
    grep -q "^missive ready" "$work/$name.out" 2>/dev/null && return
    sleep 0.1
  done
  echo "$name did not start:" >&2
  cat "$work/$name.log" >&2
  exit 1
}
tcp_of() { grep -m1 -oE '(tcp|tls)://[0-9.:]*' "$work/$1.out"; }
ws_of() { grep -m1 -oE 'wss?://[0-9.:]*/ws' "$work/$1.out"; }
http_of() { grep -m1 -oE 'listening https?://[0-9.:]*' "$work/$1.out" | sed 's/^listening //'; }
admin_of() { grep -m1 -oE 'listening admin https?://[0-9.:]*' "$work/$1.out" | sed 's/^listening admin //'; }
pid_of() { cat "$work/$1.pid"; }
rpc_of() { grep -m1 -o 'rpc http://[0-9.:]*' "$work/$1.out" | sed 's/^rpc //'; }
rss_of() { awk '/^VmRSS/ { print $2 }' "/proc/$(pid_of "$1")/status"; }
watch_rss() {
  rss_of "$1" >"$work/$1.rss.before"
  : >"$work/$1.rss"
  (while kill -0 "$(pid_of "$1")" 2>/dev/null; do rss_of "$1" >>"$work/$1.rss"; sleep 0.1; done) &
  echo $! >"$work/$1.rss.pid"
}
rss_report() {
  local peak
  peak=$(sort -n "$work/$1.rss" | tail -1)
  sleep 10
  echo "server resident memory: before $(cat "$work/$1.rss.before") KiB, peak during ${peak} KiB, 10 s after $(rss_of "$1") KiB"
  kill "$(cat "$work/$1.rss.pid")" 2>/dev/null || true
}
field() { sed -E "s/.*\"$1\":([0-9.]+).*/\\1/"; }
make_certificate() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$work/node.key" -out "$work/node.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$work/san"
  openssl x509 -req -in "$work/node.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 2 -extfile "$work/san" -out "$work/node.pem" 2>/dev/null
}
