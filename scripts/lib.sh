# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/demo.sh (sourced, not executed).
#
# - ensure_debian_packages PKG...: installs the missing Debian packages (as root, or through
#   a password-less sudo), with postfix preseeded to "No configuration", and stops the
#   system services apt may have started: tests and the demo run their own instances.
# - ensure_venv [EXTRAS]: creates .venv if missing and runs `pip install -e .[EXTRAS]` only
#   when pyproject.toml (or the requested extras) changed since the last install.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.caducee-install-stamp"
# Playwright must use Debian's chromium: never download browsers.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The command prefix that runs something as root ("" when we are root), or fails.
_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

_pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# System services shipped by the packages we install; tests start their own instances
# on free loopback ports, so a system instance only holds ports and CPU.
SYSTEM_SERVICES=(postfix dovecot postgresql unbound nsd)

_stop_system_services() {
    local svc
    for svc in "${SYSTEM_SERVICES[@]}"; do
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            if systemctl is-active --quiet "$svc" 2>/dev/null; then
                log "stopping the system $svc service (tests run their own instances)"
                _as_root systemctl stop "$svc" || true
                _as_root systemctl disable "$svc" >/dev/null 2>&1 || true
            fi
        elif [ -x "/etc/init.d/$svc" ]; then
            _as_root "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
        fi
    done
}

ensure_debian_packages() {
    command -v dpkg-query >/dev/null 2>&1 || {
        log "not a Debian system: skipping system packages ($*)"
        return 0
    }
    local missing=() pkg
    for pkg in "$@"; do
        _pkg_installed "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing missing Debian packages: ${missing[*]}"
    if ! _as_root true; then
        die "missing Debian packages: ${missing[*]}
run as root (or with password-less sudo), or install them yourself:
  apt-get install -y ${missing[*]}"
    fi
    # Postfix asks how to configure the system MTA; we want none (each test has its own).
    printf '%s\n' \
        'postfix postfix/main_mailer_type select No configuration' \
        'postfix postfix/mailname string localhost' \
        | _as_root debconf-set-selections
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        --no-install-recommends "${missing[@]}"
    _stop_system_services
}

# A Python >= 3.11 interpreter for the venv.
_find_python() {
    local cand
    for cand in python3.11 python3.12 python3.13 python3; do
        if command -v "$cand" >/dev/null 2>&1 \
            && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$cand"
            return 0
        fi
    done
    return 1
}

# ensure_venv [EXTRAS] — EXTRAS like "test" (empty: the base dependencies only).
ensure_venv() {
    local extras="${1:-}" py want have spec
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
        py="$(_find_python)" || die "Python >= 3.11 is required (Debian 12: apt-get install python3)"
        log "creating $VENV with $py"
        rm -rf "$VENV"
        if ! "$py" -m venv "$VENV" 2>/dev/null; then
            # Debian splits ensurepip out of the interpreter package.
            rm -rf "$VENV"
            ensure_debian_packages python3-venv
            "$py" -m venv "$VENV" || die "cannot create the virtual environment"
        fi
        rm -f "$STAMP"
    fi
    # pyproject.toml and the list of top-level packages: an editable install maps the
    # packages that existed when it ran, so a new package needs a new install.
    want="$( { cat "$REPO_ROOT/pyproject.toml"; ls -d "$REPO_ROOT"/*/__init__.py; } \
        | sha256sum | cut -d' ' -f1)"
    have="$(cat "$STAMP" 2>/dev/null || true)"
    # The stamp is "<hash> <extras>"; an install with the test extra
    # also serves a caller that wants no extra.
    if [ "$have" = "$want $extras" ] || { [ -z "$extras" ] && [ "${have%% *}" = "$want" ]; }; then
        return 0
    fi
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    log "installing the project into $VENV (pip install -e '$spec')"
    "$VENV/bin/python" -m pip install -q --upgrade pip || log "could not upgrade pip (continuing)"
    (cd "$REPO_ROOT" && "$VENV/bin/python" -m pip install -q -e "$spec")
    printf '%s %s\n' "$want" "$extras" > "$STAMP"
}
