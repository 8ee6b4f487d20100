#!/usr/bin/env bash
# A real one-node SLURM cluster on this (Debian) machine, for testing the slurm profile end to end.
#
#   sudo workflow/cluster/local-slurm.sh install   # apt-get: slurm-wlm, slurmdbd, munge, mariadb-server
#   sudo workflow/cluster/local-slurm.sh start     # write configs, start mariadb, munged, slurmdbd, slurmctld, slurmd
#   workflow/cluster/local-slurm.sh status         # sinfo + scontrol ping + sacct of today
#   sudo workflow/cluster/local-slurm.sh stop      # cancel jobs, stop every daemon this script started
#   sudo workflow/cluster/local-slurm.sh up        # install + start
#
# Layout: one node (this host, as `slurmd -C` reports its CPUs and memory), two partitions on it:
# `cpu` (default) and `gpu`. There is no GPU here: the `gpu` partition is the same CPU node, so a run
# tests submission, partition routing, per-rule memory/time/threads, job states and sacct, NOT GPU
# allocation (a job asking `--gpus=1` cannot be scheduled on this node; the smoke profile asks none).
#
# Accounting: `sacct` needs slurmdbd (the filetxt accounting plugin is long gone from Slurm and
# jobcomp/filetxt does not feed sacct), so slurmdbd stores job records in a local MariaDB. The
# executor plugin also uses sacct to poll job states, as it does on a production cluster.
set -euo pipefail

CLUSTER=${SLURM_CLUSTER_NAME:-attribench}
ETC=/etc/slurm
STATE=${SLURM_LOCAL_STATE:-/var/lib/attribench-slurm}   # spool, state, pid files, logs
DBPASS_FILE=$STATE/dbpass
HOST=$(hostname -s)

need_root() { [ "$(id -u)" -eq 0 ] || { echo "local-slurm: '$1' needs root" >&2; exit 1; }; }

install() {
    need_root install
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm slurmdbd munge mariadb-server mariadb-client >/dev/null
    echo "local-slurm: installed $(slurmctld -V) + $(mariadbd --version 2>/dev/null | awk '{print $1, $3}')"
}

write_configs() {
    mkdir -p "$ETC" "$STATE"/{ctld,d,log}
    chown -R slurm:slurm "$STATE"
    [ -s "$DBPASS_FILE" ] || { head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$DBPASS_FILE"; chmod 600 "$DBPASS_FILE"; }
    # The node as slurmd itself detects it (CPUs, sockets, cores, RealMemory): jobs must fit what it advertises.
    local node
    node=$(slurmd -C | head -1)
    cat > "$ETC/slurm.conf" <<CONF
# Written by workflow/cluster/local-slurm.sh: one node, partitions cpu (default) and gpu (same CPU node).
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroup v2 delegation inside a container: track processes by /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
# Accounting through slurmdbd (MariaDB): sacct shows every job's state.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
$node State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
CONF
    cat > "$ETC/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$(cat "$DBPASS_FILE")
StorageLoc=slurm_acct_db
CONF
    chown slurm:slurm "$ETC/slurmdbd.conf"
    chmod 600 "$ETC/slurmdbd.conf"
}

wait_for() {  # wait_for <what> <seconds> <command...>
    local what=$1 secs=$2; shift 2
    for _ in $(seq "$secs"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
    echo "local-slurm: $what did not come up" >&2; return 1
}

start() {
    need_root start
    command -v slurmctld >/dev/null || install
    write_configs
    # MariaDB for slurmdbd
    if ! mysqladmin ping >/dev/null 2>&1; then service mariadb start >/dev/null; fi
    wait_for mariadb 60 mysqladmin ping
    mysql -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$(cat "$DBPASS_FILE")';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$(cat "$DBPASS_FILE")';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
    # munge (the key is made by the package's postinst; make one if it is missing)
    [ -s /etc/munge/munge.key ] || { mungekey -c -k /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; }
    mkdir -p /run/munge && chown munge:munge /run/munge
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
    wait_for munge 30 bash -c 'munge -n | unmunge'
    # slurmdbd, then the cluster, an account and this user's association, then the controller and node
    pgrep -x slurmdbd >/dev/null || slurmdbd
    wait_for slurmdbd 60 sacctmgr -n list cluster
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
    sacctmgr -i -Q add account attribench Cluster="$CLUSTER" Description=attribench Organization=attribench >/dev/null 2>&1 || true
    for u in root ${SUDO_USER:-} ${SLURM_EXTRA_USERS:-}; do
        sacctmgr -i -Q add user "$u" Account=attribench DefaultAccount=attribench >/dev/null 2>&1 || true
    done
    pgrep -x slurmctld >/dev/null || slurmctld
    wait_for slurmctld 60 scontrol ping
    pgrep -x slurmd >/dev/null || slurmd
    wait_for "node $HOST" 60 bash -c "sinfo -h -N -o '%T' | grep -Eq '^(idle|mixed|allocated)'"
    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    status
}

stop() {
    need_root stop
    scancel --user=root >/dev/null 2>&1 || true
    for d in slurmd slurmctld slurmdbd; do
        if [ -s "$STATE/$d.pid" ] && kill -0 "$(cat "$STATE/$d.pid")" 2>/dev/null; then
            kill "$(cat "$STATE/$d.pid")"
            for _ in $(seq 30); do kill -0 "$(cat "$STATE/$d.pid")" 2>/dev/null || break; sleep 1; done
        fi
    done
    pid=$(pgrep -x -u munge munged || true)
    [ -z "$pid" ] || kill "$pid"
    mysqladmin ping >/dev/null 2>&1 && service mariadb stop >/dev/null || true
    echo "local-slurm: stopped"
}

status() {
    sinfo -o '%P %a %D %T %c %m %N'
    scontrol ping
    sacct -X -S today -o JobID,JobName%30,Partition,AllocCPUS,ReqMem,State,ExitCode,Elapsed | tail -n 20
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    up) install; start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 install|start|up|stop|status" >&2; exit 2 ;;
esac
