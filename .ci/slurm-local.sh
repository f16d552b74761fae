#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing `kdbench run --executor slurm`.
#
# Run as root on Debian/Ubuntu:   sudo .ci/slurm-local.sh
# Safe to run again: packages, keys, the database user and the cluster are created only
# when missing, configuration files are rewritten with the same content, and a daemon that
# is already running is left alone.  The node then accepts jobs (`sinfo` shows it idle).
#
# It works without systemd and without usable cgroups (containers, CI runners): every
# daemon is started by hand, processes are tracked through /proc (proctrack/linuxproc) and
# tasks are not confined (task/none).  Accounting runs through slurmdbd and MariaDB because
# submitit reads job states with `sacct` (without it a cancelled job is never seen ending).
#
# On a real cluster none of this is needed: the administrators run Slurm, you only submit.
# Logs: /var/log/slurm/*.log, /var/log/munge/munged.log, /var/log/mysql/ (MariaDB).
set -euo pipefail

CLUSTER=kdbench                 # the cluster's name in the accounting database
PARTITION=debug                 # the only partition, the default one
NODE=$(hostname -s)             # this machine is the controller and the only compute node
CPUS=$(nproc)
MEMORY=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)   # MiB, leaving 10% spare
DB_PASSWORD=${SLURM_DB_PASSWORD:-kdbench-local}   # the database is reachable from localhost only

say() { echo "slurm-local: $*"; }
running() { pgrep -x "$1" >/dev/null; }

[ "$(id -u)" = 0 ] || { echo "slurm-local: run me as root (it installs packages and starts daemons)" >&2; exit 2; }

# 1. Packages: Slurm's controller, compute daemon and accounting daemon, MUNGE (the
#    authentication Slurm uses between daemons and commands) and MariaDB (accounting store).
packages=(slurm-wlm slurmdbd munge mariadb-server mariadb-client)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Configuration.  slurm.conf describes the cluster; every daemon and command reads it.
mkdir -p /etc/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /run/slurm
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$NODE
# The daemons run as root here; a shared cluster runs slurmctld as a 'slurm' user.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No systemd, no cgroups: track processes through /proc and do not confine tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# Jobs share the node core by core, so several one-CPU jobs run at once.
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Accounting through slurmdbd: sacct (and so submitit) sees every job's final state.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
# A cancelled job gets SIGTERM, then SIGKILL 5 s later (the default waits 30 s).
KillWait=5
# A node that went down comes back by itself once its slurmd answers again.
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

# slurmdbd.conf holds the database password: readable by its daemon's user only.
install -m 600 /dev/null /etc/slurm/slurmdbd.conf
cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=/run/slurm/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF

# 3. MUNGE: one shared secret key (the package creates it; a multi-node cluster copies it
#    to every node), then the daemon, run as its own user.
[ -s /etc/munge/munge.key ] || { say "creating the MUNGE key"; mungekey --create --keyfile /etc/munge/munge.key; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! running munged; then say "starting munged"; runuser -u munge -- munged; fi
for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
munge -n </dev/null | unmunge >/dev/null || { echo "slurm-local: munged does not answer" >&2; exit 1; }

# 4. MariaDB and the accounting database's user.
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if ! running mariadbd; then
  say "starting MariaDB"
  setsid mariadbd --user=mysql --bind-address=127.0.0.1 </dev/null >/var/log/slurm/mariadb.log 2>&1 &
fi
for _ in $(seq 100); do mariadb -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
mariadb -e "SELECT 1" >/dev/null || { echo "slurm-local: MariaDB does not answer" >&2; exit 1; }
mariadb <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF

# 5. slurmdbd (accounting), then register the cluster before its controller starts.
if ! running slurmdbd; then say "starting slurmdbd"; slurmdbd; fi
for _ in $(seq 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
  say "registering cluster $CLUSTER"
  sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

# 6. The controller and the compute daemon.
if ! running slurmctld; then say "starting slurmctld"; slurmctld; fi
for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
if ! running slurmd; then say "starting slurmd"; slurmd; fi

# 7. Wait until the node takes jobs.  A node left 'down' or 'drained' by an earlier run
#    (e.g. a reboot) is put back to service.
for _ in $(seq 120); do
  state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
  case "$state" in
    idle|mix|alloc) say "node $NODE is $state ($CPUS CPUs, ${MEMORY} MiB) in partition $PARTITION"; exit 0 ;;
    down*|drain*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
echo "slurm-local: node $NODE did not become idle (state: ${state:-unknown}); see /var/log/slurm/" >&2
exit 1
