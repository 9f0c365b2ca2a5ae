"""Dovecot's own imap binary, run in PREAUTH mode over a pipe, as a conformance oracle."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

IMAP_BIN = Path("/usr/lib/dovecot/imap")


def available() -> bool:
    return IMAP_BIN.exists() and os.geteuid() == 0 and shutil.which("runuser") is not None


def run_script(script: bytes, *, timeout: float = 30) -> bytes:
    """Run IMAP commands against a fresh Maildir (as ``nobody``); return the output."""
    root = Path(tempfile.mkdtemp(prefix="caducee-dovecot-"))
    try:
        (root / "mail").mkdir()
        (root / "run").mkdir()
        (root / "dovecot.conf").write_text(
            f"base_dir = {root}/run\nmail_location = maildir:{root}/mail\n"
            f"protocols = imap\nssl = no\nlog_path = {root}/log\nmail_fsync = never\n"
        )
        shutil.chown(root, "nobody")
        for p in root.rglob("*"):
            shutil.chown(p, "nobody")
        proc = subprocess.run(
            ["runuser", "-u", "nobody", "--", "env", "USER=nobody", f"HOME={root}",
             str(IMAP_BIN), "-c", str(root / "dovecot.conf")],
            input=script, capture_output=True, timeout=timeout, check=False,
        )
        return proc.stdout
    finally:
        shutil.rmtree(root, ignore_errors=True)
