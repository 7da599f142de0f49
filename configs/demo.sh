#!/usr/bin/env bash
# The demo: a real, isolated busybox container through its whole lifecycle.
set -euo pipefail
corral=$1
root=$2
c() { echo "+ corral $*"; "$corral" --root "$root" "$@"; }
trap '"$corral" --root "$root" rm -f demo >/dev/null 2>&1 || true' EXIT

"$corral" --root "$root" image inspect busybox >/dev/null 2>&1 || c image busybox
c run --rm busybox sh -c 'echo "hello from $(hostname), pid $$ in its own namespace"; ls /'
c run -d --name demo busybox sh -c 'trap "echo bye; exit 0" TERM; echo up; while true; do sleep 0.2; done'
c ps
c exec demo sh -c 'echo "exec sees: $(cat /etc/hostname)"'
c pause demo
c ps -a
c unpause demo
c stop -t 5 demo
c logs -t demo
c inspect demo | grep -E '"(Status|ExitCode|StartedAt|FinishedAt)"'
c rm demo
c ps -a
echo "one container: created, started, paused, unpaused, stopped and removed"

# a deployment: a web server with a health check, and a client that waits for it
here=$(dirname "$0")
trap '"$corral" --root "$root" down -t 1 -f "$here/web-client.yaml" >/dev/null 2>&1; "$corral" --root "$root" system reset -f >/dev/null 2>&1 || true' EXIT
c up -d -f "$here/web-client.yaml"
c compose -f "$here/web-client.yaml" ps
sleep 1
c compose -f "$here/web-client.yaml" logs client
echo "+ the published port, from the host: $(busybox wget -q -O - http://127.0.0.1:18080/)"
c down -t 1 -f "$here/web-client.yaml"
# the demo's root leaves nothing on the host: its bridge, firewall table and run folder go too
c system reset -f
trap - EXIT
echo "demo done: a deployment came up healthy, served a page, and was torn down"
