"""The MIME index computed at delivery: ENVELOPE, BODYSTRUCTURE, sections, search fields."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstore.imap.fetch_items import Section, fetch_att
from mailstore.imap.lexer import Cursor
from mailstore.imap.sections import binary_section, body_section
from mailstore.mime_index import build_index
from tests.mailstore.imap import corpus, dovecot_oracle


def test_envelope_with_groups_quoted_names_and_encoded_words() -> None:
    idx = build_index(corpus.WITH_PDF)
    assert idx["envelope"].encode("latin-1") == (
        b'("Wed, 6 Mar 2024 08:15:00 +0000" "=?UTF-8?B?UsOpc3VsdGF0cyBkZSBiaW9sb2dpZQ==?=" '
        b'(("Martin, Claire" NIL "claire.martin" "chu-exemple.mssante.fr")) '
        b'(("Martin, Claire" NIL "claire.martin" "chu-exemple.mssante.fr")) '
        b'(("Martin, Claire" NIL "claire.martin" "chu-exemple.mssante.fr")) '
        b'(("Paul Durand" NIL "paul.durand" "cabinet.mssante.fr")'
        b'(NIL NIL "secretariat" "cabinet.mssante.fr")) '
        b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL '
        b'"<q-1@cabinet.mssante.fr>" "<pdf-1@chu-exemple.mssante.fr>")'
    )


def test_envelope_route_address_and_8bit_names_as_literals() -> None:
    env = build_index(corpus.NO_CONTENT_TYPE_GROUP)["envelope"].encode("latin-1")
    assert b'(("B" NIL "b" "x.fr")' not in env  # inside a group
    # RFC 3501 §9 env-to = "(" 1*address ")": no space between addresses.
    assert b'(NIL NIL "Equipe" NIL)(NIL NIL "a" "x.fr")("B" NIL "b" "x.fr")(NIL NIL NIL NIL)' \
        in env
    assert b'((NIL "@relay.fr" "reply" "x.fr"))' in env
    assert b"(({11}\r\nSecr\xe9tariat NIL" in env


def test_bodystructure_multipart_with_pdf() -> None:
    idx = build_index(corpus.WITH_PDF)
    assert idx["bodystructure"].encode("latin-1") == (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 25 0 NIL NIL NIL NIL)'
        b'("application" "pdf" ("name" "resultats.pdf") NIL "Biologie" "base64" 106 NIL '
        b'("attachment" ("filename" "resultats.pdf")) NIL NIL) "mixed" '
        b'("boundary" "----=_Part_0") NIL NIL NIL)'
    )
    assert idx["body"].encode("latin-1") == (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 25 0)'
        b'("application" "pdf" ("name" "resultats.pdf") NIL "Biologie" "base64" 106) "mixed")'
    )


def test_sections_of_a_forwarded_message_are_byte_exact() -> None:
    raw = corpus.FORWARDED
    tree = build_index(raw)["tree"]
    inner = corpus.WITH_PDF
    assert body_section(raw, tree, Section()) == raw
    assert body_section(raw, tree, Section((2,))) == inner
    assert body_section(raw, tree, Section((2,), "HEADER")) == inner[: inner.index(b"\r\n\r\n") + 4]
    assert body_section(raw, tree, Section((2,), "TEXT")) == inner[inner.index(b"\r\n\r\n") + 4 :]
    assert body_section(raw, tree, Section((2, 1))) == b"R=C3=A9sultats ci-joints."
    assert body_section(raw, tree, Section((2, 2), "MIME")).startswith(
        b"Content-Type: application/pdf;"
    )
    assert body_section(raw, tree, Section((1,), "MIME")) == b"Content-Type: text/plain\r\n\r\n"
    assert body_section(raw, tree, Section((2,), "HEADER.FIELDS", (b"subject", b"CC"))) == (
        b"Cc: undisclosed-recipients:;\r\n"
        b"Subject: =?UTF-8?B?UsOpc3VsdGF0cyBkZSBiaW9sb2dpZQ==?=\r\n\r\n"
    )
    assert body_section(raw, tree, Section((3,))) == b""
    assert body_section(raw, tree, Section((1,), "HEADER")) == b""
    assert binary_section(raw, tree, (2, 2)) == corpus.PDF
    assert binary_section(raw, tree, (2, 1)) == "Résultats ci-joints.".encode()
    assert binary_section(raw, tree, (9,)) is None


def test_single_part_message_has_only_part_one() -> None:
    raw = corpus.SIMPLE
    tree = build_index(raw)["tree"]
    assert body_section(raw, tree, Section((1,))) == raw[raw.index(b"\r\n\r\n") + 4 :]
    assert body_section(raw, tree, Section((1, 1))) == b""
    assert body_section(raw, tree, Section((2,))) == b""


def test_header_fields_for_search_are_decoded() -> None:
    idx = build_index(corpus.EIGHT_BIT_HEADERS)
    fields = dict(idx["fields"])
    assert fields["from"] == "Élodie Chérie <elodie@cabinet.mssante.fr>"
    assert fields["subject"] == "Ordonnance rénouvelée"
    assert fields["x-mss-mes"] == "FIN"
    assert idx["sent"] == "2024-03-09"
    alt = dict(build_index(corpus.ALTERNATIVE)["fields"])
    assert alt["from"] == "René Lévy <rene.levy@clinique.mssante.fr>"
    assert alt["subject"] == "Courrier de sortie – patient"
    assert build_index(corpus.HEADERS_ONLY)["sent"] is None


def test_index_is_json_and_keeps_the_webmail_fields() -> None:
    idx = build_index(corpus.ALTERNATIVE)
    again = json.loads(json.dumps(idx))
    assert again == idx
    assert idx["headers"]["subject"].startswith("=?utf-8?q?Courrier")
    assert idx["size"] == len(corpus.ALTERNATIVE)


def test_deep_nesting_and_many_parts_are_bounded() -> None:
    depth = 300
    raw = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    ) + b"\r\nleaf\r\n"
    idx = build_index(raw)
    assert idx["bodystructure"].startswith("(")
    many = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + b"--x\r\n\r\np\r\n" * 20000
    assert build_index(many)["size"] == len(many)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_index_without_error(raw: bytes) -> None:
    idx = build_index(raw)
    assert idx["bodystructure"].startswith("(")

    def check(node: dict[str, Any]) -> None:
        assert 0 <= node["h"] <= node["b"] <= node["e"] <= len(raw)
        for child in node.get("p", []):
            check(child)
        if "m" in node:
            check(node["m"])

    check(idx["tree"])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["text/plain", "text/html", "application/pdf", "image/png"]),
            st.binary(min_size=0, max_size=40).filter(lambda b: b"--" not in b),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_generated_multiparts_round_trip_their_parts(parts: list[tuple[str, bytes]]) -> None:
    body = b"".join(
        b"--BOUND\r\nContent-Type: " + t.encode() + b"\r\n\r\n" + content + b"\r\n"
        for t, content in parts
    )
    raw = b"Content-Type: multipart/mixed; boundary=BOUND\r\n\r\n" + body + b"--BOUND--\r\n"
    tree = build_index(raw)["tree"]
    for i, (_, content) in enumerate(parts, 1):
        assert body_section(raw, tree, Section((i,))) == content


SECTIONS = ["HEADER", "TEXT", "1", "1.MIME", "2", "2.MIME", "1.1", "1.2", "2.HEADER", "2.TEXT",
            "2.1", "2.2", "2.1.MIME", "HEADER.FIELDS (FROM SUBJECT)",
            "HEADER.FIELDS.NOT (FROM SUBJECT)", "3", "2.2.1"]


def _value(cur: Cursor) -> object:
    b = cur.peek()
    if b == 0x28:
        cur.pos += 1
        items = []
        while cur.peek() != 0x29:
            items.append(_value(cur))
            if cur.peek() == 0x20:
                cur.pos += 1
        cur.pos += 1
        return items
    if b in (0x22, 0x7B):
        return cur.string().lower()
    if cur.take(b"NIL"):
        return None
    return cur.number(maximum=2**63)


@pytest.mark.skipif(not dovecot_oracle.available(), reason="needs Dovecot's imap and root")
def test_same_answers_as_dovecot() -> None:
    """ENVELOPE, BODY, BODYSTRUCTURE and BODY[section] as Dovecot computes them (CRLF mail)."""
    messages = [m for name, m in corpus.ALL.items() if name != "bare_lf"]
    script = b"".join(
        b"a%d APPEND INBOX {%d+}\r\n" % (i, len(m)) + m + b"\r\n" for i, m in enumerate(messages)
    )
    items = " ".join(f"BODY.PEEK[{s}]" for s in SECTIONS)
    script += f"s SELECT INBOX\r\nf FETCH 1:* (ENVELOPE BODY BODYSTRUCTURE {items})\r\n".encode()
    out = dovecot_oracle.run_script(script + b"z LOGOUT\r\n")
    responses = list(re.finditer(rb"\* (\d+) FETCH \(", out))
    assert len(responses) == len(messages)
    for m, raw in zip(responses, messages, strict=True):
        cur = Cursor(out, m.end())
        theirs: dict[bytes, object] = {}
        while cur.peek() != 0x29:
            name = re.compile(rb"[A-Z0-9.]+(\[[^\]]*\])?").match(out, cur.pos)
            assert name is not None
            cur.pos = name.end() + 1
            theirs[name.group(0)] = _value(cur)
            if cur.peek() == 0x20:
                cur.pos += 1
        idx = build_index(raw)
        for key in ("ENVELOPE", "BODY", "BODYSTRUCTURE"):
            ours = _value(Cursor(idx[key.lower()].encode("latin-1")))
            assert ours == theirs[key.encode()], key
        for s in SECTIONS:
            att = fetch_att(Cursor(f"BODY[{s}]".encode()))
            assert att.section is not None
            ours_bytes = body_section(raw, idx["tree"], att.section).lower()
            assert ours_bytes == (theirs.get(f"BODY[{s}]".encode()) or b""), s
