#!/usr/bin/env bash
# Stop exactly the daemons that tools/local-slurm/start.sh started, by their pid files.
#   tools/local-slurm/stop.sh [STATE_DIR]      (default: .local-slurm in the current folder)
set -uo pipefail

STATE_DIR=$(realpath -m "${1:-.local-slurm}")
log() { printf '[local-slurm] %s\n' "$*" >&2; }

stop_pid_file() {
    local name=$1 file=$2 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 20); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        log "stopped $name (pid $pid)"
    fi
    rm -f "$file"
}

stop_pid_file slurmd "$STATE_DIR/slurmd.pid"
stop_pid_file slurmctld "$STATE_DIR/slurmctld.pid"
stop_pid_file munged "$STATE_DIR/munged.pid"  # only present when start.sh started it
# The configs start.sh put in /etc/slurm (recognised by their first line), nothing else.
for name in slurm.conf gres.conf; do
    if head -n1 "/etc/slurm/$name" 2>/dev/null | grep -qF "# written by tools/local-slurm/start.sh"; then
        rm -f "/etc/slurm/$name"
    fi
done
exit 0
