#!/usr/bin/env bash
# Starts the demo platform in the foreground; idempotent and self-installing.
#
#   scripts/demo.sh                   # data directory ./demo-data
#   scripts/demo.sh --help            # arguments go to `caducee demo`
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ensure_venv
exec "$VENV/bin/caducee" demo "$@"
