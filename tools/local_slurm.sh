#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the workflow's Slurm tests.
#
# Installs Debian's slurm-wlm and munge when missing, writes a slurm.conf for this
# machine's CPUs and memory (no accounting daemon), starts munged, slurmctld and slurmd,
# and waits until the node takes jobs. Idempotent: exits 0 at once when the cluster
# already answers with this configuration (a cluster started by an older version of this
# script is reconfigured and restarted). Needs root (apt-get, daemons). Safe to run repeatedly.
#
# The node advertises two GPUs that do not exist (GRES entries backed by /dev/null and
# /dev/zero), so that the slurm profile's GPU requests (`--gpus=1`) are scheduled exactly
# as on a real GPU cluster; the trainer, on `device: auto`, still runs on the CPU here.
# The first GPU is also split into SHARDS Slurm shards (`gres/shard`, Slurm >= 22.05), the
# way a cluster lets several small jobs share one GPU (`--gres=shard:1`, see
# LARGELR_SLURM_GPU_SHARE in profiles/slurm); the second one is only handed out whole.
set -euo pipefail

SLURM_CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
FAKE_GPUS=2
SHARDS=4

log() { echo "local_slurm: $*" >&2; }

node_ready() {
    # A node that is idle, mixed or allocated takes jobs; down/drained does not.
    command -v sinfo >/dev/null 2>&1 || return 1
    local states
    states=$(timeout 10 sinfo --responding --noheader --format=%T 2>/dev/null) || return 1
    grep -qE '^(idle|mixed|allocated|completing)$' <<<"$states"
}

# The node as this script configures it: its GPUs and the shards of the first one.
configured() {
    timeout 10 sinfo --noheader --format=%G 2>/dev/null | grep -q "gpu:${FAKE_GPUS},shard:${SHARDS}"
}

if node_ready && configured; then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    log "needs root to install and start Slurm (run: sudo $0)"
    exit 2
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# munge: a key, a socket directory, the daemon running as its own user.
if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge /var/log/munge /var/lib/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n </dev/null >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf from what slurmd detects here (CPUs, sockets, cores, memory).
host=$(hostname -s)
hardware=$(slurmd -C | head -n 1 | sed -E 's/^NodeName=[^ ]+ //')
memory=$(sed -nE 's/.*RealMemory=([0-9]+).*/\1/p' <<<"$hardware")
# Leave 5% of the memory to the system so that slurmd never reports less than configured.
hardware=$(sed -E "s/RealMemory=[0-9]+/RealMemory=$((memory * 95 / 100))/" <<<"$hardware")
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
conf=$(mktemp)
cat >"$conf" <<EOF
# Written by tools/local_slurm.sh: single node, no accounting, for tests.
ClusterName=largelr
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
GresTypes=gpu,shard
ReturnToService=2
MinJobAge=300
KillWait=10
InactiveLimit=0
MpiDefault=none
# Trust this file's node description (the GPUs above have no device files).
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=${host} NodeAddr=127.0.0.1 ${hardware} Gres=gpu:${FAKE_GPUS},shard:${SHARDS} State=UNKNOWN
PartitionName=main Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
changed=0
if ! cmp -s "$conf" "$SLURM_CONF"; then
    install -m 0644 "$conf" "$SLURM_CONF"
    changed=1
fi
rm -f "$conf"
printf "Name=gpu File=/dev/null\nName=gpu File=/dev/zero\nName=shard Count=%s File=/dev/null\n" "$SHARDS" \
    >"$GRES_CONF.tmp"
if ! cmp -s "$GRES_CONF.tmp" "$GRES_CONF"; then
    mv "$GRES_CONF.tmp" "$GRES_CONF"
    changed=1
else
    rm -f "$GRES_CONF.tmp"
fi

controller_up() { timeout 10 scontrol ping 2>/dev/null | grep -q "is UP"; }
daemon_running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_daemon() {
    daemon_running "$1" || return 0
    kill "$(cat "$1")"
    for _ in $(seq 50); do daemon_running "$1" || return 0; sleep 0.2; done
}

# A new configuration (or a controller that does not answer) means a clean restart.
if [[ $changed -eq 1 ]] || ! controller_up; then
    stop_daemon /run/slurmd.pid
    stop_daemon /run/slurmctld.pid
    log "starting slurmctld"
    slurmctld
    for _ in $(seq 100); do controller_up && break; sleep 0.2; done
fi
if ! daemon_running /run/slurmd.pid; then
    log "starting slurmd"
    slurmd
fi

for _ in $(seq 150); do
    node_ready && { log "ready: $(sinfo --noheader --format='%N %c CPUs %m MB %G %T')"; exit 0; }
    # A node left down or drained by an earlier, stopped cluster comes back.
    if sinfo --noheader --format=%T 2>/dev/null | grep -qE '^(down|drain|inval)'; then
        scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 0.2
done
log "the node did not become ready; see /var/log/slurm/slurmctld.log and slurmd.log"
sinfo --long --Node >&2 || true
exit 1
