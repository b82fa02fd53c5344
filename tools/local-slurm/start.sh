#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine, for testing profiles/slurm.
#
#   tools/local-slurm/start.sh [STATE_DIR]      (default: .local-slurm in the current folder)
#   (writes /etc/slurm/slurm.conf and gres.conf, which every SLURM command reads)
#   tools/local-slurm/stop.sh [STATE_DIR]
#
# Installs Debian's slurm-wlm and munge when missing (needs root), writes slurm.conf and
# gres.conf with two fake GPUs (character devices cloning /dev/null, so GPU jobs schedule),
# starts munged, slurmctld and slurmd as background daemons (no systemd), and waits until
# the node is idle. Every wait is bounded: a stuck cluster fails fast and says why.
# Facts behind the settings: ../shared/SLURM-NOTES.md in the development setup.
set -euo pipefail

STATE_DIR=$(realpath -m "${1:-.local-slurm}")
WAIT_SECONDS=${LOCAL_SLURM_WAIT_SECONDS:-60}
N_GPUS=${LOCAL_SLURM_GPUS:-2}

log() { printf '[local-slurm] %s\n' "$*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    [ "$(id -u)" = 0 ] || fail "slurm-wlm and munge are missing and installing them needs root"
    log "installing slurm-wlm and munge from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

mkdir -p "$STATE_DIR"/{ctld,spool,devices}
if [ -f "$STATE_DIR/slurmctld.pid" ] && kill -0 "$(cat "$STATE_DIR/slurmctld.pid")" 2>/dev/null; then
    fail "a cluster already runs from $STATE_DIR (stop it with tools/local-slurm/stop.sh $STATE_DIR)"
fi

# munge: the package ships a key; start our own munged unless one answers already.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    if id munge >/dev/null 2>&1; then
        su -s /bin/sh munge -c munged || munged --force
    else
        munged --force
    fi
    for _ in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n | unmunge >/dev/null 2>&1 || fail "munged does not answer (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$STATE_DIR/munged.pid" 2>/dev/null || pgrep -n munged >"$STATE_DIR/munged.pid"
    log "munged started (pid $(cat "$STATE_DIR/munged.pid"))"
fi

cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys both, slurmd does not
# Two SLURM CPUs per core by default (slurmd takes the configured count: config_overrides):
# the tests' jobs mostly wait (start-up, polling), and a job of 2 threads gets 2 CPUs, so
# on 2 cores two such jobs still run side by side.
cpus=${LOCAL_SLURM_CPUS:-$((2 * cores))}
memory_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)  # more drains the node
for i in $(seq 0 $((N_GPUS - 1))); do
    [ -e "$STATE_DIR/devices/gpu$i" ] || mknod -m 666 "$STATE_DIR/devices/gpu$i" c 1 3
done

# Job steps (srun inside a job) do not see SLURM_CONF (the executor plugin strips SLURM_*
# variables), so the daemons and every client read the standard /etc/slurm/slurm.conf.
# An existing one that this script did not write is never overwritten.
CONF_DIR=/etc/slurm
MARKER="# written by tools/local-slurm/start.sh"
mkdir -p "$CONF_DIR"
for name in slurm.conf gres.conf; do
    if [ -f "$CONF_DIR/$name" ] && ! head -n1 "$CONF_DIR/$name" | grep -qF "$MARKER"; then
        fail "$CONF_DIR/$name exists and is not ours: this script only runs on a machine without SLURM"
    fi
done

cat >"$STATE_DIR/slurm.conf" <<CONF
$MARKER
ClusterName=local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
SlurmctldPort=${LOCAL_SLURM_CTLD_PORT:-6817}
SlurmdPort=${LOCAL_SLURM_D_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
# A line per finished job (its CPUs, ProcCnt, and memory, Tres mem=): what the test reads
# to check that each job got its rule's threads and mem_mb (no slurmdbd, so no sacct).
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE_DIR/jobcomp.txt
MinJobAge=300
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb Gres=gpu:$N_GPUS State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
cat >"$STATE_DIR/gres.conf" <<CONF
$MARKER
NodeName=localhost Name=gpu File=$STATE_DIR/devices/gpu[0-$((N_GPUS - 1))]
CONF

cp "$STATE_DIR/slurm.conf" "$STATE_DIR/gres.conf" "$CONF_DIR/"
export SLURM_CONF="$CONF_DIR/slurm.conf"
slurmctld -i
slurmd -N localhost
log "slurmctld pid $(cat "$STATE_DIR/slurmctld.pid" 2>/dev/null || echo ?), slurmd pid $(cat "$STATE_DIR/slurmd.pid" 2>/dev/null || echo ?)"

deadline=$((SECONDS + WAIT_SECONDS))
state=""
while [ $SECONDS -lt $deadline ]; do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
    case "$state" in
        idle | mixed | allocated) break ;;
        drain* | down*) scontrol update NodeName=localhost State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
case "$state" in
    idle | mixed | allocated) ;;
    *)
        tail -n 20 "$STATE_DIR/slurmctld.log" "$STATE_DIR/slurmd.log" >&2 || true
        fail "node not idle after ${WAIT_SECONDS}s (state: '${state:-none}'); logs above"
        ;;
esac
log "cluster up: node localhost $state, $cpus CPUs on $cores cores, ${memory_mb} MB, $N_GPUS fake GPUs"
echo "export SLURM_CONF=$CONF_DIR/slurm.conf"
