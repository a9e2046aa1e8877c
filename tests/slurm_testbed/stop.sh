#!/usr/bin/env bash
# Stop every daemon that setup.sh started (sshd, slurmd, slurmctld, slurmdbd, mariadbd, munged),
# in reverse order, by their pid files under /var/lib/slurm-testbed/run. Idempotent: what is not
# running is skipped. Installed packages, configuration, keys, the venv and the data stay, so a
# later setup.sh only starts the daemons again (a few seconds).
#   stop.sh            stop everything
#   stop.sh --purge    also remove /var/lib/slurm-testbed and /opt/slurm-testbed (not the packages)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"
[[ $(id -u) == 0 ]] || tb_die "run as root"

T0=$(tb_now)
tb_stop_sshd drop
# Cancel what is still pending or running while slurmctld can record it: a job whose processes
# are just killed stays RUNNING in the restored slurmctld state after the next start.
if tb_running_pid "$TB_RUN/slurmctld.pid" slurmctld >/dev/null; then
    active=$(timeout 10 squeue -h -t pending,running,suspended,configuring -o %A 2>/dev/null | sort -u | tr '\n' ' ') || active=""
    if [[ -n ${active// /} ]]; then
        # shellcheck disable=SC2086
        timeout 10 scancel $active 2>/dev/null || true
        tb_log "cancelled jobs: $active"
        # Give slurmd a moment to end their processes (KillWait=5 s); slurmstepd leftovers are killed below.
        tb_wait_for 8 sh -c '! squeue -h -t running,completing -o %A 2>/dev/null | grep -q .' || true
    fi
fi
tb_stop_daemon "$TB_RUN/slurmd.pid" slurmd 15
# Job steps of running jobs outlive slurmd: end them and the job processes under them too.
steps=""
for s in $(tb_pids_by_comm slurmstepd); do
    steps+="$s $(tb_descendants "$s" | tr '\n' ' ')"
done
if [[ -n ${steps// /} ]]; then
    # shellcheck disable=SC2086
    kill -KILL $steps 2>/dev/null || true
    # shellcheck disable=SC2086
    tb_wait_dead 5 $steps || true
    tb_log "killed slurmstepd: $steps"
fi
tb_stop_daemon "$TB_RUN/slurmctld.pid" slurmctld 15
tb_stop_daemon "$TB_RUN/slurmdbd.pid" slurmdbd 15
tb_stop_daemon "$TB_RUN/mariadbd.pid" mariadbd 30
tb_stop_daemon "$TB_RUN/munged.pid" munged 10
rm -f /run/munge/munged.pid

if [[ ${1:-} == --purge ]]; then
    rm -rf "$TB_ROOT" /opt/slurm-testbed
    tb_log "removed $TB_ROOT and /opt/slurm-testbed"
fi
tb_log "all stopped in $(tb_since "$T0")s"
