#!/usr/bin/env bash
# Bring up the real single-node Slurm cluster + sshd test bed on 127.0.0.1 (see README.md).
#
#   sudo bash tests/slurm_testbed/setup.sh REPO_DIR
#
# Runs as root on Debian 12 without systemd. Idempotent: installs what is missing, rewrites the
# configuration, (re)starts only what is not running or whose configuration changed, and ends with
# a smoke check. Environment knobs:
#   SLURM_TESTBED_ACCOUNTING=1|0       slurmdbd + MariaDB for sacct (default 1)
#   SLURM_TESTBED_MAX_ARRAY_SIZE=N      MaxArraySize (default 10001)
#   SLURM_TESTBED_CPUS=N                CPUs advertised for the node (default 16; $(nproc) for the real size)
#   SLURM_TESTBED_IMPORT_CHECK=module   imported as slurmtest with the cluster venv at the end
#                                       (default bioimage_async; empty to skip)
#   SLURM_TESTBED_SKIP_SMOKE=1          skip the closing ssh/sbatch smoke check
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

[[ $(id -u) == 0 ]] || tb_die "run as root"
[[ $# == 1 ]] || tb_die "usage: $0 REPO_DIR"
[[ -d $1 ]] || tb_die "REPO_DIR $1 is not a directory"
REPO_DIR=$(cd "$1" && pwd -P)
[[ -f $REPO_DIR/pyproject.toml ]] || tb_die "$REPO_DIR has no pyproject.toml: nothing to install into the cluster venv"

ACCOUNTING=${SLURM_TESTBED_ACCOUNTING:-1}
[[ $ACCOUNTING == 0 || $ACCOUNTING == 1 ]] || tb_die "SLURM_TESTBED_ACCOUNTING must be 0 or 1"
MAX_ARRAY_SIZE=${SLURM_TESTBED_MAX_ARRAY_SIZE:-10001}
[[ $MAX_ARRAY_SIZE =~ ^[0-9]+$ ]] || tb_die "SLURM_TESTBED_MAX_ARRAY_SIZE must be an integer"
CPUS=${SLURM_TESTBED_CPUS:-16}
[[ $CPUS =~ ^[0-9]+$ && $CPUS -ge 1 ]] || tb_die "SLURM_TESTBED_CPUS must be a positive integer"
IMPORT_CHECK=${SLURM_TESTBED_IMPORT_CHECK-bioimage_async}

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C.UTF-8
umask 022

mkdir -p "$TB_ROOT"
chmod 755 "$TB_ROOT"
# One set-up at a time (parallel test sessions may all call this script). Every daemon is started
# with fd 9 closed (9>&-): a daemon inheriting it would hold the lock for its whole life.
exec 9>"$TB_ROOT/.setup.lock"
flock -w 900 9 || tb_die "another setup.sh holds $TB_ROOT/.setup.lock"

T_START=$(tb_now)
TIMINGS=()
T_STAGE=$T_START
stage_done() {
    local took
    took=$(tb_since "$T_STAGE")
    TIMINGS+=("$(printf '%-34s %6ss' "$1" "$took")")
    tb_log "$1: ${took}s"
    T_STAGE=$(tb_now)
}

# ---------------------------------------------------------------------------------------------
# 1. Packages
PKGS=(munge slurmctld slurmd slurm-client openssh-server python3 python3-venv acl)
[[ $ACCOUNTING == 1 ]] && PKGS+=(slurmdbd mariadb-server)
MISSING=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || MISSING+=("$p")
done
if ((${#MISSING[@]})); then
    tb_log "installing: ${MISSING[*]}"
    # No systemd here: keep the postinst scripts from starting services (the image normally has
    # /usr/sbin/policy-rc.d already; create a temporary one if not).
    TEMP_POLICY=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        TEMP_POLICY=1
    fi
    apt-get update -q >/dev/null
    stage_done "apt-get update"
    apt-get install -y -q --no-install-recommends "${PKGS[@]}" >"$TB_ROOT/apt-install.log" 2>&1 || {
        tail -n 30 "$TB_ROOT/apt-install.log" >&2
        tb_die "apt-get install failed (log: $TB_ROOT/apt-install.log)"
    }
    [[ $TEMP_POLICY == 1 ]] && rm -f /usr/sbin/policy-rc.d
    stage_done "apt-get install (${#MISSING[@]} missing)"
else
    stage_done "packages already installed"
fi

# ---------------------------------------------------------------------------------------------
# 2. Users, directories, keys
id slurm >/dev/null 2>&1 || tb_die "the slurm packages did not create the 'slurm' user"
if ! id "$TB_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$TB_USER"
fi
# useradd leaves the account locked ('!'), and sshd with UsePAM no refuses locked accounts.
if [[ $(getent shadow "$TB_USER" | cut -d: -f2) != '*' ]]; then
    usermod -p '*' "$TB_USER"
fi
TB_HOME=$(getent passwd "$TB_USER" | cut -d: -f6)

mkdir -p "$TB_RUN" "$TB_LOG" "$TB_STATE" "$TB_SPOOL" "$TB_SSH" "$TB_CLIENT" "$TB_SHARED" /etc/slurm
chown slurm:slurm "$TB_LOG" "$TB_STATE"
chmod 755 "$TB_RUN" "$TB_LOG" "$TB_SPOOL" "$TB_SSH"
chmod 700 "$TB_STATE" "$TB_CLIENT"
chmod 1777 "$TB_SHARED"
# Files that root creates under shared/ stay writable for slurmtest and vice versa (umask aside).
if ! setfacl -d -m u::rwx,g::rwx,o::rwx "$TB_SHARED" 2>/dev/null; then
    tb_log "WARNING: no default ACL on $TB_SHARED (filesystem without ACLs?): mind the umask"
fi

# munge key (the Debian postinst creates one; make sure).
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key

# sshd host key, a second "wrong" host key for the mismatch tests, and the client key pair.
[[ -s $TB_SSH/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -C slurm-testbed-host -f "$TB_SSH/ssh_host_ed25519_key"
[[ -s $TB_SSH/wrong_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -C slurm-testbed-wrong -f "$TB_SSH/wrong_host_ed25519_key"
[[ -s $TB_CLIENT/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C slurm-testbed-client -f "$TB_CLIENT/id_ed25519"
chmod 600 "$TB_SSH/ssh_host_ed25519_key" "$TB_SSH/wrong_host_ed25519_key" "$TB_CLIENT/id_ed25519"

HOSTPAT="[$TB_HOST]:$TB_SSH_PORT,[localhost]:$TB_SSH_PORT"
echo "$HOSTPAT $(cut -d' ' -f1,2 "$TB_SSH/ssh_host_ed25519_key.pub")" >"$TB_SSH/known_hosts"
echo "$HOSTPAT $(cut -d' ' -f1,2 "$TB_SSH/wrong_host_ed25519_key.pub")" >"$TB_SSH/bad_known_hosts"
: >"$TB_SSH/empty_known_hosts"
chmod 644 "$TB_SSH/known_hosts" "$TB_SSH/bad_known_hosts" "$TB_SSH/empty_known_hosts"

install -d -m 700 -o "$TB_USER" -g "$TB_USER" "$TB_HOME/.ssh"
install -m 600 -o "$TB_USER" -g "$TB_USER" "$TB_CLIENT/id_ed25519.pub" "$TB_HOME/.ssh/authorized_keys"
stage_done "users, directories, keys"

# ---------------------------------------------------------------------------------------------
# 3. Configuration files. A changed file marks its daemon for a restart.
declare -A CHANGED=()
# write_conf PATH OWNER MODE KEY: content on stdin
write_conf() {
    local path=$1 owner=$2 mode=$3 key=$4 tmp
    tmp=$(mktemp "$path.XXXXXX")
    cat >"$tmp"
    chown "$owner" "$tmp"
    chmod "$mode" "$tmp"
    if [[ -f $path ]] && cmp -s "$tmp" "$path" && [[ $(stat -c '%U:%G %a' "$path") == "$(stat -c '%U:%G %a' "$tmp")" ]]; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$path"
        CHANGED[$key]=1
    fi
}

REAL_MEMORY=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)
[[ -n $REAL_MEMORY ]] || REAL_MEMORY=1000

if [[ $ACCOUNTING == 1 ]]; then
    ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
else
    ACCT_LINES="AccountingStorageType=accounting_storage/none"
fi

write_conf /etc/slurm/slurm.conf root:root 644 slurm <<EOF
# Written by tests/slurm_testbed/setup.sh: single-node test cluster, bound to 127.0.0.1.
ClusterName=testbed
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$TB_STATE
SlurmdSpoolDir=$TB_SPOOL
SlurmctldPidFile=$TB_RUN/slurmctld.pid
SlurmdPidFile=$TB_RUN/slurmd.pid
SlurmctldLogFile=$TB_LOG/slurmctld.log
SlurmdLogFile=$TB_LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
$ACCT_LINES
JobCompType=jobcomp/filetxt
JobCompLoc=$TB_LOG/jobcomp.log
MaxArraySize=$MAX_ARRAY_SIZE
MaxJobCount=100000
MinJobAge=3600
KillWait=5
InactiveLimit=0
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEMORY State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

if [[ $ACCOUNTING == 1 ]]; then
    [[ -s $TB_ROOT/db.pass ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$TB_ROOT/db.pass")
    chmod 600 "$TB_ROOT/db.pass"
    DB_PASS=$(cat "$TB_ROOT/db.pass")
    # slurmdbd refuses a slurmdbd.conf not owned by SlurmUser or readable by others.
    write_conf /etc/slurm/slurmdbd.conf slurm:slurm 600 slurmdbd <<EOF
# Written by tests/slurm_testbed/setup.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
PidFile=$TB_RUN/slurmdbd.pid
LogFile=$TB_LOG/slurmdbd.log
DebugLevel=info
CommunicationParameters=NoInAddrAny
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
fi

write_conf "$TB_SSH/sshd_config" root:root 644 sshd <<EOF
# Written by tests/slurm_testbed/setup.sh: test sshd on $TB_HOST:$TB_SSH_PORT only.
Port $TB_SSH_PORT
ListenAddress $TB_HOST
AddressFamily inet
HostKey $TB_SSH/ssh_host_ed25519_key
PidFile $TB_RUN/sshd.pid
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $TB_USER
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
MaxSessions 100
MaxStartups 100:30:200
MaxAuthTries 6
LoginGraceTime 30
ClientAliveInterval 0
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
Subsystem sftp internal-sftp
LogLevel INFO
EOF
stage_done "configuration files"

# ---------------------------------------------------------------------------------------------
# 4. Daemons, in dependency order: each is started if not running, restarted if its configuration changed.
start_munged() {
    mkdir -p /run/munge
    chown munge:munge /run/munge
    chmod 755 /run/munge
    if ! tb_running_pid "$TB_RUN/munged.pid" munged >/dev/null; then
        if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
            tb_log "WARNING: a munged not started by this script already serves /run/munge: using it"
            return 0
        fi
        rm -f "$TB_RUN/munged.pid" /run/munge/munged.pid
        # munged daemonises itself and runs as the munge user. It insists on a log file owned by
        # munge in a directory nobody else can write: keep its default /var/log/munge/munged.log.
        rm -f "$TB_LOG/munged.stdout"
        setsid runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid \
            </dev/null >>"$TB_LOG/munged.stdout" 2>&1 9>&- ||
            tb_die "munged did not start: $(cat "$TB_LOG/munged.stdout"; tail -n 5 /var/log/munge/munged.log 2>/dev/null)"
        tb_wait_for 10 test -s /run/munge/munged.pid || tb_die "munged wrote no pid file"
        cp /run/munge/munged.pid "$TB_RUN/munged.pid"
        tb_wait_for 10 sh -c 'munge -n </dev/null | unmunge >/dev/null 2>&1' || tb_die "munge does not work"
    fi
}

start_mariadb() {
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    if [[ ! -d $TB_DB/mysql ]]; then
        rm -rf "$TB_DB"
        install -d -m 750 -o mysql -g mysql "$TB_DB"
        mariadb-install-db --user=mysql --datadir="$TB_DB" --auth-root-authentication-method=socket \
            --skip-test-db >"$TB_LOG/mariadb-install-db.log" 2>&1 ||
            tb_die "mariadb-install-db failed, see $TB_LOG/mariadb-install-db.log"
    fi
    if ! tb_running_pid "$TB_RUN/mariadbd.pid" mariadbd >/dev/null; then
        rm -f "$TB_RUN/mariadbd.pid" /run/mysqld/mariadbd.pid
        touch "$TB_LOG/mariadb.log"
        chown mysql:mysql "$TB_LOG/mariadb.log"
        # No TCP at all: slurmdbd reaches it over the unix socket (StorageHost=localhost).
        setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$TB_DB" --socket="$MYSQL_SOCKET" \
            --pid-file=/run/mysqld/mariadbd.pid --skip-networking --log-error="$TB_LOG/mariadb.log" \
            --innodb-buffer-pool-size=64M --skip-log-bin \
            </dev/null >>"$TB_LOG/mariadb.log" 2>&1 9>&- &
        disown
        tb_wait_for 30 sh -c "mariadb --socket=$MYSQL_SOCKET -e 'select 1' >/dev/null 2>&1" ||
            tb_die "mariadbd did not come up, see $TB_LOG/mariadb.log"
        # mariadbd writes its pid file as the mysql user: copy it to the run dir.
        tb_wait_for 10 test -s /run/mysqld/mariadbd.pid || tb_die "mariadbd wrote no pid file"
        cp /run/mysqld/mariadbd.pid "$TB_RUN/mariadbd.pid"
    fi
    # The MariaDB root user authenticates over the socket: create slurmdbd's user as root.
    mariadb --socket="$MYSQL_SOCKET" <<EOF || tb_die "could not create the slurm database user"
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
}

# restart_if NAME PIDFILE COMM KEYS...: stop the running daemon if the configuration file of any of
# the keys changed (it is started again right after).
restart_if() {
    local name=$1 pidfile=$2 comm=$3 k
    shift 3
    for k in "$@"; do
        if [[ -n ${CHANGED[$k]:-} ]] && tb_running_pid "$pidfile" "$comm" >/dev/null; then
            tb_log "restarting $name ($k changed)"
            tb_stop_daemon "$pidfile" "$comm" 15
            return 0
        fi
    done
}

start_slurmdbd() {
    restart_if slurmdbd "$TB_RUN/slurmdbd.pid" slurmdbd slurmdbd
    if ! tb_running_pid "$TB_RUN/slurmdbd.pid" slurmdbd >/dev/null; then
        rm -f "$TB_RUN/slurmdbd.pid"
        setsid /usr/sbin/slurmdbd </dev/null >>"$TB_LOG/slurmdbd.stdout" 2>&1 9>&- ||
            tb_die "slurmdbd did not start, see $TB_LOG/slurmdbd.log"
        tb_wait_for 30 tb_port_open 6819 || tb_die "slurmdbd not listening on 6819, see $TB_LOG/slurmdbd.log"
    fi
}

stop_accounting_daemons() {
    tb_stop_daemon "$TB_RUN/slurmdbd.pid" slurmdbd 15
    tb_stop_daemon "$TB_RUN/mariadbd.pid" mariadbd 30
}

start_slurmctld() {
    restart_if slurmctld "$TB_RUN/slurmctld.pid" slurmctld slurm
    if ! tb_running_pid "$TB_RUN/slurmctld.pid" slurmctld >/dev/null; then
        rm -f "$TB_RUN/slurmctld.pid"
        setsid /usr/sbin/slurmctld </dev/null >>"$TB_LOG/slurmctld.stdout" 2>&1 9>&- ||
            tb_die "slurmctld did not start, see $TB_LOG/slurmctld.log"
        tb_wait_for 30 sh -c 'scontrol ping 2>/dev/null | grep -q UP' ||
            tb_die "slurmctld does not answer, see $TB_LOG/slurmctld.log"
    fi
}

start_slurmd() {
    restart_if slurmd "$TB_RUN/slurmd.pid" slurmd slurm
    if ! tb_running_pid "$TB_RUN/slurmd.pid" slurmd >/dev/null; then
        rm -f "$TB_RUN/slurmd.pid"
        # The host name is 'vm', not the node name: name the node explicitly.
        setsid /usr/sbin/slurmd -N localhost </dev/null >>"$TB_LOG/slurmd.stdout" 2>&1 9>&- ||
            tb_die "slurmd did not start, see $TB_LOG/slurmd.log"
    fi
}

node_idle() {
    local st
    st=$(sinfo -h -n localhost -o '%T' 2>/dev/null) || return 1
    case $st in
        idle | mixed | allocated | completing) return 0 ;;
        # A node left drained by an earlier run (e.g. a killed slurmd) is put back in service.
        drain*) scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;;
    esac
    return 1
}

start_munged
stage_done "munged"
if [[ $ACCOUNTING == 1 ]]; then
    start_mariadb
    stage_done "mariadbd"
    start_slurmdbd
    stage_done "slurmdbd"
else
    stop_accounting_daemons
fi
start_slurmctld
stage_done "slurmctld"
start_slurmd
if ! tb_wait_for 60 node_idle; then
    sinfo -N -l >&2 || true
    tb_die "node 'localhost' not idle after 60 s, see $TB_LOG/slurmd.log and slurmctld.log"
fi
stage_done "slurmd, node idle"

restart_if sshd "$TB_RUN/sshd.pid" sshd sshd
if ! tb_running_pid "$TB_RUN/sshd.pid" sshd >/dev/null; then
    tb_start_sshd
fi
stage_done "sshd"

# ---------------------------------------------------------------------------------------------
# 5. The cluster Python: a venv from Debian's python3 (root's pyenv Python under /root is not
#    readable by slurmtest), with the repo installed editable (the cluster runs the current source),
#    world-readable.
if ! "$TB_VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    rm -rf "$TB_VENV"
    mkdir -p "$(dirname "$TB_VENV")"
    /usr/bin/python3 -m venv "$TB_VENV" || tb_die "could not create $TB_VENV"
fi
if runuser -u "$TB_USER" -- test -r "$REPO_DIR/pyproject.toml"; then
    # Editable: re-install only when the repo path or its pyproject.toml changed.
    PIP_TARGET=(-e "${REPO_DIR}[slurm,hdf5]")
    STAMP_WANT="editable $REPO_DIR $(sha256sum "$REPO_DIR/pyproject.toml" | cut -d' ' -f1)"
else
    # The cluster user could not read an editable install (e.g. a clone under /root, mode 700):
    # install a copy instead, and re-install whenever a source file changed.
    tb_log "WARNING: $REPO_DIR is not readable by $TB_USER: installing a copy (not editable) into $TB_VENV"
    PIP_TARGET=("${REPO_DIR}[slurm,hdf5]")
    STAMP_WANT="copy $REPO_DIR $(cd "$REPO_DIR" && find . \( -name .git -o -name .venv -o -name __pycache__ \
        -o -name '*.egg-info' -o -name build -o -name dist \) -prune -o -type f \( -name '*.py' -o -name '*.toml' \
        -o -name '*.cfg' -o -name '*.typed' -o -name '*.c' \) -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
fi
if [[ ! -f $TB_VENV/.testbed-installed || $(cat "$TB_VENV/.testbed-installed") != "$STAMP_WANT" ]]; then
    rm -f "$TB_VENV/.testbed-installed"
    tb_log "pip install ${PIP_TARGET[*]} into $TB_VENV"
    if ! (cd / && "$TB_VENV/bin/python" -m pip install --no-input --progress-bar off -q \
        "${PIP_TARGET[@]}" >"$TB_ROOT/pip-install.log" 2>&1); then
        tail -n 40 "$TB_ROOT/pip-install.log" >&2
        tb_die "pip install ${PIP_TARGET[*]} into $TB_VENV FAILED (log: $TB_ROOT/pip-install.log)"
    fi
    echo "$STAMP_WANT" >"$TB_VENV/.testbed-installed"
fi
chmod -R a+rX /opt/slurm-testbed
if [[ -n $IMPORT_CHECK ]]; then
    (cd / && runuser -u "$TB_USER" -- "$TB_VENV/bin/python" -c "import $IMPORT_CHECK") ||
        tb_die "$TB_USER cannot 'import $IMPORT_CHECK' with $TB_VENV/bin/python"
fi
stage_done "cluster venv"

# ---------------------------------------------------------------------------------------------
# 6. The env file for the tests.
{
    printf '%s=%q\n' \
        SLURM_TESTBED_HOST "$TB_HOST" \
        SLURM_TESTBED_PORT "$TB_SSH_PORT" \
        SLURM_TESTBED_USER "$TB_USER" \
        SLURM_TESTBED_CLIENT_KEY "$TB_CLIENT/id_ed25519" \
        SLURM_TESTBED_KNOWN_HOSTS "$TB_SSH/known_hosts" \
        SLURM_TESTBED_BAD_KNOWN_HOSTS "$TB_SSH/bad_known_hosts" \
        SLURM_TESTBED_EMPTY_KNOWN_HOSTS "$TB_SSH/empty_known_hosts" \
        SLURM_TESTBED_SHARED "$TB_SHARED" \
        SLURM_TESTBED_REMOTE_PYTHON "$TB_VENV/bin/python" \
        SLURM_TESTBED_ACCOUNTING "$ACCOUNTING" \
        SLURM_TESTBED_PARTITION debug \
        SLURM_TESTBED_MAX_ARRAY_SIZE "$MAX_ARRAY_SIZE" \
        SLURM_TESTBED_CPUS "$CPUS" \
        SLURM_TESTBED_REPO "$REPO_DIR" \
        SLURM_TESTBED_LOG_DIR "$TB_LOG" \
        SLURM_TESTBED_RESTART_SSHD "$HERE/restart_sshd.sh" \
        SLURM_TESTBED_STOP "$HERE/stop.sh"
} >"$TB_ENV.tmp"
chmod 644 "$TB_ENV.tmp"
mv -f "$TB_ENV.tmp" "$TB_ENV"
stage_done "env file"

# ---------------------------------------------------------------------------------------------
# 7. Smoke check: as slurmtest over ssh, sinfo and a tiny sbatch --wait job.
if [[ ${SLURM_TESTBED_SKIP_SMOKE:-0} != 1 ]]; then
    SSH=(ssh -i "$TB_CLIENT/id_ed25519" -p "$TB_SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=yes
        -o UserKnownHostsFile="$TB_SSH/known_hosts" -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=10
        "$TB_USER@$TB_HOST")
    out=$("${SSH[@]}" "sinfo -h -o '%P %a %D %T'" </dev/null) || tb_die "ssh $TB_USER@$TB_HOST:$TB_SSH_PORT sinfo failed"
    tb_log "ssh sinfo: $out"
    stage_done "smoke: ssh + sinfo"
    SMOKE_OUT=$TB_SHARED/.smoke-$$.out
    rm -f "$SMOKE_OUT"
    "${SSH[@]}" "cd /tmp && sbatch --wait --quiet -o $SMOKE_OUT -J testbed-smoke --wrap 'echo ok \$(id -un) \$SLURM_JOB_ID'" </dev/null ||
        tb_die "smoke sbatch --wait over ssh failed"
    grep -q "^ok $TB_USER " "$SMOKE_OUT" || tb_die "smoke job wrote no 'ok $TB_USER' (got: $(cat "$SMOKE_OUT" 2>/dev/null))"
    tb_log "smoke job: $(cat "$SMOKE_OUT")"
    rm -f "$SMOKE_OUT"
    stage_done "smoke: sbatch --wait"
fi

echo "---- slurm test bed ready in $(tb_since "$T_START")s (env: $TB_ENV)"
printf '  %s\n' "${TIMINGS[@]}"
