#!/usr/bin/env bash
# Run pyrouter on its embedded default (config/lab.yaml): two hosts in network
# namespaces lab-h1 and lab-h2 on either side of the router.  Ctrl-C stops the
# router and removes the namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=${1:-config/lab.yaml}
made=()
for ns in lab-h1 lab-h2; do
  if ! ip netns list | grep -qw "$ns"; then ip netns add "$ns"; made+=("$ns"); fi
done
cleanup() { for ns in "${made[@]}"; do ip netns del "$ns" 2>/dev/null || true; done; }
trap cleanup EXIT
cat <<MSG
pyrouter lab: try, in another terminal,
  ip netns exec lab-h1 ping 10.0.2.2
  ip netns exec lab-h1 traceroute -n 10.0.2.2
  ip netns exec lab-h1 ping 198.51.100.1     # unreachable route: Destination Host Unreachable
  kill -USR1 \$(pgrep -f 'pyrouter run')     # log the counters
MSG
.venv/bin/python -m pyrouter run -c "$cfg" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' INT TERM
wait $pid || wait $pid
