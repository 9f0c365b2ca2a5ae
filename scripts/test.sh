#!/usr/bin/env bash
# Runs the whole test suite; idempotent and self-installing on a fresh Debian 12.
#
#   scripts/test.sh                 # lint (ruff), type-check (mypy), then the full pytest suite
#   scripts/test.sh -k smtp -x      # extra arguments go to pytest
#   CADUCEE_SKIP_LINT=1 scripts/test.sh tests/policy   # pytest only
#
# As root (or with password-less sudo) it installs the Debian packages the tests drive
# (real PostgreSQL, Postfix, Dovecot, swaks, mbsync, neomutt, Chromium, ...) when missing.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ensure_debian_packages \
    postgresql postfix dovecot-imapd dovecot-lmtpd swaks isync neomutt tmux \
    opendkim-tools gnupg chromium curl openssl sqlite3 unbound nsd \
    libnet-ssleay-perl libauthen-sasl-perl
ensure_venv test

status=0
if [ -z "${CADUCEE_SKIP_LINT:-}" ]; then
    log "ruff check"
    "$VENV/bin/ruff" check . || status=1
    log "mypy"
    "$VENV/bin/mypy" . || status=1
fi
# The full suite runs on both cores (tests use free ports and private temp dirs); one
# worker per module keeps module-scoped platforms from starting twice.
if [ "$#" -eq 0 ]; then
    set -- -n 2 --dist loadscope
fi
log "pytest $*"
"$VENV/bin/pytest" "$@" || status=$?
if [ "$status" -ne 0 ]; then
    log "FAILED (status $status)"
fi
exit "$status"
