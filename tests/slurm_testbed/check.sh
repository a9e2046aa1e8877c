#!/usr/bin/env bash
# End-to-end check of a running test bed (after setup.sh), as root. Exits non-zero on any mismatch.
#  - `sbatch --parsable --array=0-3%2` as root, locally (task 2 exits 1);
#  - the same over ssh as slurmtest, each task importing the repo with the cluster venv's python;
#  - `squeue -h -r -t all -j ID -o '%i %T %r'` and (accounting on) `sacct -n -X -P -j ID -o JobID,State,ExitCode`;
#  - ssh with the wrong and the empty known_hosts file is refused.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"
[[ -r $TB_ENV ]] || tb_die "no $TB_ENV: run setup.sh first"
# shellcheck disable=SC1090
. "$TB_ENV"
IMPORT=${SLURM_TESTBED_IMPORT_CHECK-bioimage_async}

fail() { echo "CHECK FAILED: $*" >&2; exit 1; }
ssh_as() {
    local known=$1
    shift
    ssh -i "$SLURM_TESTBED_CLIENT_KEY" -p "$SLURM_TESTBED_PORT" -o BatchMode=yes -o StrictHostKeyChecking=yes \
        -o UserKnownHostsFile="$known" -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=10 \
        "$SLURM_TESTBED_USER@$SLURM_TESTBED_HOST" "$@" </dev/null
}

D=$(mktemp -d "$SLURM_TESTBED_SHARED/check.XXXXXX")
chmod 1777 "$D"
cd /tmp

t0=$(tb_now)
# shellcheck disable=SC2016
J1=$(sbatch --parsable --array=0-3%2 -J tb-check-root -o "$D/root_%a.out" \
    --wrap 'echo task $SLURM_ARRAY_TASK_ID $(id -un); [ "$SLURM_ARRAY_TASK_ID" != 2 ]')
echo "root: submitted array job $J1 in $(tb_since "$t0")s"

t0=$(tb_now)
PYCMD="$SLURM_TESTBED_REMOTE_PYTHON -c 'import sys${IMPORT:+, $IMPORT}; print(sys.version.split()[0])'"
J2=$(ssh_as "$SLURM_TESTBED_KNOWN_HOSTS" \
    "sbatch --parsable --array=0-3%2 -J tb-check-ssh -o $D/ssh_%a.out --wrap \"echo task \\\$SLURM_ARRAY_TASK_ID \\\$(id -un); $PYCMD\"")
echo "ssh:  submitted array job $J2 as $SLURM_TESTBED_USER in $(tb_since "$t0")s"

t0=$(tb_now)
tb_wait_for 120 sh -c "! squeue -h -r -t pending,running,configuring,completing -j $J1,$J2 | grep -q ." ||
    fail "jobs $J1/$J2 not finished after 120 s"
echo "both arrays (2 x 4 tasks, %2) finished $(tb_since "$t0")s later"

echo "squeue -h -r -t all -j $J1 -o '%i %T %r':"
squeue -h -r -t all -j "$J1" -o '%i %T %r' | sort | tee "$D/sq1"
echo "squeue over ssh, job $J2:"
ssh_as "$SLURM_TESTBED_KNOWN_HOSTS" "squeue -h -r -t all -j $J2 -o '%i %T %r'" | sort | tee "$D/sq2"
[[ $(grep -c ' COMPLETED ' "$D/sq1") == 3 ]] || fail "job $J1: expected 3 COMPLETED tasks"
grep -q "^${J1}_2 FAILED NonZeroExitCode$" "$D/sq1" || fail "job $J1: task 2 not FAILED NonZeroExitCode"
[[ $(grep -c ' COMPLETED ' "$D/sq2") == 4 ]] || fail "job $J2: expected 4 COMPLETED tasks"
for a in 0 1 2 3; do
    grep -q "^task $a root$" "$D/root_$a.out" || fail "root task $a output: $(cat "$D/root_$a.out")"
    grep -q "^task $a $SLURM_TESTBED_USER$" "$D/ssh_$a.out" || fail "ssh task $a output: $(cat "$D/ssh_$a.out")"
    grep -q '^3\.11\.' "$D/ssh_$a.out" || fail "ssh task $a: the cluster venv did not import ${IMPORT:-sys}: $(cat "$D/ssh_$a.out")"
done
echo "task outputs OK (slurmtest tasks imported ${IMPORT:-sys} with $SLURM_TESTBED_REMOTE_PYTHON)"

if [[ $SLURM_TESTBED_ACCOUNTING == 1 ]]; then
    t0=$(tb_now)
    # slurmdbd lags slurmctld by a few seconds.
    tb_wait_for 20 sh -c "[ \$(sacct -n -X -P -j $J1,$J2 -o JobID,State 2>/dev/null | grep -c -E '\\|(COMPLETED|FAILED)\$') = 8 ]" ||
        fail "sacct does not show the 8 finished tasks after 20 s"
    echo "sacct -n -X -P -j $J1 -o JobID,State,ExitCode (terminal in sacct $(tb_since "$t0")s after squeue):"
    sacct -n -X -P -j "$J1" -o JobID,State,ExitCode | sort | tee "$D/sa1"
    grep -q "^${J1}_2|FAILED|1:0$" "$D/sa1" || fail "sacct: task 2 not FAILED 1:0"
    echo "sacct over ssh, job $J2:"
    ssh_as "$SLURM_TESTBED_KNOWN_HOSTS" "sacct -n -X -P -j $J2 -o JobID,State,ExitCode" | sort
else
    echo "accounting off: sacct skipped"
fi

for bad in "$SLURM_TESTBED_BAD_KNOWN_HOSTS" "$SLURM_TESTBED_EMPTY_KNOWN_HOSTS"; do
    if ssh_as "$bad" true 2>/dev/null; then fail "ssh with $bad was NOT refused"; fi
done
echo "ssh with the wrong / empty known_hosts: refused"

rm -rf "$D"
echo "ALL CHECKS PASSED"
