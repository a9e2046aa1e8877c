# shellcheck shell=bash disable=SC2034
# Shared helpers for setup.sh, stop.sh, restart_sshd.sh and check.sh (sourced, not run).
# Every path of the test bed lives here, so the three scripts agree on them.

TB_ROOT=/var/lib/slurm-testbed
TB_RUN=$TB_ROOT/run            # pid files
TB_LOG=$TB_ROOT/log            # daemon logs, jobcomp.log
TB_STATE=$TB_ROOT/slurmctld    # StateSaveLocation (owned by slurm)
TB_SPOOL=$TB_ROOT/slurmd       # SlurmdSpoolDir
TB_DB=$TB_ROOT/mysql           # private MariaDB data dir
TB_SSH=$TB_ROOT/ssh            # sshd_config, host key, known_hosts files
TB_CLIENT=$TB_ROOT/client      # client key pair (root only)
TB_SHARED=$TB_ROOT/shared      # mode 1777, for root and slurmtest
TB_ENV=$TB_ROOT/testbed.env
TB_VENV=/opt/slurm-testbed/venv
TB_USER=slurmtest
TB_SSH_PORT=2222
TB_HOST=127.0.0.1
MYSQL_SOCKET=/run/mysqld/mysqld.sock

tb_now() { date +%s.%N; }

# Seconds since $1 (a tb_now value), with one decimal.
tb_since() { awk -v a="$1" -v b="$(tb_now)" 'BEGIN { printf "%.1f", b - a }'; }

tb_log() { printf '[slurm-testbed %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

tb_die() { printf '[slurm-testbed] ERROR: %s\n' "$*" >&2; exit 1; }

# State letter of a process (R, S, D, Z, ...) from /proc/PID/stat, or empty if gone.
# The command name in field 2 may hold spaces and parentheses: cut after the last ')'.
tb_proc_state() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
    stat=${stat##*) }
    printf '%s' "${stat%% *}"
}

# Parent pid of a process, or empty.
tb_proc_ppid() {
    local stat rest
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
    rest=${stat##*) }
    # shellcheck disable=SC2086
    set -- $rest
    printf '%s' "$2"
}

# True if PID is alive (exists and is no zombie) and its comm is NAME (if given).
# PID 1 here reaps exited daemons only every ~2 s, so /proc/PID lingers as 'Z': do not count that as alive.
tb_pid_alive() {
    local pid=$1 name=${2:-} state comm
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    state=$(tb_proc_state "$pid")
    [[ -n $state && $state != Z && $state != X ]] || return 1
    if [[ -n $name ]]; then
        { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || return 1
        [[ $comm == "$name" ]] || return 1
    fi
    return 0
}

# Pid stored in pid file $1 if that process is alive with comm $2; prints nothing otherwise.
tb_running_pid() {
    local pid
    [[ -r $1 ]] || return 1
    pid=$(tr -dc '0-9' <"$1")
    tb_pid_alive "$pid" "$2" || return 1
    printf '%s' "$pid"
}

# Wait until every pid given is gone or a zombie (up to $1 seconds); returns 1 on timeout.
tb_wait_dead() {
    local timeout=$1 deadline pid left
    shift
    deadline=$(awk -v t="$(tb_now)" -v d="$timeout" 'BEGIN { printf "%.3f", t + d }')
    while :; do
        left=0
        for pid in "$@"; do
            tb_pid_alive "$pid" && left=1
        done
        [[ $left == 0 ]] && return 0
        awk -v t="$(tb_now)" -v d="$deadline" 'BEGIN { exit !(t > d) }' && return 1
        sleep 0.05
    done
}

# Stop the daemon whose pid file is $1 and comm is $2: SIGTERM, wait up to $3 s (default 10), then SIGKILL.
tb_stop_daemon() {
    local pidfile=$1 name=$2 timeout=${3:-10} pid
    if pid=$(tb_running_pid "$pidfile" "$name"); then
        kill -TERM "$pid" 2>/dev/null || true
        if ! tb_wait_dead "$timeout" "$pid"; then
            tb_log "$name ($pid) did not stop in ${timeout}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            tb_wait_dead 5 "$pid" || true
        fi
        tb_log "stopped $name ($pid)"
    fi
    rm -f "$pidfile"
}

# All descendants of a pid, one per line, from one pass over /proc (no fork per process).
tb_descendants() {
    local top=$1 p stat rest
    local -A kids=()
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        { read -r stat <"/proc/$p/stat"; } 2>/dev/null || continue
        rest=${stat##*) }
        # shellcheck disable=SC2086
        set -- $rest
        kids[$2]+="$p "
    done
    local -a todo=("$top")
    while ((${#todo[@]})); do
        p=${todo[0]}
        todo=("${todo[@]:1}")
        for rest in ${kids[$p]:-}; do
            printf '%s\n' "$rest"
            todo+=("$rest")
        done
    done
}

# Pids of live processes whose comm is exactly $1.
tb_pids_by_comm() {
    local p comm
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        { read -r comm <"/proc/$p/comm"; } 2>/dev/null || continue
        [[ $comm == "$1" ]] && tb_pid_alive "$p" && printf '%s\n' "$p"
    done
    return 0
}

# True once something accepts TCP connections on 127.0.0.1:$1.
tb_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Poll the command "$@" until it succeeds, up to $1 seconds; 1 on timeout.
tb_wait_for() {
    local timeout=$1 deadline
    shift
    deadline=$(awk -v t="$(tb_now)" -v d="$timeout" 'BEGIN { printf "%.3f", t + d }')
    until "$@"; do
        awk -v t="$(tb_now)" -v d="$deadline" 'BEGIN { exit !(t > d) }' && return 1
        sleep 0.1
    done
}

# The test sshd: start it (detached, its own config), wait until it accepts connections.
tb_start_sshd() {
    mkdir -p /run/sshd && chmod 755 /run/sshd
    /usr/sbin/sshd -t -f "$TB_SSH/sshd_config" || tb_die "sshd_config does not pass sshd -t"
    setsid /usr/sbin/sshd -f "$TB_SSH/sshd_config" -E "$TB_LOG/sshd.log" </dev/null >/dev/null 2>&1 9>&- ||
        tb_die "sshd did not start, see $TB_LOG/sshd.log"
    tb_wait_for 10 tb_port_open "$TB_SSH_PORT" || tb_die "sshd not listening on $TB_HOST:$TB_SSH_PORT, see $TB_LOG/sshd.log"
}

# Stop the test sshd and, with $1 = drop, every connection it serves (its children):
# stopping only the listener leaves established sessions alive.
tb_stop_sshd() {
    local pid
    local -a targets
    if pid=$(tb_running_pid "$TB_RUN/sshd.pid" sshd); then
        targets=("$pid")
        # shellcheck disable=SC2207
        [[ ${1:-} == drop ]] && targets+=($(tb_descendants "$pid"))
        kill -TERM "${targets[@]}" 2>/dev/null || true
        tb_wait_dead 10 "${targets[@]}" || kill -KILL "${targets[@]}" 2>/dev/null || true
        tb_log "stopped sshd ($pid)$( ((${#targets[@]} > 1)) && echo ", sessions: ${targets[*]:1}")"
    fi
    rm -f "$TB_RUN/sshd.pid"
}
