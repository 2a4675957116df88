#!/usr/bin/env bash
# Start a single-node Slurm cluster on 127.0.0.1 for the Slurm integration test.
#
# Idempotent: does nothing when a controller already answers. Needs root and the Debian
# packages `slurm-wlm` and `munge` (installed here when apt-get is available).
# Facts this script works around (sandbox without systemd or cgroups):
#   - no systemd: create /run/munge and start munged as user munge with a generated key;
#   - NodeName must equal `hostname -s`; both daemons are bound to 127.0.0.1;
#   - no cgroups: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none;
#   - DefMemPerCPU is set, or a job without --mem takes the whole node and array tasks
#     run one at a time;
#   - SchedulerParameters=batch_sched_delay=0 keeps tests quick; no slurmdbd, so no sacct;
#   - PID 1 does not reap orphans here, so finished job steps would linger as zombies:
#     the daemons run under .ci/slurm-reaper.py, a child subreaper that reaps them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if command -v scontrol >/dev/null && scontrol ping 2>/dev/null | grep -q UP; then
  echo "slurm-setup: controller already up"
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  else
    echo "slurm-setup: slurm-wlm/munge not installed and cannot install them" >&2
    exit 1
  fi
fi

host="$(hostname -s)"
conf_dir=/etc/slurm
[ -d /etc/slurm-llnl ] && [ ! -d /etc/slurm ] && conf_dir=/etc/slurm-llnl
mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

# --- munge
mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! pgrep -u munge -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged
fi

# --- slurm.conf: one node, 4 CPU slots (more than the 2 real cores, so a 4-rank test runs
# its ranks at once; config_overrides lets slurmd accept the difference).
cat > "$conf_dir/slurm.conf" <<CONF
ClusterName=sluice
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
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
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=512
KillWait=5
MinJobAge=300
NodeName=${host} NodeAddr=127.0.0.1 CPUs=4 RealMemory=4096 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

# --- daemons, in the foreground under the reaper (setsid: outlive this shell)
setsid python3 "$here/slurm-reaper.py" /var/log/slurm/reaper.log \
  slurmctld -D -c -f "$conf_dir/slurm.conf" -- \
  slurmd -D -f "$conf_dir/slurm.conf" </dev/null >/dev/null 2>&1 &

for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
    echo "slurm-setup: node ${host} up"
    exit 0
  fi
  state="$(sinfo -h -o '%T' 2>/dev/null || true)"
  case "$state" in down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;; esac
  sleep 1
done
echo "slurm-setup: node did not come up" >&2
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
