#!/usr/bin/env bash
# Stop and start again only the test sshd (127.0.0.1:2222), to simulate a dropped connection.
# Established connections are cut too (their per-connection sshd processes are ended): an asyncssh
# client sees its connection lost, and a new connection succeeds once this script returns.
#   restart_sshd.sh [DOWN_SECONDS]   keep the server down that long before starting it (default 0)
#   restart_sshd.sh --keep-sessions  restart the listener only, established connections stay
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"
[[ $(id -u) == 0 ]] || tb_die "run as root"
[[ -f $TB_SSH/sshd_config ]] || tb_die "no $TB_SSH/sshd_config: run setup.sh first"

mode=drop down=0
for arg in "$@"; do
    case $arg in
        --keep-sessions) mode=keep ;;
        *) [[ $arg =~ ^[0-9]+([.][0-9]+)?$ ]] || tb_die "usage: $0 [DOWN_SECONDS] [--keep-sessions]"; down=$arg ;;
    esac
done

T0=$(tb_now)
tb_stop_sshd "$mode"
[[ $down == 0 ]] || sleep "$down"
tb_start_sshd
tb_log "sshd restarted in $(tb_since "$T0")s (pid $(cat "$TB_RUN/sshd.pid"))"
