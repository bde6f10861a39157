#!/usr/bin/env bash
# A real single-node Slurm on localhost for tests and laptops: munge, MariaDB + slurmdbd (so sacct works),
# slurmctld and slurmd, all state, logs and sockets under one directory.
#
#   sweeps/local_slurm.sh start [STATE_DIR]   install missing Debian packages (root), start what is not
#                                             running, wait for an idle node; prints `export SLURM_CONF=...`
#   sweeps/local_slurm.sh stop  [STATE_DIR]   cancel every job, stop the daemons this script started
#   sweeps/local_slurm.sh status [STATE_DIR]
#
# Idempotent: `start` on a running instance only checks it. Two partitions share the node: `batch`
# (default) and `urgent` (higher PriorityTier: its jobs preempt `batch` jobs, which are requeued after
# USR2, see ../shared/notes/slurm-local.md). Needs root (apt-get, daemons), Debian 12 packages.
set -euo pipefail

CMD=${1:-start}
STATE=$(realpath -m "${2:-${LEAPBENCH_SLURM_STATE:-${TMPDIR:-/tmp}/leapbench-slurm}}")
CLUSTER=leapbench
HOST=$(hostname -s)
CONF=$STATE/etc/slurm.conf
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

log() { echo "local_slurm: $*" >&2; }
die() { log "error: $*"; for f in slurmctld slurmd slurmdbd mariadb; do
          [[ -f $STATE/log/$f.log ]] && { log "--- tail of $f.log"; tail -n 15 "$STATE/log/$f.log" >&2; }; done; exit 1; }
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not come up within ${limit}s"
}
stop_pid() {  # stop_pid PIDFILE NAME: SIGTERM, then SIGKILL after 10 s
  local pidfile=$1 name=$2 pid
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile"); kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { log "$name did not stop, killing $pid"; kill -9 "$pid" 2>/dev/null || true; }
  rm -f "$pidfile"; log "stopped $name"
}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "packages ${missing[*]} are missing and installing them needs root"
  command -v apt-get >/dev/null || die "packages ${missing[*]} are missing and there is no apt-get"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >"$STATE/log/apt.log" 2>&1 \
    || { apt-get update -q >>"$STATE/log/apt.log" 2>&1 && apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$STATE/log/apt.log" 2>&1; } \
    || { tail -n 20 "$STATE/log/apt.log" >&2; die "apt-get install failed"; }
}

write_configs() {
  local cpus mem
  cpus=$(nproc --all)  # not plain nproc: it honours OMP_NUM_THREADS, which a caller may have set to 1
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  cat >"$CONF" <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${LEAPBENCH_SLURMCTLD_PORT:-6817}
SlurmdPort=${LEAPBENCH_SLURMD_PORT:-6818}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MailProg=/bin/true
ReturnToService=2
KillWait=5
MinJobAge=300
JobRequeue=1
EnforcePartLimits=ALL
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=2
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=${LEAPBENCH_SLURMDBD_PORT:-6819}
JobAcctGatherType=jobacct_gather/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=batch Nodes=$HOST Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=30
PartitionName=urgent Nodes=$HOST MaxTime=INFINITE State=UP PriorityTier=10
CONF
  cat >"$STATE/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=${LEAPBENCH_SLURMDBD_PORT:-6819}
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$STATE/etc/slurmdbd.conf"
}

start_munge() {
  if pgrep -x munged >/dev/null; then return 0; fi  # one munged per machine, on its default socket
  [[ -f /etc/munge/munge.key ]] || { mungekey --create >/dev/null 2>&1 || mungekey -c; chown munge:munge /etc/munge/munge.key; }
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged || die "munged did not start"
  touch "$STATE/run/munged.ours"
  wait_for 10 munge munge -n
}

start_mariadb() {
  export MYSQL_UNIX_PORT=$STATE/run/mysqld.sock
  alive "$STATE/run/mariadb.pid" && return 0
  if [[ ! -d $STATE/mysql/mysql ]]; then
    mariadb-install-db --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
      >"$STATE/log/mariadb-install.log" 2>&1 || { tail "$STATE/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
  fi
  mariadbd --no-defaults --user=root --datadir="$STATE/mysql" --socket="$MYSQL_UNIX_PORT" --skip-networking \
    --pid-file="$STATE/run/mariadb.pid" --log-error="$STATE/log/mariadb.log" --innodb-buffer-pool-size=64M \
    >/dev/null 2>&1 &
  wait_for 30 mariadb mariadb --no-defaults --socket="$MYSQL_UNIX_PORT" -uroot -e "select 1"
}

start_slurmdbd() {
  alive "$STATE/run/slurmdbd.pid" && return 0
  MYSQL_UNIX_PORT=$STATE/run/mysqld.sock slurmdbd || die "slurmdbd did not start"
  wait_for 30 slurmdbd sacctmgr -n list cluster
  sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
}

start_slurm() {
  alive "$STATE/run/slurmctld.pid" || slurmctld -f "$CONF" || die "slurmctld did not start"
  wait_for 30 slurmctld scontrol ping
  alive "$STATE/run/slurmd.pid" || slurmd -f "$CONF" || die "slurmd did not start"
  wait_for 30 "an idle node" bash -c "sinfo -h -N -o %t | grep -qx idle"
}

case $CMD in
  start)
    mkdir -p "$STATE"/{etc,log,run,ctld,spool}
    export SLURM_CONF=$CONF
    install_packages
    if ! alive "$STATE/run/slurmctld.pid"; then write_configs; fi
    start_munge; start_mariadb; start_slurmdbd; start_slurm
    log "Slurm is up (state in $STATE)"
    echo "export SLURM_CONF=$CONF"
    ;;
  stop)
    export SLURM_CONF=$CONF
    if alive "$STATE/run/slurmctld.pid"; then
      scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
      for _ in $(seq 100); do [[ -z $(squeue -h -t R,CG 2>/dev/null) ]] && break; sleep 0.1; done
    fi
    stop_pid "$STATE/run/slurmd.pid" slurmd
    stop_pid "$STATE/run/slurmctld.pid" slurmctld
    stop_pid "$STATE/run/slurmdbd.pid" slurmdbd
    stop_pid "$STATE/run/mariadb.pid" mariadbd
    if [[ -f $STATE/run/munged.ours ]]; then stop_pid /run/munge/munged.pid munged; rm -f "$STATE/run/munged.ours"; fi
    ;;
  status)
    for d in slurmctld slurmd slurmdbd mariadb; do
      if alive "$STATE/run/$d.pid"; then echo "$d: running ($(cat "$STATE/run/$d.pid"))"; else echo "$d: stopped"; fi
    done
    ;;
  *) echo "usage: $0 start|stop|status [STATE_DIR]" >&2; exit 2 ;;
esac
