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
trap - EXIT
echo "demo done: the container was created, started, paused, unpaused, stopped and removed"
