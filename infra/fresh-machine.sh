#!/usr/bin/env bash
# A fresh Debian machine in a container, to show that the README's commands set themselves up:
# `git clone …; cd …; make test`, with nothing installed beforehand but git, make and Python 3.11.
#
#   infra/fresh-machine.sh image              build workbook/fresh-machine:bookworm (cached)
#   infra/fresh-machine.sh root [CMD]         as root, with its own Docker engine: clone, then CMD
#                                             (default `make test`)
#   infra/fresh-machine.sh learner [CMD]      as the non-root user `learner`, no Docker socket, no
#                                             sudo: clone, then CMD (default `make test`)
#
# The machine: `workbook/debian-base:bookworm` (debootstrap minbase, infra/images/README.md) plus
# Debian's git, make and python3 (3.11), nothing else. The only addition is this host's CA bundle,
# because this network's TLS is re-signed (DESIGN.md); on the open internet it is not needed.
# The clone is of the COMMITTED state of this checkout (HEAD, mounted read-only at /src).
#
# `root` runs dockerd inside the container, so the container gets the privileges a Docker engine
# needs without --privileged: all capabilities but SYS_RESOURCE, no seccomp/apparmor profile, the
# host's cgroup tree (cgroup v1) with every device allowed, and /var/lib/docker on a host
# directory (overlay2 cannot stack on the container's own overlay). The inner engine puts its
# containers under the cgroup parent /wb-fresh-<name>, away from the host engine's /docker.
#
# Environment:
#   FRESH_LOG        log file on the host (default /tmp/wb-fresh-<mode>.log); CMD's output goes to it
#                    and to stdout
#   FRESH_APT        learner mode only: Debian packages root installs before the learner starts
#                    (e.g. the ones the learner's `make test` says are missing)
#   FRESH_NICE       niceness of CMD (default 10: the build machines are shared)
#   FRESH_KEEP=1     keep the container and the engine directory afterwards (for a post-mortem)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)

IMAGE=workbook/fresh-machine:bookworm
BASE=workbook/debian-base:bookworm
MODE=${1:-}
[ $# -gt 0 ] && shift
CMD=${*:-make test}
NICE=${FRESH_NICE:-10}
LOG=${FRESH_LOG:-/tmp/wb-fresh-$MODE.log}
HOST_CA=/etc/ssl/certs/ca-certificates.crt

say() { printf 'fresh-machine: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

build_image() {
    docker image inspect "$BASE" >/dev/null 2>&1 || {
        [ -x .venv/bin/python ] || fail "$BASE is missing: run make setup, then .venv/bin/workbook images build."
        say "building $BASE (debootstrap) …"
        .venv/bin/python -c 'from workbook.services.images import build_base; build_base(None, print)'
    }
    local ctx
    ctx=$(mktemp -d /tmp/wb-fresh-image.XXXXXX)
    cp "$HOST_CA" "$ctx/host-ca.crt"
    cat >"$ctx/Dockerfile" <<EOF
# A fresh Debian bookworm machine: nothing but git, make and Python 3.11 (Debian's python3).
FROM $BASE
# This network's TLS needs the host's CA bundle (DESIGN.md): as a local CA (kept when Debian's
# ca-certificates is installed later) and as the bundle until then.
COPY host-ca.crt /usr/local/share/ca-certificates/host-ca.crt
COPY host-ca.crt /etc/ssl/certs/ca-certificates.crt
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends git make python3 >/dev/null && rm -rf /var/lib/apt/lists/*
EOF
    local out
    out=$(docker build -q -t "$IMAGE" "$ctx" 2>&1) || { printf '%s\n' "$out" >&2; fail "docker build of $IMAGE failed."; }
    rm -rf "$ctx"
    say "image $IMAGE: $(docker run --rm "$IMAGE" sh -c 'python3 --version; git --version; make --version | head -1' | tr '\n' ';')"
}

# The script run inside the container, as root. $1 = mode; the rest from the environment.
inner_script() {
    cat <<'EOF'
set -euo pipefail
echo "fresh machine: $(. /etc/os-release; echo "$PRETTY_NAME"), $(python3 --version), user $FRESH_USER"
echo "start: $(date -u +%FT%TZ)"
if [ "$FRESH_USER" = root ]; then
    mkdir -p /etc/docker
    printf '{"cgroup-parent": "/%s"}\n' "$FRESH_NAME" >/etc/docker/daemon.json
    home=/root
else
    useradd -m learner
    if [ -n "${FRESH_APT:-}" ]; then
        echo "root installs: $FRESH_APT"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $FRESH_APT >/dev/null
        rm -rf /var/lib/apt/lists/*
    fi
    home=/home/learner
fi
cat >/tmp/run.sh <<'INNER'
set -uo pipefail
cd "$HOME"
# /src belongs to another user here; a clone from a URL would not need this one-off config.
printf '[safe]\n\tdirectory = *\n' >/tmp/clone.gitconfig
GIT_CONFIG_GLOBAL=/tmp/clone.gitconfig git clone -q file:///src workbook || exit 1
cd workbook
echo "commit: $(git log --oneline -1)"
SECONDS=0
nice -n "$FRESH_NICE" bash -c "$FRESH_CMD"
rc=$?
echo "exit status $rc after $SECONDS s ($((SECONDS / 60)) min $((SECONDS % 60)) s): $FRESH_CMD"
exit $rc
INNER
if [ "$FRESH_USER" = root ]; then
    HOME=$home bash /tmp/run.sh
else
    runuser -u learner -- env -i HOME=$home USER=learner PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
        FRESH_NICE="$FRESH_NICE" FRESH_CMD="$FRESH_CMD" bash /tmp/run.sh
fi
EOF
}

name="" engine=""
run_machine() {  # $1 = root | learner
    local user=$1 rc=0
    name="wb-fresh-$1-$$"
    build_image
    local args=(--name "$name" --init --shm-size 1g -v "$SRC:/src:ro"
                -e FRESH_USER="$user" -e FRESH_NAME="$name" -e FRESH_CMD="$CMD" -e FRESH_NICE="$NICE"
                -e FRESH_APT="${FRESH_APT:-}")
    if [ "$user" = root ]; then
        engine=$(mktemp -d /var/tmp/wb-fresh-docker.XXXXXX)  # on the host's disk, not overlay
        args+=(--cap-add ALL --cap-drop SYS_RESOURCE
               --security-opt seccomp=unconfined --security-opt apparmor=unconfined
               --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --device-cgroup-rule 'a *:* rwm'
               -v "$engine:/var/lib/docker")
    fi
    cleanup() {
        [ "${FRESH_KEEP:-0}" = 1 ] && { say "kept container $name and ${engine:-no engine dir}"; return; }
        docker rm -f "$name" >/dev/null 2>&1 || true
        if [ -n "$engine" ]; then
            rm -rf "$engine"
            # the inner engine's (now empty) cgroups
            find /sys/fs/cgroup/*/"$name" -depth -type d -exec rmdir {} + 2>/dev/null || true
        fi
    }
    trap cleanup EXIT
    say "container $name ($user): $CMD; log: $LOG"
    docker run "${args[@]}" "$IMAGE" bash -c "$(inner_script)" 2>&1 | tee "$LOG" || rc=$?
    rc=$(docker inspect -f '{{.State.ExitCode}}' "$name" 2>/dev/null || echo "$rc")
    say "container $name exited with $rc"
    return "$rc"
}

case "$MODE" in
    image) build_image ;;
    root|learner) run_machine "$MODE" ;;
    *) fail "usage: infra/fresh-machine.sh image | root [CMD] | learner [CMD]" ;;
esac
