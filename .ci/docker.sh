#!/usr/bin/env bash
# A private Docker engine for the container-backend tests (docs: shared/reference/sandbox.md §7).
#
#   eval "$(bash .ci/docker.sh start)"   # installs docker.io if needed, starts dockerd, builds
#                                        # the base image offline, prints `export DOCKER_HOST=...`
#   bash .ci/docker.sh stop              # removes our containers, stops dockerd and its containerd
#
# Fails soft: when the engine cannot start, `start` says why on stderr, prints
# `export TOOLGYM_DOCKER_SKIP_REASON=...` and exits 0, so the docker tests skip with that reason.
# dockerd runs with its own data root, exec root and socket under $TOOLGYM_DOCKER_ROOT
# (default /tmp/toolgym-docker), and with --iptables=false --bridge=none: no host network changes
# (the sandbox only ever uses network=none). No registry is needed: the base image is assembled
# from host files by `python -m toolgym.sandbox.build_image`.
#
# Environment: PYTHON (interpreter that can import toolgym; default python3),
#              TOOLGYM_DOCKER_ROOT, TOOLGYM_DOCKER_WAIT (seconds to wait for dockerd; default 60).
set -u

ROOT="${TOOLGYM_DOCKER_ROOT:-/tmp/toolgym-docker}"
SOCK="$ROOT/docker.sock"
HOST="unix://$SOCK"
PY="${PYTHON:-python3}"
WAIT="${TOOLGYM_DOCKER_WAIT:-60}"

log() { echo "docker.sh: $*" >&2; }

skip() {
    log "$1"
    printf 'export TOOLGYM_DOCKER_SKIP_REASON=%q\n' "$1"
    exit 0
}

engine_up() { docker -H "$HOST" version >/dev/null 2>&1; }

start() {
    [ "$(id -u)" = 0 ] || skip "not root: cannot start a Docker engine here"
    if engine_up; then
        log "dockerd already running at $HOST"
    else
        if ! command -v dockerd >/dev/null 2>&1; then
            log "installing docker.io (apt-get)"
            # apt-get writes progress to stdout; keep stdout for the export line only.
            if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                docker.io >&2; then
                apt-get update >&2 || true
                DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                    docker.io >&2 || skip "apt-get install docker.io failed"
            fi
        fi
        command -v docker >/dev/null 2>&1 || skip "no docker client on PATH"
        mkdir -p "$ROOT/data" "$ROOT/exec" || skip "cannot create $ROOT"
        log "starting dockerd (log: $ROOT/dockerd.log)"
        # setsid: the engine must not die with this shell; `stop` ends it by its pid file.
        setsid dockerd \
            --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$ROOT/dockerd.pid" \
            -H "$HOST" --iptables=false --ip-masq=false --bridge=none --ip-forward=false \
            --userland-proxy=false --storage-driver=overlay2 \
            </dev/null >"$ROOT/dockerd.log" 2>&1 &
        waited=0
        until engine_up; do
            if [ "$waited" -ge "$WAIT" ]; then
                tail -n 20 "$ROOT/dockerd.log" >&2
                stop >&2
                skip "dockerd did not answer on $HOST within ${WAIT}s (see $ROOT/dockerd.log)"
            fi
            sleep 1
            waited=$((waited + 1))
        done
        log "dockerd up after ${waited}s"
    fi
    log "building the sandbox base image offline"
    if ! DOCKER_HOST="$HOST" "$PY" -m toolgym.sandbox.build_image >&2; then
        skip "dockerd is up but building the base image failed (python -m toolgym.sandbox.build_image)"
    fi
    echo "export DOCKER_HOST=$HOST"
}

# Pids of processes whose command line mentions our private root (dockerd, its containerd and
# the containerd shims): selected by this unique path, never by a process name.
our_pids() {
    for d in /proc/[0-9]*; do
        if { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -qF -- "$ROOT/"; then
            echo "${d#/proc/}"
        fi
    done
}

stop() {
    if engine_up; then
        ids=$(docker -H "$HOST" ps -aq --filter label=toolgym.sandbox)
        [ -n "$ids" ] && docker -H "$HOST" rm -f $ids >/dev/null 2>&1
        vols=$(docker -H "$HOST" volume ls -q --filter label=toolgym.sandbox)
        [ -n "$vols" ] && docker -H "$HOST" volume rm -f $vols >/dev/null 2>&1
    fi
    if [ -f "$ROOT/dockerd.pid" ]; then
        pid=$(cat "$ROOT/dockerd.pid")
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null
        rm -f "$ROOT/dockerd.pid"
    fi
    left=$(our_pids)
    if [ -n "$left" ]; then
        kill $left 2>/dev/null
        sleep 1
        left=$(our_pids)
        [ -n "$left" ] && kill -9 $left 2>/dev/null
    fi
    # Leave no mounts behind under the data root (overlay2 layers, shm of dead containers).
    grep -F " $ROOT/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    log "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
