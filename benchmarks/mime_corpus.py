"""A deterministic corpus of realistic health-messaging MIME messages of mixed sizes.

Shapes (by share of the corpus): plain text (55 %), text + HTML alternative (30 %),
mixed with a PDF report attachment (12 %; 8 KB – 1 MB, median about 30 KB),
mixed with two PDFs and a forwarded message/rfc822 (3 %): about 17 KB a message on
average, 170 MB for 10,000. Subjects and names are French
with accents (RFC 2047 encoded-words); bodies are quoted-printable UTF-8. A marker word
(:data:`SEARCH_TERM`) sits in the body of one message in :data:`SEARCH_EVERY`, so a
``SEARCH TEXT`` has a known answer.
"""

from __future__ import annotations

import datetime
import os
import pickle
import random
import tempfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

#: Bump when the generator changes, to invalidate cached corpora.
CORPUS_VERSION = 1
SEARCH_TERM = "scintigraphie"
SEARCH_EVERY = 97

_FIRST = ["Amélie", "Benoît", "Cécile", "Damien", "Élodie", "François", "Gaëlle", "Hélène",
          "Jérôme", "Léa", "Loïc", "Maëlle", "Noël", "Océane", "Rémi", "Zoé"]
_LAST = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
         "Lefèvre", "Moreau", "Girard", "Fournier", "Lambert", "Bonnet", "François", "Mercier"]
_SUBJECTS = [
    "Compte rendu de consultation", "Résultats de biologie", "Lettre de sortie",
    "Demande d'avis", "Ordonnance renouvelée", "Compte rendu opératoire",
    "Bilan cardiologique", "Suivi post-opératoire", "Résultats d'imagerie", "Adressage",
]
_WORDS = [
    "patient", "patiente", "consultation", "ordonnance", "examen", "biologie", "radiologie",
    "suivi", "traitement", "posologie", "allergie", "antécédents", "tension", "artérielle",
    "glycémie", "bilan", "hospitalisation", "sortie", "rendez-vous", "confrère",
    "diagnostic", "imagerie", "échographie", "électrocardiogramme", "kinésithérapie",
    "prélèvement", "hémoglobine", "créatinine", "surveillance", "évolution", "favorable",
    "douleur", "thoracique", "dyspnée", "fièvre", "prescription", "contrôle", "semaines",
    "mois",
]


@dataclass(frozen=True)
class CorpusMessage:
    index: int
    raw: bytes  # CRLF line ends, as sent over the wire
    flags: tuple[str, ...]  # IMAP system flags, e.g. ("\\Seen",)
    internal_date: datetime.datetime

    @property
    def message_id(self) -> str:
        return f"<corpus-{self.index}@bench.test>"


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    local = f"{first}.{last}".lower()
    ascii_local = local.encode("ascii", "ignore").decode() or "dr"
    return f"Dr {first} {last}", f"{ascii_local}@hopital-{rng.randint(1, 40)}.mssante.fr"


def _paragraphs(rng: random.Random, size: int, marker: bool) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        w = rng.choice(_WORDS)
        words.append(w)
        length += len(w) + 1
    if marker:
        words.insert(rng.randrange(len(words) + 1), SEARCH_TERM)
    lines = [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
    paras = ["\n".join(lines[i:i + 5]) + "." for i in range(0, len(lines), 5)]
    return "Bonjour cher confrère,\n\n" + "\n\n".join(paras) + "\n\nBien confraternellement,\n"


def _pdf(rng: random.Random, size: int) -> bytes:
    """A small but well-formed PDF whose content stream pads it to about ``size`` bytes."""
    noise = rng.randbytes(max(0, size - 600))
    stream = zlib.compress(b"BT /F1 12 Tf 72 720 Td (Compte rendu) Tj ET\n", 1) + noise
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream
        + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1, xref)
    return bytes(out)


def _pdf_size(rng: random.Random) -> int:
    return int(min(1_000_000, max(8_000, rng.lognormvariate(10.3, 0.9))))  # median ≈ 30 KB


def make(index: int, seed: int = 7) -> CorpusMessage:
    rng = random.Random(seed * 1_000_003 + index)
    sender_name, sender = _person(rng)
    rcpt_name, rcpt = _person(rng)
    date = datetime.datetime(2024, 1, 1, 8, tzinfo=datetime.UTC) + datetime.timedelta(
        minutes=17 * index + rng.randint(0, 16))
    patient = f"{rng.choice(_FIRST)} {rng.choice(_LAST).upper()}"
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"{sender_name} <{sender}>"
    msg["To"] = f"{rcpt_name} <{rcpt}>"
    if rng.random() < 0.2:
        msg["Cc"] = "Secrétariat <secretariat@clinique.mssante.fr>"
    msg["Subject"] = f"{rng.choice(_SUBJECTS)} — {patient}"
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<corpus-{index}@bench.test>"
    if rng.random() < 0.3:
        msg["In-Reply-To"] = f"<corpus-{max(0, index - rng.randint(1, 50))}@bench.test>"
    text = _paragraphs(rng, rng.randint(600, 5000), marker=index % SEARCH_EVERY == 0)
    shape = rng.random()
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if shape >= 0.55:
        html = "<html><body>" + "".join(
            f"<p>{p.replace(chr(10), '<br>')}</p>" for p in text.split("\n\n")
        ) + "</body></html>"
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    if shape >= 0.85:
        msg.add_attachment(
            _pdf(rng, _pdf_size(rng)), maintype="application", subtype="pdf",
            filename=f"compte-rendu-{index}.pdf",
        )
    if shape >= 0.97:
        msg.add_attachment(
            _pdf(rng, _pdf_size(rng)), maintype="application", subtype="pdf",
            filename=f"résultats-{index}.pdf",
        )
        inner = EmailMessage(policy=SMTP)
        inner["From"], inner["To"] = msg["To"], msg["From"]
        inner["Subject"] = "Demande initiale"
        inner["Date"] = format_datetime(date - datetime.timedelta(days=3))
        inner.set_content(_paragraphs(rng, 400, False), charset="utf-8",
                          cte="quoted-printable")
        msg.add_attachment(inner)
    raw = msg.as_bytes(policy=SMTP)
    flags: list[str] = []
    if rng.random() < 0.7:
        flags.append("\\Seen")
    if rng.random() < 0.05:
        flags.append("\\Flagged")
    if rng.random() < 0.1:
        flags.append("\\Answered")
    return CorpusMessage(index, raw, tuple(flags), date)


def corpus(count: int, seed: int = 7) -> Iterator[CorpusMessage]:
    for i in range(count):
        yield make(i, seed)


def _make_range(args: tuple[int, int, int]) -> list[CorpusMessage]:
    start, stop, seed = args
    return [make(i, seed) for i in range(start, stop)]


def cached_corpus(count: int, seed: int = 7, cache_dir: Path | None = None) -> list[CorpusMessage]:
    """``corpus(count, seed)`` as a list, built on all cores once and cached in a temp dir.

    (The ``email`` package's header folding makes building 10,000 messages take a minute.)
    """
    cache_dir = cache_dir or Path(tempfile.gettempdir()) / "caducee-bench-cache"
    cache = cache_dir / f"corpus-v{CORPUS_VERSION}-{seed}-{count}.pickle"
    # A cached corpus of at least ``count`` messages serves (message i never depends on count).
    for path in sorted(cache_dir.glob(f"corpus-v{CORPUS_VERSION}-{seed}-*.pickle")):
        if int(path.stem.rsplit("-", 1)[1]) < count:
            continue
        try:
            with path.open("rb") as f:
                loaded: list[CorpusMessage] = pickle.load(f)
        except (OSError, pickle.PickleError, EOFError):
            continue
        if len(loaded) >= count:
            return loaded[:count]
    step = 500
    chunks = [(i, min(count, i + step), seed) for i in range(0, count, step)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        messages = [m for part in pool.map(_make_range, chunks) for m in part]
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(messages, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(cache)
    return messages


def expected_matches(count: int) -> int:
    """How many messages of ``corpus(count)`` contain :data:`SEARCH_TERM`."""
    return len(range(0, count, SEARCH_EVERY))
