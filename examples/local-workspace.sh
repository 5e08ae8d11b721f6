#!/bin/sh
# A provisioner command that makes real local "workspaces":
#
#     prebuilds provision --exec examples/local-workspace.sh
#
# A workspace is a directory, ${PREBUILDS_WORKSPACES:-/tmp/prebuilds-workspaces}/<workspace id>,
# and a long-running process (it rewrites <dir>/alive every second) whose pid is in
# <dir>/workspace.pid. `start` creates both (or finds them running), `stop` ends the process and
# keeps the directory, `delete` ends the process and removes the directory. Every transition is
# safe to run twice: a provisioner that died mid-job may hand it out again.
#
# The job arrives in PREBUILDS_* environment variables and as JSON on stdin (kept as
# <dir>/job.json: it carries the preset's parameters). The script reports its agent itself with
# PREBUILDS_AGENT=<state> lines on stdout, so `ready` means the process is really up; without
# those lines `prebuilds provision` would report the agent ready when the script exits 0.
# Anything on stderr ends up in the job's error if the script fails.
set -eu

root=${PREBUILDS_WORKSPACES:-/tmp/prebuilds-workspaces}
case ${PREBUILDS_WORKSPACE_ID:-} in
'' | */* | .*)
    echo "bad or missing PREBUILDS_WORKSPACE_ID: '${PREBUILDS_WORKSPACE_ID:-}'" >&2
    exit 2
    ;;
esac
dir=$root/$PREBUILDS_WORKSPACE_ID
pidfile=$dir/workspace.pid

# A process that exited but was not yet reaped by its new parent (a zombie) is not alive.
alive() {
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case $state in Z*) return 1 ;; esac
}

running() {
    [ -s "$pidfile" ] && alive "$(cat "$pidfile")"
}

# The workspace process leads its own process group (setsid): end all of it, politely first.
stop_process() {
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -TERM "-$pid" 2>/dev/null || true
    waited=0
    while alive "$pid" && [ "$waited" -lt 50 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "-$pid" 2>/dev/null || true
    rm -f "$pidfile"
    echo "stopped workspace process $pid"
}

case $PREBUILDS_TRANSITION in
start)
    mkdir -p "$dir"
    cat >"$dir/job.json"
    echo "PREBUILDS_AGENT=starting"
    echo "building $PREBUILDS_WORKSPACE_NAME ($PREBUILDS_ORGANIZATION/$PREBUILDS_TEMPLATE@$PREBUILDS_VERSION/$PREBUILDS_PRESET) with parameters $PREBUILDS_PARAMETERS"
    if running; then
        echo "workspace process $(cat "$pidfile") already running"
    else
        rm -f "$pidfile" "$dir/alive"
        # Detached: its own session, no inherited pipes (the provisioner reads this script's
        # output until every copy of it is closed), so it outlives the job.
        setsid /bin/sh -c '
            echo $$ >"$1/workspace.pid"
            trap "exit 0" TERM
            while :; do
                date -u +%Y-%m-%dT%H:%M:%SZ >"$1/alive"
                sleep 1
            done
        ' workspace "$dir" </dev/null >>"$dir/workspace.log" 2>&1 &
        waited=0
        until [ -s "$dir/alive" ] && [ -s "$pidfile" ]; do
            if [ "$waited" -ge 100 ]; then
                echo "the workspace process did not come up within 10 s" >&2
                exit 1
            fi
            sleep 0.1
            waited=$((waited + 1))
        done
        echo "workspace process $(cat "$pidfile") running in $dir"
    fi
    echo "PREBUILDS_AGENT=ready"
    ;;
stop)
    stop_process
    ;;
delete)
    stop_process
    rm -rf "$dir"
    echo "removed $dir"
    ;;
*)
    echo "unknown transition '$PREBUILDS_TRANSITION'" >&2
    exit 2
    ;;
esac
