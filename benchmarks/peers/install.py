"""Install the Debian packages a benchmark's peers need, as scripts/test.sh does.

The benchmarks start their peers themselves; on a fresh machine that includes installing
them (Postfix preseeded to "No configuration", system services stopped afterwards), through
``ensure_debian_packages`` of ``scripts/lib.sh`` so there is one way of doing it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "scripts" / "lib.sh"


def ensure_packages(binary: str, *packages: str) -> None:
    """Install ``packages`` unless ``binary`` is already on PATH (or in /usr/sbin)."""
    if shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/lib/postfix/sbin"):
        return
    result = subprocess.run(
        ["bash", "-c", f'source "{LIB}" && ensure_debian_packages "$@"', "ensure", *packages],
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"could not install {', '.join(packages)} (run as root)")
