"""A scripted aioimaplib session (an asyncio client) over IMAPS, every command family."""

from __future__ import annotations

import asyncio

import aioimaplib

from tests.mailstore.imap import corpus
from tests.mailstore.imap.harness import ImapHarness

PASSWORD = "secret-password"


async def test_aioimaplib_scripted_session(imap_server: ImapHarness) -> None:
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    imap_server.deliver(acc, [corpus.SIMPLE, corpus.WITH_PDF])
    client = aioimaplib.IMAP4_SSL(
        "127.0.0.1", imap_server.tls_port, ssl_context=imap_server.client_ssl(), timeout=20
    )
    await client.wait_hello_from_server()
    assert (await client.login("claire@chu.test", "bad-password")).result == "NO"
    assert (await client.login("claire@chu.test", PASSWORD)).result == "OK"
    assert client.has_capability("IDLE") and client.has_capability("MOVE")
    assert (await client.create("Dossiers/2024")).result == "OK"
    listing = await client.list('""', "*")
    assert any(b'"/" Dossiers/2024' in line for line in listing.lines)
    assert (await client.rename("Dossiers/2024", "Dossiers/2025")).result == "OK"
    assert (await client.subscribe("Dossiers/2025")).result == "OK"
    assert (await client.unsubscribe("Dossiers/2025")).result == "OK"
    status = await client.status("INBOX", "(MESSAGES UNSEEN)")
    assert status.lines[0] == b"INBOX (MESSAGES 2 UNSEEN 2)"
    appended = await client.append(corpus.ALTERNATIVE, mailbox="Drafts", flags="(\\Draft)")
    assert appended.result == "OK" and b"APPENDUID" in appended.lines[-1]
    selected = await client.select("INBOX")
    assert selected.result == "OK" and b"2 EXISTS" in selected.lines
    fetched = await client.fetch("2", "(UID BODY.PEEK[])")
    assert fetched.result == "OK" and bytes(fetched.lines[1]) == corpus.WITH_PDF
    found = await client.search("FROM", "martin")
    assert found.lines[0] == b"1 2"
    assert (await client.uid_search("SUBJECT", '"compte rendu"')).lines[0] == b"1"
    assert (await client.store("1", "+FLAGS", "(\\Answered)")).result == "OK"
    assert (await client.copy("1", "Archive")).result == "OK"
    assert (await client.uid("move", "2", "Dossiers/2025")).result == "OK"
    assert (await client.check()).result == "OK"
    assert (await client.expunge()).result == "OK"

    idle = await client.idle_start(timeout=10)
    await asyncio.sleep(0)  # let the IDLE command go out before the delivery
    pushed = client.wait_server_push(timeout=10)
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: imap_server.deliver(acc, [corpus.DIGEST])
    )
    lines = await pushed
    assert b"2 EXISTS" in lines
    client.idle_done()
    assert (await asyncio.wait_for(idle, 10)).result == "OK"
    assert (await client.close()).result == "OK"
    assert (await client.delete("Dossiers/2025")).result == "OK"
    assert (await client.logout()).result == "OK"
