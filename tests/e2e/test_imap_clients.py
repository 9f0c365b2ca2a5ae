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


def _mbsync(rc: Path, *flags: str) -> str:
    start = time.monotonic()
    proc = subprocess.run(
        ["mbsync", "-c", str(rc), *flags, "sync"], capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    print(f"mbsync took {time.monotonic() - start:.2f}s")
    return proc.stdout + proc.stderr


def _message_id(path: Path) -> bytes:
    found = re.search(rb"Message-ID: <(m\d+)@", path.read_bytes())
    assert found is not None
    return found.group(1)


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
    flagged_id = _message_id(flagged)
    deleted_id = _message_id(deleted)
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
    # (imaplib also hands back the unsolicited FETCH FLAGS that mbsync's change caused)
    assert any(isinstance(d, tuple) and flagged_id in d[1] for d in data)
    client.noop()
    _, found = client.search(None, "ALL")
    assert len(found[0].split()) == 999
    _, gone = client.search(None, "HEADER", "Message-ID", f"<{deleted_id.decode()}@chu.test>")
    assert gone == [b""]
    seen_local = [f for f in _files(maildir) if b"<m500@chu.test>" in f.read_bytes()]
    assert len(seen_local) == 1 and "S" in seen_local[0].name.partition(":2,")[2]
    client.logout()

    before = {f.name: f.read_bytes() for f in _files(maildir)}
    out = _mbsync(rc, "-Dn")  # nothing left to do: no message or flag crosses the wire
    sent = [line for line in out.splitlines() if line.startswith(">>> ")]
    assert sent, out[-500:]
    assert not [c for c in sent if re.search(r"BODY|APPEND|STORE|EXPUNGE|MOVE|COPY", c)], sent
    assert {f.name: f.read_bytes() for f in _files(maildir)} == before


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_lists_mailboxes_and_fetches_a_message(server: ImapHarness) -> None:
    user = "curl@chu.test"
    acc = server.create_account(user, PASSWORD)
    server.deliver(acc, [corpus.SIMPLE, corpus.WITH_PDF])
    base = f"imaps://localhost:{server.tls_port}"
    common = ["curl", "-sS", "--max-time", "30", "--cacert", str(server.pki.ca),
              "--user", f"{user}:{PASSWORD}"]
    listing = subprocess.run([*common, base + "/"], capture_output=True, timeout=60,
                             check=True).stdout
    assert b'* LIST (\\HasNoChildren) "/" INBOX' in listing
    assert b'* LIST (\\HasNoChildren \\Sent) "/" Sent' in listing
    fetched = subprocess.run([*common, base + "/INBOX;UID=2"], capture_output=True,
                             timeout=60, check=True).stdout
    assert fetched == corpus.WITH_PDF
    part = subprocess.run([*common, base + "/INBOX;UID=2;SECTION=1"], capture_output=True,
                          timeout=60, check=True).stdout
    assert part == b"R=C3=A9sultats ci-joints."
    refused = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "--cacert", str(server.pki.ca), "--user",
         f"{user}:wrong-password", base + "/"], capture_output=True, timeout=60, check=False,
    )
    assert refused.returncode != 0


class Tmux:
    """One tmux server on a private socket, one 200x50 window (ARCHITECTURE.md §9)."""

    def __init__(self, name: str, command: str, env: dict[str, str]) -> None:
        self.socket = f"caducee-{name}-{os.getpid()}"
        env_args = [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
        subprocess.run(
            ["tmux", "-L", self.socket, "new-session", "-d", "-s", "t", "-x", "200", "-y", "50",
             *env_args, command],
            check=True, timeout=30,
        )

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, "capture-pane", "-p", "-t", "t"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "t", *keys], check=True,
                       timeout=30)

    def wait(self, text: str, timeout: float = 20.0) -> str:
        wait_for(lambda: text in self.screen(), timeout, f"{text!r} on screen:\n{self.screen()}")
        return self.screen()

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], timeout=30, check=False)


@pytest.mark.skipif(shutil.which("neomutt") is None or shutil.which("tmux") is None,
                    reason="needs neomutt and tmux")
def test_neomutt_reads_a_pdf_message_and_deletes_it(server: ImapHarness, tmp_path: Path) -> None:
    user = "neomutt@chu.test"
    acc = server.create_account(user, PASSWORD)
    server.deliver(acc, [corpus.SIMPLE, corpus.WITH_PDF])
    rc = tmp_path / "neomuttrc"
    rc.write_text(
        f'set folder = "imaps://localhost:{server.tls_port}/"\n'
        'set spoolfile = "+INBOX"\n'
        f'set imap_user = "{user}"\nset imap_pass = "{PASSWORD}"\n'
        f'set ssl_ca_certificates_file = "{server.pki.ca}"\nset ssl_force_tls = yes\n'
        f'set certificate_file = "{tmp_path}/certificates"\n'
        'set header_cache = ""\nset message_cachedir = ""\n'
        f'set mailcap_path = "{tmp_path}/mailcap"\n'
        "set sort = date\nset delete = yes\nset move = no\nset mark_old = no\n"
        "set quit = yes\nset wait_key = no\nset timeout = 5\nset mail_check = 5\n"
        'set charset = "utf-8"\nset imap_check_subscribed = no\nset help = no\n'
    )
    (tmp_path / "mailcap").write_text("")
    tmux = Tmux("neomutt", f"neomutt -n -F {rc}", {
        "HOME": str(tmp_path), "TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
    })
    try:
        index = tmux.wait("sultats de biologie")
        assert "Compte rendu" in index and "Martin, Claire" in index
        tmux.keys("/", "biologie", "Enter")
        tmux.keys("Enter")
        pager = tmux.wait("[-- Type: application/pdf, Encoding: base64")
        assert "sultats ci-joints." in pager and "[-- Attachment #2: Biologie --]" in pager
        tmux.keys("v")  # the attachment list: the text part and the PDF
        attachments = tmux.wait("[applica/pdf, base64, 0.1K]")
        assert "Biologie" in attachments and "[text/plain, quoted, utf-8" in attachments
        tmux.keys("q")
        tmux.wait("[-- Attachment #2: Biologie --]")
        tmux.keys("q")
        tmux.wait("Compte rendu")
        tmux.keys("/", "biologie", "Enter")
        tmux.keys("d", "$")

        def remaining() -> bool:
            client = server.login(user, PASSWORD)
            try:
                _, data = client.status("INBOX", "(MESSAGES)")
                return b"(MESSAGES 1)" in data[0]
            finally:
                client.logout()

        wait_for(remaining, 20, "the deleted message to be expunged on the server")
        wait_for(lambda: "biologie" not in tmux.screen(), 20, "the index to drop the message")
        assert "Compte rendu" in tmux.screen()
        tmux.keys("q")
    finally:
        tmux.kill()
