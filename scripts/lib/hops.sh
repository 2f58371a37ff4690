# Where a message's time goes, from the nodes' own latency histograms. Source it after
# scripts/lib/servers.sh.
#
#   hops_before NODE...            notes each node's histograms
#   hops_after DELIVERED NODE...   prints what moved since, per delivered message

# The latency histograms of NODE's hops, as "series sum count" lines: calls each RPC service
# received, requests of each command, the store's calls and commits.
histograms() {
  curl -s "$(admin_of "$1")/metrics" | awk -v node="$1" '
    /^(missive_rpc_duration_seconds|missive_request_duration_seconds|missive_store_duration_seconds|missive_store_commit_seconds)_(sum|count)/ {
      series = $1; kind = series; sub(/\{.*/, "", kind); sub(/_(sum|count)\{/, "{", series)
      sub(/_(sum|count)$/, "", series)
      if (kind ~ /_sum$/) sum[series] = $2; else count[series] = $2
    }
    END { for (s in count) printf "%s/%s %s %s\n", node, s, sum[s], count[s] }'
}

# hops_before NODE...: notes the histograms; hops_after DELIVERED NODE...: prints each series
# that moved since with at least one call per 20 messages, as calls per delivered message,
# mean latency per call and their product (the time it adds to a message), largest first.
hops_before() {
  for node in "$@"; do histograms "$node"; done | sort >"$work/hops.before"
}
hops_after() {
  local delivered=$1
  shift
  for node in "$@"; do histograms "$node"; done | sort >"$work/hops.after"
  echo "where the time goes (calls per message, mean ms per call, ms per message, node/series):"
  join "$work/hops.before" "$work/hops.after" | awk -v n="$delivered" '
    { calls = $5 - $3; ms = 1000 * ($4 - $2) }
    calls >= n / 20 { printf "%8.3f  %8.2f  %8.2f  %s\n", calls / n, ms / calls, ms / n, $1 }' |
    sort -k3 -rn
}
