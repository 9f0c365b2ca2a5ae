"""``verify``: re-check the chain and the signed checkpoints; find and locate tampering.

The walk recomputes every entry's hash from its predecessor. Where the chain breaks, the
entries around the break are tested against the ways a journal is tampered with, so the
report says *what* happened and *where* (sequence numbers are those the entries were
written with):

* ``missing``   — a number is absent (row deleted), or entries were renumbered to close
  the gap;
* ``inserted``  — a foreign entry sits in the chain (later entries renumbered to make room);
* ``swapped``   — two neighbours exchanged places (by numbers or by contents);
* ``edited``    — an entry's fields (or its stored hash) were changed in place;
* ``checkpoint_mismatch`` — the chain is self-consistent but differs from a signed
  checkpoint: it was recomputed after an edit, somewhere before that checkpoint;
* ``truncated`` — the journal ends before the last signed checkpoint (database or file)
  or before the recorded head;
* ``bad_signature``, ``checkpoint_deleted``, ``fork``, ``head_mismatch`` — problems of the
  checkpoints and the head themselves;
* ``checkpoint_file_missing`` — the checkpoint file is gone while the database holds signed
  checkpoints (a warning only with ``allow_missing_file``, for a copy of the database or
  after the operator has established why).

Entries after the last checkpoint are protected by the chain only (an attacker holding
the database could rewrite that tail consistently); the report gives their number.
Speed: one SHA-256 and one JSON encoding per entry, read through the raw DB-API cursor
(server-side on PostgreSQL).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, bindparam, func, select

from audit import checkpoints
from audit.canonical import FIELDS, GENESIS, canonical_text, with_seq
from audit.journal import read_head
from audit.tables import audit_entry

EDITED = "edited"
MISSING = "missing"
INSERTED = "inserted"
SWAPPED = "swapped"
TRUNCATED = "truncated"
CHECKPOINT_MISMATCH = "checkpoint_mismatch"
CHECKPOINT_DELETED = "checkpoint_deleted"
BAD_SIGNATURE = "bad_signature"
FORK = "fork"
HEAD_MISMATCH = "head_mismatch"
CHECKPOINT_FILE_MISSING = "checkpoint_file_missing"

_FETCH = 20_000
#: French names of the problem kinds (shown to the security officer).
KIND_LABELS: dict[str, str] = {
    EDITED: "modification",
    MISSING: "suppression",
    INSERTED: "insertion",
    SWAPPED: "interversion",
    TRUNCATED: "fin tronquée",
    CHECKPOINT_MISMATCH: "chaîne recalculée",
    CHECKPOINT_DELETED: "point de contrôle supprimé",
    BAD_SIGNATURE: "signature invalide",
    FORK: "divergence",
    HEAD_MISMATCH: "tête incohérente",
    CHECKPOINT_FILE_MISSING: "fichier de points de contrôle absent",
}

# Each row comes back as (seq, canonical text, hash): the database builds the canonical
# text (see audit.canonical) — much cheaper to fetch than thirteen values — and Python
# hashes it. Python re-checks by itself, from the stored values, any entry that fails.
_SQLITE_SELECT = (
    "SELECT seq, json_array(" + ", ".join(FIELDS) + "), hash FROM audit_entry "  # noqa: S608
    "WHERE seq >= ? AND seq <= ? ORDER BY seq"
)
# array_to_json of a text[] writes exactly Python's compact JSON (strings and nulls).
_PG_SELECT = (
    "SELECT seq, '[' || seq::text || ',' || substr(array_to_json(ARRAY["  # noqa: S608
    + ", ".join(f"{f}::text" for f in FIELDS[1:])
    + "])::text, 2), hash FROM audit_entry WHERE seq >= %s AND seq <= %s ORDER BY seq"
)

# The same rows, value by value, for Python to encode (SQLite only): SQLite's dynamic typing
# lets a tampered row hold a BLOB in a text column (``json_array`` refuses it), text that is
# not UTF-8 (the driver cannot decode it) or a non-BLOB hash. Read as bytes with their
# types, such values are reported as an edit of that entry instead of stopping ``verify``.
_SQLITE_SELECT_TYPED = (
    "SELECT seq, "  # noqa: S608
    + ", ".join(f"typeof({f}), CAST({f} AS BLOB)" for f in FIELDS[1:])
    + ", typeof(hash), hash FROM audit_entry WHERE seq >= ? AND seq <= ? ORDER BY seq"
)

Row = Sequence[Any]


def _typed_row(r: Sequence[Any]) -> tuple[int, str, bytes]:
    """``(seq, canonical text, hash)`` from a row of :data:`_SQLITE_SELECT_TYPED`.

    A value the journal never writes (not text or null; text that is not UTF-8; a hash
    that is not a BLOB) gives a text or a hash that no genuine entry has, so the entry is
    reported as edited.
    """
    seq = int(r[0])
    values: list[Any] = [seq]
    valid = True
    for i in range(1, 2 * len(FIELDS) - 1, 2):
        kind, raw = r[i], r[i + 1]
        if kind == "null":
            values.append(None)
            continue
        try:
            if kind != "text":
                raise ValueError(kind)
            values.append(bytes(raw).decode("utf-8"))
        except ValueError:
            valid = False
            break
    # A two-element array is never the encoding of a genuine (thirteen-field) entry.
    text = canonical_text(values) if valid else canonical_text([seq, "invalid value type"])
    kind, stored = r[-2], r[-1]
    return seq, text, bytes(stored) if kind == "blob" else b""


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    seq: int
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind}: {self.detail}"


@dataclass
class VerifyReport:
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    last_checkpoint_seq: int = 0
    #: Entries after the last signed checkpoint (protected by the chain only).
    unsigned_tail: int = 0
    #: The hash of the last entry walked (``None`` when the chain could not be followed).
    last_hash: bytes | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    truncated_report: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return min(self.problems, key=lambda p: p.seq) if self.problems else None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "entries": self.entries, "first_seq": self.first_seq,
            "last_seq": self.last_seq, "checkpoints": self.checkpoints,
            "last_checkpoint_seq": self.last_checkpoint_seq,
            "unsigned_tail": self.unsigned_tail,
            "problems": [{"kind": p.kind, "seq": p.seq, "detail": p.detail}
                         for p in sorted(self.problems, key=lambda p: p.seq)],
            "warnings": self.warnings, "seconds": round(self.seconds, 3),
        }


class _TooMany(Exception):
    pass


class _Collector:
    def __init__(self, report: VerifyReport, limit: int) -> None:
        self.report, self.limit = report, limit

    def add(self, kind: str, seq: int, detail: str) -> None:
        self.report.problems.append(Problem(kind, seq, detail))
        if len(self.report.problems) >= self.limit:
            self.report.truncated_report = True
            raise _TooMany


def _rows(conn: Connection, start: int, upto: int) -> Iterator[list[Row]]:
    """Batches of ``(seq, canonical text, hash)`` from ``start`` to ``upto``, in order."""
    raw: Any = conn.connection.driver_connection
    if conn.dialect.name != "postgresql":
        yield from _sqlite_rows(raw, start, upto)
        return
    cur = raw.cursor(name=f"audit_verify_{id(conn):x}")
    cur.itersize = _FETCH
    try:
        cur.execute(_PG_SELECT, (start, upto))
        while True:
            batch = cur.fetchmany(_FETCH)
            if not batch:
                return
            yield batch
    finally:
        cur.close()


def _sqlite_rows(raw: Any, start: int, upto: int) -> Iterator[list[Row]]:
    """SQLite's batches: the database encodes the entries until it meets a value it
    cannot encode or the driver cannot decode; Python encodes the rest."""
    cur = raw.cursor()
    try:
        try:
            cur.execute(_SQLITE_SELECT, (start, upto))
            while batch := cur.fetchmany(_FETCH):
                start = int(batch[-1][0]) + 1
                yield batch
            return
        except sqlite3.OperationalError:
            pass  # a tampered value's type: go on from the first row not yet yielded
    finally:
        cur.close()
    cur = raw.cursor()
    try:
        cur.execute(_SQLITE_SELECT_TYPED, (start, upto))
        while batch := cur.fetchmany(_FETCH):
            yield [_typed_row(r) for r in batch]
    finally:
        cur.close()


@dataclass
class _Known:
    """Valid checkpoints by sequence number, with where each came from."""

    by_seq: dict[int, list[tuple[bytes, str, str]]] = field(default_factory=dict)
    signatures: set[bytes] = field(default_factory=set)

    def add(self, cp: checkpoints.Checkpoint, source: str) -> None:
        self.by_seq.setdefault(cp.seq, []).append((cp.hash, cp.kind, source))
        self.signatures.add(cp.signature)


def _load_checkpoints(
    conn: Connection,
    keys: Mapping[str, Ed25519PublicKey],
    checkpoint_file: Path | None,
    out: _Collector,
    report: VerifyReport,
    allow_missing_file: bool,
) -> _Known:
    known = _Known()
    db_sigs: set[bytes] = set()
    stored_all = checkpoints.load_all(conn)
    for stored in stored_all:
        db_sigs.add(stored.signature)
        if checkpoints.signature_ok(stored, keys):
            known.add(stored, "base")
        else:
            out.add(BAD_SIGNATURE, stored.seq,
                    f"point de contrôle de la base à la signature invalide (clé {stored.key_id})")
    if checkpoint_file is not None:
        lines = list(checkpoints.read_file(checkpoint_file))
        if not lines and not checkpoint_file.exists():
            missing = f"le fichier de points de contrôle {checkpoint_file} n'existe pas"
            if stored_all and not allow_missing_file:
                # Deleting the file together with the tail of the journal and its
                # checkpoints in the database would otherwise go unnoticed.
                out.add(CHECKPOINT_FILE_MISSING, min(cp.seq for cp in stored_all),
                        f"{missing} alors que la base contient {len(stored_all)} points de "
                        "contrôle signés")
            else:
                report.warnings.append(missing)
        for i, line in enumerate(lines):
            cp = line.checkpoint
            if cp is None:
                if i == len(lines) - 1:
                    report.warnings.append(
                        f"{checkpoint_file}:{line.lineno} : dernière ligne incomplète ignorée")
                    continue
                out.add(BAD_SIGNATURE, 0, f"{checkpoint_file}:{line.lineno} : ligne illisible")
                continue
            if not checkpoints.signature_ok(cp, keys):
                out.add(BAD_SIGNATURE, cp.seq,
                        f"{checkpoint_file}:{line.lineno} : "
                        "signature du point de contrôle invalide")
                continue
            known.add(cp, f"fichier, ligne {line.lineno}")
            if cp.signature not in db_sigs:
                out.add(CHECKPOINT_DELETED, cp.seq,
                        f"le point de contrôle signé de {checkpoint_file}:{line.lineno} a "
                        "disparu de la base")
                db_sigs.add(cp.signature)
    for seq, entries in sorted(known.by_seq.items()):
        if len({h for h, _, _ in entries}) > 1:
            out.add(FORK, seq, "deux points de contrôle signés donnent des empreintes différentes")
    report.checkpoints = len(known.signatures)
    report.last_checkpoint_seq = max(known.by_seq, default=0)
    return known


def verify(
    conn: Connection,
    keys: Mapping[str, Ed25519PublicKey],
    checkpoint_file: Path | None = None,
    *,
    max_problems: int = 100,
    progress: Callable[[int], None] | None = None,
    upto: int | None = None,
    allow_missing_file: bool = False,
) -> VerifyReport:
    """Check the whole journal; ``keys`` are the journal public keys by key id (current and
    retired ones).

    With ``upto``, only entries up to that sequence number are walked and the end of the
    journal is not checked (used by prune before it signs a boundary). A ``checkpoint_file``
    that does not exist while the database holds checkpoints is a problem, unless
    ``allow_missing_file``.
    """
    report = VerifyReport()
    out = _Collector(report, max_problems)
    started = time.perf_counter()
    try:
        _verify(conn, keys, checkpoint_file, report, out, progress, upto, allow_missing_file)
    except _TooMany:
        report.warnings.append(f"arrêt après {max_problems} anomalies")
    report.seconds = time.perf_counter() - started
    return report


def _verify(
    conn: Connection,
    keys: Mapping[str, Ed25519PublicKey],
    checkpoint_file: Path | None,
    report: VerifyReport,
    out: _Collector,
    progress: Callable[[int], None] | None,
    upto: int | None,
    allow_missing_file: bool,
) -> None:
    known = _load_checkpoints(conn, keys, checkpoint_file, out, report, allow_missing_file)
    cp_hashes: dict[int, bytes] = {s: v[0][0] for s, v in known.by_seq.items()}
    head = read_head(conn)
    first = conn.execute(select(func.min(audit_entry.c.seq))).scalar()

    # -- the anchor: genesis, or the signed prune checkpoint just before the first entry --
    prev: bytes | None
    if first is None:
        last = 0
        prev = GENESIS
        if head is not None and head.pruned_through:
            last = head.pruned_through
    else:
        first = int(first)
        report.first_seq = first
        if first == 1:
            prev = GENESIS
        else:
            prunes = [s for s, v in known.by_seq.items()
                      if s < first and any(k == checkpoints.PRUNE for _, k, _ in v)]
            anchor = max(prunes, default=0)
            if anchor == first - 1:
                prev = cp_hashes[anchor]
            else:
                out.add(MISSING, anchor + 1,
                        f"entrées {anchor + 1} à {first - 1} manquantes "
                        "(aucune purge signée ne les couvre)")
                prev = None
        last = _walk(conn, first, upto, prev, cp_hashes, head, report, out, progress)

    # -- the tail ---------------------------------------------------------------------------
    report.last_seq = last if report.entries else None
    if upto is not None:
        return
    max_cp = report.last_checkpoint_seq
    if max_cp > last:
        where = sorted({src for _, _, src in known.by_seq[max_cp]})
        out.add(TRUNCATED, last + 1,
                f"entrées {last + 1} à {max_cp} manquantes : le journal s'arrête avant "
                f"son dernier point de contrôle signé ({', '.join(where)})")
    elif head is not None and head.seq > last:
        out.add(TRUNCATED, last + 1,
                f"entrées {last + 1} à {head.seq} manquantes : le journal s'arrête avant "
                "la tête enregistrée")
    if head is not None and head.seq < last:
        out.add(HEAD_MISMATCH, head.seq + 1,
                f"entrées {head.seq + 1} à {last} au-delà de la tête enregistrée")
    report.unsigned_tail = max(0, last - max_cp)


def _walk(
    conn: Connection,
    first: int,
    upto: int | None,
    prev: bytes | None,
    cp_hashes: dict[int, bytes],
    head: Any,
    report: VerifyReport,
    out: _Collector,
    progress: Callable[[int], None] | None,
) -> int:
    """Walk the chain from ``first``; return the last (original) sequence number."""
    sha = hashlib.sha256
    batches = _rows(conn, first, upto if upto is not None else 2**62)
    buf: list[Row] = []
    i = 0
    expected = first  # next original sequence number
    offset = 0  # database seq minus original seq (after a renumbering)
    pp: bytes | None = None  # the hash before ``prev``
    count = 0
    e = audit_entry.c
    by_seq = select(*[e[f] for f in FIELDS]).where(e.seq == bindparam("s"))

    def exact(r: Row) -> Row:
        """The row with the canonical text computed by Python from the stored values."""
        if conn.dialect.name != "postgresql":  # typed columns on PostgreSQL, not on SQLite
            raw: Any = conn.connection.driver_connection
            return _typed_row(raw.execute(_SQLITE_SELECT_TYPED, (r[0], r[0])).fetchone())
        values = conn.execute(by_seq, {"s": r[0]}).one()
        return (r[0], canonical_text(tuple(values)), bytes(r[2]))

    def h_of(p: bytes, r: Row, seq: int) -> bytes:
        return sha(p + with_seq(r[1], seq).encode("utf-8")).digest()

    while True:
        if i >= len(buf):
            buf = next(batches, [])
            i = 0
            if not buf:
                break
            if progress is not None:
                progress(count)
        # -- fast path: a run of good entries --------------------------------------------------
        n_buf = len(buf)
        while i < n_buf:
            r = buf[i]
            s = r[0] - offset
            if s != expected or prev is None:
                break
            text = r[1] if not offset else with_seq(r[1], s)
            h = sha(prev + text.encode("utf-8")).digest()
            if h != r[2]:
                break
            if s in cp_hashes and cp_hashes[s] != h:
                out.add(CHECKPOINT_MISMATCH, s,
                        "la chaîne diffère du point de contrôle signé : elle a été recalculée "
                        "après une modification d'une entrée antérieure")
            pp = prev
            prev = h
            expected = s + 1
            count += 1
            i += 1
        if i >= n_buf:
            continue
        # -- slow path: something is wrong at buf[i]; look one entry ahead ---------------------
        if i + 2 >= len(buf):
            buf = buf[i:] + next(batches, [])
            i = 0
        r = exact(buf[i])
        nxt = exact(buf[i + 1]) if i + 1 < len(buf) else None
        s = r[0] - offset
        rhash = bytes(r[2])
        if prev is not None and s == expected and h_of(prev, r, s) == rhash:
            # only the database's text differed from Python's: the entry is good
            buf[i] = r
            continue
        consumed = 1  # rows read
        advance = -1  # original sequence numbers covered (default: ``consumed``)
        if s > expected:
            out.add(MISSING, expected,
                    f"entrées {expected} à {s - 1} supprimées" if s - 1 > expected
                    else f"entrée {expected} supprimée")
            prev = None  # the predecessor is gone: take this entry's stored hash
        if prev is None:
            prev = rhash
        elif pp is not None and s == expected and h_of(pp, r, s - 1) == rhash:
            out.add(INSERTED, s - 1,
                    f"entrée étrangère insérée en {s - 1} ; les suivantes ont été "
                    "renumérotées")
            offset += 1
            s -= 1
            prev = rhash
        elif s < expected:  # cannot happen with a primary key; keep the walk going
            out.add(SWAPPED, s, "entrée hors d'ordre")
            prev = rhash
        else:
            nhash = bytes(nxt[2]) if nxt is not None else b""
            follows = nxt is not None and nxt[0] - offset == s + 1
            nx: Row = nxt if nxt is not None else r
            if follows and h_of(prev, nx, s) == nhash and h_of(nhash, r, s + 1) == rhash:
                out.add(SWAPPED, s, f"entrées {s} et {s + 1} interverties")
                prev, consumed = rhash, 2
            elif follows and h_of(prev, nx, s) == rhash and h_of(rhash, r, s + 1) == nhash:
                out.add(SWAPPED, s, f"contenus des entrées {s} et {s + 1} intervertis")
                prev, consumed = nhash, 2
            elif follows and h_of(prev, nx, s) == nhash:
                out.add(INSERTED, s,
                        f"entrée étrangère insérée en {s} ; les suivantes ont été "
                        "renumérotées")
                offset += 1
                prev, consumed, advance = nhash, 2, 1
            elif follows and h_of(rhash, nx, s + 2) == nhash:
                out.add(MISSING, s,
                        f"entrée {s} supprimée ; les suivantes ont été renumérotées")
                offset -= 1
                prev, consumed = nhash, 2
                s += 1
            elif follows and h_of(rhash, nx, s + 1) == nhash:
                out.add(EDITED, s, "entrée modifiée après son écriture")
                prev = rhash
            elif follows and h_of(h_of(prev, r, s), nx, s + 1) == nhash:
                out.add(EDITED, s, "empreinte de l'entrée modifiée")
                prev = h_of(prev, r, s)
            elif nxt is None and (
                    cp_hashes.get(s) == rhash or (head is not None and head.hash == rhash)):
                out.add(EDITED, s, "entrée modifiée après son écriture")
                prev = rhash
            else:
                out.add(EDITED, s,
                        "l'entrée ne correspond pas à la chaîne (modifiée ou fabriquée)")
                prev = rhash
        if advance < 0:
            advance = consumed
        last_seq = s + advance - 1
        if last_seq in cp_hashes and cp_hashes[last_seq] != prev:
            out.add(CHECKPOINT_MISMATCH, last_seq, "la chaîne diffère du point de contrôle signé")
        count += consumed
        expected = s + advance
        i += consumed
        pp = None  # after a repair, only ``prev`` is meaningful
    report.entries = count
    report.last_hash = prev
    return expected - 1
