"""One scripted Python ``imaplib`` session over the STARTTLS port: every mailbox and
message command a desktop client uses, a BAD answer to bad syntax after which the same
client carries on (issue 5 «must hold»; SQLite and PostgreSQL)."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Sequence

import pytest

from tests.mailstore.imap import corpus
from tests.mailstore.imap.harness import ImapHarness

PASSWORD = "secret-password"


def _names(listing: Sequence[object]) -> dict[str, str]:
    """``LIST``/``LSUB`` answer lines → name: attributes (imaplib gives ``[None]`` for none)."""
    out = {}
    for line in listing:
        if line is None:
            continue
        assert isinstance(line, bytes), line
        m = re.fullmatch(rb'\(([^)]*)\) "/" "?([^"]*)"?', line)
        assert m, line
        out[m.group(2).decode()] = m.group(1).decode()
    return out


def test_imaplib_scripted_session_over_starttls(imap_server: ImapHarness) -> None:
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    imap_server.deliver(acc, [corpus.SIMPLE, corpus.WITH_PDF, corpus.ALTERNATIVE])
    client = imap_server.imap()
    assert "STARTTLS" in client.capabilities and "LOGINDISABLED" in client.capabilities
    started, _ = client.starttls(ssl_context=imap_server.client_ssl())  # RFC 3501 §6.2.1
    assert started == "OK"
    assert "AUTH=PLAIN" in client.capabilities and "LOGINDISABLED" not in client.capabilities
    assert client.login("claire@chu.test", PASSWORD)[0] == "OK"

    # CREATE, RENAME, DELETE, SUBSCRIBE/UNSUBSCRIBE, LIST, LSUB (RFC 3501 §6.3.3-9)
    assert client.create("Patients/Dupont") == ("OK", [b"CREATE completed"])
    assert client.create("Brouillon")[0] == "OK"
    assert client.rename("Brouillon", "Archives/2024")[0] == "OK"
    listed, listing = client.list('""', "*")
    names = _names(listing)
    assert listed == "OK" and "Brouillon" not in names
    assert names["Archives/2024"] == "\\HasNoChildren"
    assert names["Patients"] == "\\HasChildren"
    assert names["Sent"] == "\\HasNoChildren \\Sent"
    assert client.unsubscribe("Patients/Dupont")[0] == "OK"
    assert "Patients/Dupont" not in _names(client.lsub('""', "Patients/*")[1])
    assert client.subscribe("Patients/Dupont")[0] == "OK"
    assert _names(client.lsub('""', "Patients/*")[1]) == {"Patients/Dupont": ""}
    assert client.delete("Archives/2024")[0] == "OK"
    assert "Archives/2024" not in _names(client.list('""', "Archives*")[1])
    deleted, data = client.delete("Archives/2024")
    assert deleted == "NO" and data[0].startswith(b"[NONEXISTENT]")

    # EXAMINE (§6.3.2): read-only, COPY still allowed (§6.4.7), TRYCREATE for a missing target
    assert client.select("INBOX", readonly=True) == ("OK", [b"3"])
    typ, data = client.store("1", "+FLAGS", "(\\Seen)")
    assert typ == "NO"
    typ, data = client.copy("1:2", "Patients/Dupont")
    assert typ == "OK" and re.fullmatch(rb"\[COPYUID \d+ 1:2 1:2\] COPY completed", data[0])
    typ, data = client.copy("1", "Nope")
    assert typ == "NO" and data[0].startswith(b"[TRYCREATE]")
    assert client.unselect()[0] == "OK"  # RFC 3691
    assert client.state == "AUTH"

    # SELECT, UID MOVE (RFC 6851), STORE + EXPUNGE, CHECK, CLOSE
    assert client.select("INBOX") == ("OK", [b"3"])
    typ, data = client.uid("FETCH", "1:*", "(UID)")
    assert typ == "OK" and len(data) == 3
    assert client.uid("MOVE", "2", "Patients/Dupont")[0] == "OK"
    assert client.response("EXPUNGE") == ("EXPUNGE", [b"2"])
    assert client.status("Patients/Dupont", "(MESSAGES UIDNEXT)") == (
        "OK", [b"Patients/Dupont (MESSAGES 3 UIDNEXT 4)"]
    )
    assert client.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert client.expunge() == ("OK", [b"1"])
    assert client.check() == ("OK", [b"CHECK completed"])

    # Bad syntax: BAD with a reason, the connection and the selected mailbox survive.
    with pytest.raises(imaplib.IMAP4.error, match=r"FETCH command error: BAD \[b'.+'\]"):
        client.fetch("1", "(FLAGS")
    assert client.noop()[0] == "OK"
    typ, data = client.fetch("1:*", "(UID)")
    assert typ == "OK" and data == [b"1 (UID 3)"]

    assert client.close()[0] == "OK"  # §6.4.2: expunges nothing more here
    assert client.state == "AUTH"
    assert client.select("Patients/Dupont", readonly=True) == ("OK", [b"3"])
    assert client.close()[0] == "OK"
    assert client.delete("Patients/Dupont")[0] == "OK"
    assert client.status("INBOX", "(MESSAGES)") == ("OK", [b"INBOX (MESSAGES 1)"])
    assert client.logout()[0] == "BYE"
