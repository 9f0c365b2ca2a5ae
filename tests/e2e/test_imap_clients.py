"""Real IMAP clients against the in-process IMAP server: mbsync (isync), curl and neomutt
(driven in tmux). One server per module (SQLite); each test uses its own account."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from caducee.dbschema import upgrade
from mailstore.db import create_db_engine
from tests.mailstore.imap import corpus
from tests.mailstore.imap.harness import ImapHarness
from tests.support.net import wait_for

PASSWORD = "secret-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapHarness]:
    path = tmp_path_factory.mktemp("imap-e2e") / "caducee.db"
    url = f"sqlite:///{path}"
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    harness = ImapHarness(url).start()
    try:
        yield harness
    finally:
        harness.stop()


def _message(n: int) -> bytes:
    size = 200 + (n * 37) % 3000
    body = (f"Message {n}\r\n" + "x" * 70 + "\r\n") * (size // 80 + 1)
    return (
        f"From: sender{n % 7}@chu.test\r\nTo: claire@chu.test\r\nSubject: Message {n}\r\n"
        f"Date: Tue, 5 Mar 2024 10:{n % 60:02d}:00 +0100\r\nMessage-ID: <m{n}@chu.test>\r\n\r\n"
        + body
    ).encode()


def _mbsyncrc(h: ImapHarness, user: str, maildir: Path) -> Path:
    rc = maildir.parent / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount caducee\nHost localhost\nPort {h.tls_port}\nUser {user}\n"
        f"Pass {PASSWORD}\nSSLType IMAPS\nCertificateFile {h.pki.ca}\n\n"
        "IMAPStore remote\nAccount caducee\n\n"
        f"MaildirStore local\nPath {maildir}/\nInbox {maildir}/INBOX\nSubFolders Verbatim\n\n"
        "Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX Archive\nCreate Both\n"
        "Expunge Both\nSyncState *\nSync All\n"
    )
    return rc


def _mbsync(rc: Path) -> str:
    start = time.monotonic()
    proc = subprocess.run(
        ["mbsync", "-c", str(rc), "-V", "sync"], capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    print(f"mbsync took {time.monotonic() - start:.2f}s")
    return proc.stdout + proc.stderr


def _files(maildir: Path, box: str = "INBOX") -> list[Path]:
    return sorted((maildir / box / "cur").iterdir()) + sorted((maildir / box / "new").iterdir())


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="needs Debian's isync")
def test_mbsync_two_way_sync_of_1000_messages(server: ImapHarness, tmp_path: Path) -> None:
    user = "mbsync@chu.test"
    acc = server.create_account(user, PASSWORD)
    for start in range(0, 1000, 250):
        server.deliver(acc, [_message(n) for n in range(start, start + 250)])
    maildir = tmp_path / "Mail"
    maildir.mkdir()
    rc = _mbsyncrc(server, user, maildir)

    _mbsync(rc)
    files = _files(maildir)
    assert len(files) == 1000
    # mbsync stores LF line ends and marks new messages with an X-TUID field
    local = sorted(re.sub(rb"X-TUID: \S+\n", b"", f.read_bytes()) for f in files)
    assert local == sorted(_message(n).replace(b"\r\n", b"\n") for n in range(1000))

    # local changes: flag one message, delete another
    flagged, deleted = files[10], files[20]
    flagged_id = re.search(rb"Message-ID: <(m\d+)@", flagged.read_bytes()).group(1)
    deleted_id = re.search(rb"Message-ID: <(m\d+)@", deleted.read_bytes()).group(1)
    base, _, info = flagged.name.partition(":2,")
    flagged.rename(flagged.parent.parent / "cur" / f"{base}:2,{''.join(sorted(info + 'F'))}")
    deleted.unlink()
    # a server-side change: another client reads message m500
    client = server.login(user, PASSWORD)
    client.select("INBOX")
    _, found = client.search(None, "HEADER", "Message-ID", "<m500@chu.test>")
    client.store(found[0].decode(), "+FLAGS", "(\\Seen)")

    _mbsync(rc)
    _, found = client.search(None, "FLAGGED")
    assert len(found[0].split()) == 1
    _, data = client.fetch(found[0].decode(), "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert flagged_id in data[0][1]
    client.noop()
    _, found = client.search(None, "ALL")
    assert len(found[0].split()) == 999
    _, gone = client.search(None, "HEADER", "Message-ID", f"<{deleted_id.decode()}@chu.test>")
    assert gone == [b""]
    seen_local = [f for f in _files(maildir) if b"<m500@chu.test>" in f.read_bytes()]
    assert len(seen_local) == 1 and "S" in seen_local[0].name.partition(":2,")[2]
    client.logout()

    out = _mbsync(rc)  # nothing left to do
    assert re.search(r"Near: \+0/0 \*0/0 #0/0 -0/0\s+Far: \+0/0 \*0/0 #0/0 -0/0", out), out[-500:]
