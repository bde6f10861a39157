#!/usr/bin/env bash
# A real Slurm on localhost for tests and laptops: munge, MariaDB + slurmdbd (so sacct works), slurmctld and
# one slurmd per node, all state, logs and sockets under one directory.
#
#   sweeps/local_slurm.sh start [--nodes N] [STATE_DIR]   install missing Debian packages (root), start what
#                                   is not running, wait for N idle nodes; prints `export SLURM_CONF=...`
#   sweeps/local_slurm.sh stop  [STATE_DIR]   cancel every job, stop the daemons this script started
#   sweeps/local_slurm.sh status [STATE_DIR]
#
# One node (default) is this host. N > 1 emulates N nodes on this machine with Slurm's multiple-slurmd mode
# (Debian's build has it: `scontrol show config` says MULTIPLE_SLURMD = Yes): nodes lbnode1..N, each its own
# slurmd (`slurmd -N lbnodeI`) on its own port and loopback address 127.0.1.I, which /etc/hosts maps the
# name to (lines marked with the state directory, removed by `stop`) so that jobs rendezvous on the first
# node's name as on a real cluster. Every node offers all of the machine's CPUs and memory (oversubscribed)
# and LEAPBENCH_SLURM_GPUS (default 2) count-only GPUs (a gpu GRES whose files are /dev/null-like device
# nodes: Slurm allocates them, so `--gpus-per-node=G --ntasks-per-node=G` jobs run as on a GPU cluster;
# torch sees no CUDA and uses gloo on the CPU).
#
# Idempotent: `start` on a running instance only checks it. Two partitions share the nodes: `batch`
# (default) and `urgent` (higher PriorityTier: its jobs preempt `batch` jobs, which are requeued after
# USR2, see ../shared/notes/slurm-local.md). Needs root (apt-get, daemons, /etc/hosts), Debian 12 packages.
set -euo pipefail

usage() { echo "usage: $0 start [--nodes N] [STATE_DIR] | stop [STATE_DIR] | status [STATE_DIR]" >&2; exit 2; }
CMD=${1:-start}; shift || true
NODES=${LEAPBENCH_SLURM_NODES:-1}
STATE_ARG=
while [[ $# -gt 0 ]]; do
  case $1 in
    --nodes) [[ $# -ge 2 ]] || usage; NODES=$2; shift 2 ;;
    --nodes=*) NODES=${1#--nodes=}; shift ;;
    -*) usage ;;
    *) [[ -z $STATE_ARG ]] || usage; STATE_ARG=$1; shift ;;
  esac
done
[[ $NODES =~ ^[1-9][0-9]?$ ]] || { echo "local_slurm: --nodes must be an integer in 1..99, got '$NODES'" >&2; exit 2; }
STATE=$(realpath -m "${STATE_ARG:-${LEAPBENCH_SLURM_STATE:-${TMPDIR:-/tmp}/leapbench-slurm}}")
CLUSTER=leapbench
HOST=$(hostname -s)
CONF=$STATE/etc/slurm.conf
GPUS=${LEAPBENCH_SLURM_GPUS:-2}
[[ $GPUS =~ ^[1-9][0-9]?$ ]] || { echo "local_slurm: LEAPBENCH_SLURM_GPUS must be an integer in 1..99, got '$GPUS'" >&2; exit 2; }
SLURMD_PORT=${LEAPBENCH_SLURMD_PORT:-6818}
HOSTS_MARK="# leapbench local_slurm $STATE"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

log() { echo "local_slurm: $*" >&2; }
die() { log "error: $*"; for f in "$STATE"/log/{slurmctld,slurmd*,slurmdbd,mariadb}.log; do
          [[ -f $f ]] && { log "--- tail of ${f##*/}"; tail -n 15 "$f" >&2; }; done; exit 1; }
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

# The nodes: this host alone, or lbnode1..N (multiple-slurmd mode) on 127.0.1.1..N, ports SLURMD_PORT+10+i.
node_names() { if [[ $1 -eq 1 ]]; then echo "$HOST"; else seq -f "lbnode%g" 1 "$1"; fi; }
node_addr() { if [[ $NODES -eq 1 ]]; then echo 127.0.0.1; else echo "127.0.1.${1#lbnode}"; fi; }
node_port() { if [[ $NODES -eq 1 ]]; then echo "$SLURMD_PORT"; else echo $((SLURMD_PORT + 10 + ${1#lbnode})); fi; }
nodelist() { if [[ $NODES -eq 1 ]]; then echo "$HOST"; else echo "lbnode[1-$NODES]"; fi; }

hosts_add() {  # map the emulated node names to their loopback addresses (jobs resolve MASTER_ADDR by name)
  [[ $NODES -eq 1 ]] && return 0
  local lines=() n
  for n in $(node_names "$NODES"); do
    getent hosts "$n" | grep -qw "$(node_addr "$n")" || lines+=("$(node_addr "$n") $n $HOSTS_MARK")
  done
  [[ ${#lines[@]} -eq 0 ]] && return 0
  [[ -w /etc/hosts ]] || die "emulated node names must resolve: add to /etc/hosts: ${lines[*]}"
  printf '%s\n' "${lines[@]}" >>/etc/hosts
}

hosts_remove() {  # rewrite in place (a container's /etc/hosts is often a bind mount that cannot be renamed over)
  grep -qF "$HOSTS_MARK" /etc/hosts 2>/dev/null || return 0
  local kept; kept=$(grep -vF "$HOSTS_MARK" /etc/hosts)
  printf '%s\n' "$kept" >/etc/hosts
}

write_configs() {
  local cpus mem n
  cpus=$(nproc --all)  # not plain nproc: it honours OMP_NUM_THREADS, which a caller may have set to 1
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  echo "$NODES" >"$STATE/etc/nodes"
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
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
GresTypes=gpu
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
CONF
  for n in $(node_names "$NODES"); do
    echo "NodeName=$n NodeHostname=$HOST NodeAddr=$(node_addr "$n") Port=$(node_port "$n") CPUs=$cpus RealMemory=$mem Gres=gpu:$GPUS State=UNKNOWN" >>"$CONF"
  done
  cat >>"$CONF" <<CONF
PartitionName=batch Nodes=$(nodelist) Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=30
PartitionName=urgent Nodes=$(nodelist) MaxTime=INFINITE State=UP PriorityTier=10
CONF
  # count-only GPUs: Slurm drops a file-less gpu GRES, so point each at a character device like /dev/null
  mkdir -p "$STATE/dev"
  for i in $(seq 0 $((GPUS - 1))); do
    [[ -e $STATE/dev/gpu$i ]] || mknod "$STATE/dev/gpu$i" c 1 3 2>/dev/null || touch "$STATE/dev/gpu$i"
  done
  echo "Name=gpu File=$STATE/dev/gpu[0-$((GPUS - 1))]" >"$STATE/etc/gres.conf"
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
  local n
  alive "$STATE/run/slurmctld.pid" || slurmctld -f "$CONF" || die "slurmctld did not start"
  wait_for 30 slurmctld scontrol ping
  for n in $(node_names "$NODES"); do
    mkdir -p "$STATE/spool/$n"
    alive "$STATE/run/slurmd-$n.pid" || slurmd -f "$CONF" -N "$n" || die "slurmd of node $n did not start"
  done
  wait_for 30 "$NODES idle node(s)" bash -c "[[ \$(sinfo -h -N -p batch -o %t | grep -cx idle) -eq $NODES ]]"
}

case $CMD in
  start)
    mkdir -p "$STATE"/{etc,log,run,ctld,spool}
    export SLURM_CONF=$CONF
    install_packages
    if ! alive "$STATE/run/slurmctld.pid"; then write_configs
    elif [[ $(cat "$STATE/etc/nodes" 2>/dev/null || echo 1) != "$NODES" ]]; then
      die "a Slurm with $(cat "$STATE/etc/nodes" 2>/dev/null || echo 1) node(s) runs in $STATE; stop it first"
    fi
    hosts_add; start_munge; start_mariadb; start_slurmdbd; start_slurm
    log "Slurm is up: $NODES node(s) $(nodelist), $GPUS count-only GPUs each (state in $STATE)"
    echo "export SLURM_CONF=$CONF"
    ;;
  stop)
    export SLURM_CONF=$CONF
    if alive "$STATE/run/slurmctld.pid"; then
      scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
      for _ in $(seq 100); do [[ -z $(squeue -h -t R,CG 2>/dev/null) ]] && break; sleep 0.1; done
    fi
    for pidfile in "$STATE"/run/slurmd-*.pid; do [[ -e $pidfile ]] && stop_pid "$pidfile" "$(basename "$pidfile" .pid)"; done
    stop_pid "$STATE/run/slurmctld.pid" slurmctld
    stop_pid "$STATE/run/slurmdbd.pid" slurmdbd
    stop_pid "$STATE/run/mariadb.pid" mariadbd
    if [[ -f $STATE/run/munged.ours ]]; then stop_pid /run/munge/munged.pid munged; rm -f "$STATE/run/munged.ours"; fi
    hosts_remove
    ;;
  status)
    for pidfile in "$STATE"/run/slurmd-*.pid; do d=$(basename "$pidfile" .pid)
      if alive "$pidfile"; then echo "$d: running ($(cat "$pidfile"))"; else echo "$d: stopped"; fi
    done
    for d in slurmctld slurmdbd mariadb; do
      if alive "$STATE/run/$d.pid"; then echo "$d: running ($(cat "$STATE/run/$d.pid"))"; else echo "$d: stopped"; fi
    done
    ;;
  *) usage ;;
esac
