"""Searching the directory (issue 6, «Search»).

A query combines free text (names: accent- and case-insensitive, the last word a prefix,
tolerant of hyphen/space variants; an RPPS, a national identifier, a postcode or an address typed in
the same box is recognised) with filters (profession, specialty, town, postcode,
département, identifier, address, mailbox type). Results are paged, in alphabetical order,
and never show a red-listed mailbox (those are in no search document).

The query becomes a boolean expression over the tokens of :mod:`directory.normalise`,
rendered as an FTS5 ``MATCH`` expression on SQLite or a ``tsquery`` on PostgreSQL: both
match the same tokens the same way, so both backends return the same page.

Spelling variants: the words typed are also tried joined together, so «le fevre» finds
«Lefèvre» (token ``lefevre``) and «lefevre» finds «LE FEVRE» (whose compact form
``lefevre`` is indexed beside ``le`` and ``fevre``).
"""

# ruff: noqa: S608 - SQL is assembled from constant table names and dialect fragments;
# every value is a bound parameter.

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, text

from directory import normalise as nz
from directory import records
from directory.idchecks import national_id_of
from directory.professions import PROFESSIONS
from directory.tables import DOC_MAILBOX, DOC_PRACTITIONER, FTS_TABLE, FTS_VOCAB

MAX_PER_PAGE = 100
#: The shortest word searched as a prefix (FTS5 keeps a prefix index of this length).
MIN_PREFIX = 3
#: On SQLite, a longer prefix is searched as the tokens it stands for when the index holds
#: at most this many of them (:func:`expand_prefixes`).
MAX_PREFIX_TOKENS = 512
#: Name words used at most (the rest of a long query is ignored).
MAX_VARIANT_WORDS = 6
MAX_WORDS = 12
MAILBOX_TYPES = ("PER", "ORG", "APP", "CAB")


class QueryError(ValueError):
    """A query that cannot be run; ``message_fr`` is shown to users (HTTP 400)."""

    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


@dataclass(frozen=True)
class Query:
    text: str = ""
    profession: str = ""  # code ("10") or label ("médecin")
    specialty: str = ""  # code ("SM54")
    town: str = ""
    postcode: str = ""  # full or leading digits
    departement: str = ""
    identifier: str = ""  # RPPS, ADELI or national identifier
    address: str = ""  # mailbox address, or its beginning
    mailbox_type: str = ""  # PER / ORG / APP / CAB
    page: int = 1
    per_page: int = 20


# -- the expression -----------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    token: str
    prefix: bool


@dataclass(frozen=True)
class All:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Any_:
    items: tuple[Expr, ...]


Expr = Term | All | Any_


def _variants(words: list[str]) -> list[list[str]]:
    """The words as typed, each adjacent pair joined, and all joined:
    [le, fevre, paul] → [le fevre paul], [lefevre paul], [le fevrepaul], [lefevrepaul].

    Joining a pair covers a particle typed apart («le fevre», «de la», «n diaye») whatever
    the rest of the query; trying every grouping would cost 2^(n-1) branches.
    """
    out = [words]
    if len(words) > 1:
        for i in range(len(words) - 1):
            out.append([*words[:i], words[i] + words[i + 1], *words[i + 2 :]])
        if len(words) > 2:
            out.append(["".join(words)])
    unique: dict[tuple[str, ...], None] = {}
    for v in out:
        unique.setdefault(tuple(v), None)
    return [list(v) for v in unique]


def _words_expr(words: list[str], namespace: str = "", *, prefix: bool = True) -> Expr | None:
    """Every word must match a token; the last one may be the beginning of a token (as
    typed in an autocompleting search box) from :data:`MIN_PREFIX` letters on: shorter
    prefixes would scan a large part of the index, and so would prefixes of every word."""
    words = [w for w in words if w][:MAX_VARIANT_WORDS]
    if not words:
        return None

    def term(g: str, last: bool) -> Term:
        return Term(namespace + g, prefix and last and len(g) >= MIN_PREFIX)

    variants: list[Expr] = [
        All(tuple(term(g, i == len(groups) - 1) for i, g in enumerate(groups)))
        if len(groups) > 1 else term(groups[0], True)
        for groups in _variants(words)
    ]
    return variants[0] if len(variants) == 1 else Any_(tuple(variants))


def profession_code(value: str) -> str:
    """A profession code from a code or a French label (any case or accents)."""
    v = value.strip()
    if v in PROFESSIONS:
        return v
    folded = nz.fold(v)
    for code, label in PROFESSIONS.items():
        if nz.fold(label) == folded:
            return code
    raise QueryError(f"Profession inconnue : « {value} ».")


def build(q: Query) -> Expr:
    """The boolean expression of a query (raise :class:`QueryError` when it is empty)."""
    parts: list[Expr] = []
    name_words: list[str] = []
    for raw in q.text.split()[:MAX_WORDS]:
        if "@" in raw:
            c = nz.compact(raw)
            if c:
                parts.append(Term(nz.ADDRESS + c, True))
            continue
        for w in nz.words(raw):
            if w.isdigit():
                nat = national_id_of(w)
                if nat is not None:
                    parts.append(Term(nz.IDENTIFIER + nat, False))
                elif len(w) <= 5:
                    parts.append(Term(nz.POSTCODE + w, len(w) < 5))
                else:
                    raise QueryError(f"Numéro non reconnu : « {w} » (RPPS : 11 chiffres).")
            elif w in ("2a", "2b"):
                parts.append(Term(nz.DEPARTEMENT + w, False))
            else:
                name_words.append(nz.letters(w))
    names = _words_expr(name_words)
    if names is not None:
        parts.append(names)
    if q.profession:
        parts.append(Term(nz.PROFESSION + profession_code(q.profession), False))
    if q.specialty:
        code = nz.compact(q.specialty)
        if not code:
            raise QueryError("Spécialité invalide.")
        parts.append(Term(nz.SPECIALTY + code, False))
    if q.town:
        town = _words_expr([nz.letters(w) for w in nz.words(q.town)], nz.TOWN, prefix=False)
        if town is None:
            raise QueryError("Commune invalide.")
        parts.append(town)
    if q.postcode:
        pc = nz.compact(q.postcode)
        if not pc.isdigit() or len(pc) > 5:  # Corsica's postcodes are digits too (20xxx)
            raise QueryError("Code postal invalide.")
        parts.append(Term(nz.POSTCODE + pc, len(pc) < 5))
    if q.departement:
        d = nz.compact(q.departement)
        if not d or len(d) > 3:
            raise QueryError("Département invalide.")
        parts.append(Term(nz.DEPARTEMENT + d, False))
    if q.identifier:
        nat = national_id_of(q.identifier)
        if nat is None:
            raise QueryError("Identifiant invalide (RPPS : 11 chiffres).")
        parts.append(Term(nz.IDENTIFIER + nat, False))
    if q.address:
        c = nz.compact(q.address)
        if not c:
            raise QueryError("Adresse invalide.")
        parts.append(Term(nz.ADDRESS + c, True))
    if q.mailbox_type:
        t = q.mailbox_type.strip().upper()
        if t not in MAILBOX_TYPES:
            raise QueryError("Type de boîte invalide (PER, ORG, APP ou CAB).")
        parts.append(Term(nz.KIND + t.lower(), False))
    if not parts:
        raise QueryError("Précisez au moins un critère de recherche.")
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def to_fts5(e: Expr) -> str:
    if isinstance(e, Term):
        return f'"{e.token}"' + ("*" if e.prefix else "")
    sep = " AND " if isinstance(e, All) else " OR "
    return "(" + sep.join(to_fts5(i) for i in e.items) + ")"


def to_tsquery(e: Expr) -> str:
    if isinstance(e, Term):
        return f"'{e.token}'" + (":*" if e.prefix else "")
    sep = " & " if isinstance(e, All) else " | "
    return "(" + sep.join(to_tsquery(i) for i in e.items) + ")"


# -- prefixes on SQLite -------------------------------------------------------------------

_PREFIX_TOKENS = text(
    f"SELECT term FROM {FTS_VOCAB} WHERE term >= :lo AND term < :hi ORDER BY term LIMIT :lim"
)
#: Sorts after every token character (tokens are ``[a-z0-9]+``).
_AFTER_TOKENS = "~"


def expand_prefixes(conn: Connection, e: Expr) -> Expr:
    """Replace each prefix longer than :data:`MIN_PREFIX` by the tokens of the index it
    stands for (SQLite), when there are at most :data:`MAX_PREFIX_TOKENS` of them.

    The query matches the same documents. It is faster because FTS5 answers a prefix that
    has no prefix index of its length by merging the lists of every matching token into one,
    in memory, before returning a first row: a page of «marie*» read every match of the
    national directory (30 ms). A disjunction of tokens is read lazily, in rowid order, and
    stops at the page (under 1 ms for 120 tokens, 3 ms for 450), and listing the tokens from
    the index's vocabulary (``fts5vocab``) costs 1 to 5 ms. Prefixes of :data:`MIN_PREFIX`
    letters already have a prefix index, and those standing for more tokens stay prefix
    queries.
    """
    found: dict[str, Expr] = {}  # a prefix is often in several spelling variants

    def expand(e: Expr) -> Expr:
        if isinstance(e, Term):
            if not e.prefix or len(e.token) <= MIN_PREFIX:
                return e
            if e.token not in found:
                found[e.token] = _tokens_of(conn, e)
            return found[e.token]
        items = tuple(expand(i) for i in e.items)
        return All(items) if isinstance(e, All) else Any_(items)

    return expand(e)


def _tokens_of(conn: Connection, prefix: Term) -> Expr:
    tokens = [str(t) for (t,) in conn.execute(
        _PREFIX_TOKENS,
        {"lo": prefix.token, "hi": prefix.token + _AFTER_TOKENS, "lim": MAX_PREFIX_TOKENS + 1},
    )]
    if len(tokens) > MAX_PREFIX_TOKENS:
        return prefix
    if len(tokens) <= 1:  # no token: the exact word, absent too, matches nothing
        return Term(tokens[0] if tokens else prefix.token, False)
    return Any_(tuple(Term(t, False) for t in tokens))


# -- running it ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MailboxRef:
    address: str
    mailbox_type: str


@dataclass(frozen=True)
class Hit:
    """One search result: a practitioner with its places and published mailboxes, or a
    mailbox that belongs to no practitioner of the directory."""

    kind: str  # "practitioner" / "mailbox"
    name: str
    national_id: str | None
    professions: tuple[str, ...]
    specialties: tuple[str, ...]
    places: tuple[records.Site, ...]
    mailboxes: tuple[MailboxRef, ...]
    mailbox_type: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "national_id": self.national_id,
            "professions": list(self.professions),
            "specialties": list(self.specialties),
            "places": [
                {"name": p.name, "address": list(p.address), "postcode": p.postcode,
                 "town": p.town, "departement": p.departement, "phone": p.phone}
                for p in self.places
            ],
            "mailboxes": [{"address": m.address, "type": m.mailbox_type}
                          for m in self.mailboxes],
        }


@dataclass(frozen=True)
class Page:
    hits: tuple[Hit, ...]
    page: int
    per_page: int
    has_more: bool
    expression: str = field(default="", compare=False)


def search(conn: Connection, q: Query) -> Page:
    """Run a query; raise :class:`QueryError` on a bad one."""
    if q.page < 1 or q.page > 10_000:
        raise QueryError("Numéro de page invalide.")
    if q.per_page < 1 or q.per_page > MAX_PER_PAGE:
        raise QueryError(f"Taille de page invalide (1 à {MAX_PER_PAGE}).")
    expr = build(q)
    limit, offset = q.per_page + 1, (q.page - 1) * q.per_page
    if conn.dialect.name == "sqlite":
        # (one read transaction: the tokens listed are those of the index searched)
        rendered = to_fts5(expand_prefixes(conn, expr))
        rows = conn.execute(
            text(f"""
                SELECT d.kind, d.ref_id FROM directory_doc d
                WHERE d.pos IN (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :q
                                ORDER BY rowid LIMIT :lim OFFSET :off)
                ORDER BY d.pos
            """),
            {"q": rendered, "lim": limit, "off": offset},
        ).all()
    else:
        rendered = to_tsquery(expr)
        rows = conn.execute(
            text("SELECT kind, ref_id FROM directory_doc WHERE tsv @@ CAST(:q AS tsquery) "
                 "ORDER BY pos LIMIT :lim OFFSET :off"),
            {"q": rendered, "lim": limit, "off": offset},
        ).all()
    has_more = len(rows) > q.per_page
    refs = [(str(k), int(r)) for k, r in rows[: q.per_page]]
    return Page(tuple(hydrate(conn, refs)), q.page, q.per_page, has_more, rendered)


def hydrate(conn: Connection, refs: list[tuple[str, int]]) -> list[Hit]:
    """Turn (kind, id) references into results, in the same order."""
    pids = [r for k, r in refs if k == DOC_PRACTITIONER]
    mids = [r for k, r in refs if k == DOC_MAILBOX]
    hits: dict[tuple[str, int], Hit] = {}
    if pids:
        for pid, hit in _practitioner_hits(conn, pids).items():
            hits[(DOC_PRACTITIONER, pid)] = hit
    if mids:
        for mid, hit in _mailbox_hits(conn, mids).items():
            hits[(DOC_MAILBOX, mid)] = hit
    return [hits[r] for r in refs if r in hits]


def _in(sql: str) -> Any:
    return text(sql).bindparams(bindparam("ids", expanding=True))


def _practitioner_hits(conn: Connection, pids: list[int]) -> dict[int, Hit]:
    people = conn.execute(
        _in("SELECT id, national_id, raw, overrides FROM practitioner WHERE id IN :ids"),
        {"ids": pids},
    ).all()
    overrides = {int(r.id): records.load_overrides(r.overrides) for r in people}
    acts: dict[int, list[records.Activity]] = {}
    for pid, raw in conn.execute(
        _in("SELECT practitioner_id, raw FROM practitioner_activity "
            "WHERE practitioner_id IN :ids AND active = true ORDER BY id"),
        {"ids": pids},
    ):
        # the first active activity is the main one, which the overrides correct
        mine = acts.setdefault(int(pid), [])
        mine.append(records.activity_record(raw, None if mine else overrides.get(int(pid))))
    boxes: dict[int, list[MailboxRef]] = {}
    for pid, address, mtype in conn.execute(
        _in("SELECT practitioner_id, address, mailbox_type FROM directory_mailbox "
            "WHERE practitioner_id IN :ids AND mailbox_type = 'PER' AND active = true "
            "AND red_list = false ORDER BY address"),
        {"ids": pids},
    ):
        boxes.setdefault(int(pid), []).append(MailboxRef(address, mtype))
    out: dict[int, Hit] = {}
    for pid, national, raw, _ in people:
        f = records.person_fields(raw, overrides[int(pid)])
        activities = acts.get(int(pid), [])
        out[int(pid)] = Hit(
            kind="practitioner",
            name=records.display_name(
                f[records.PRACTITIONER_FIELDS["first_name"]],
                f[records.PRACTITIONER_FIELDS["last_name"]],
                f[records.PRACTITIONER_FIELDS["civility"]],
            ),
            national_id=national,
            professions=tuple(dict.fromkeys(a.profession for a in activities)),
            specialties=tuple(dict.fromkeys(a.specialty for a in activities if a.specialty)),
            places=tuple(dict.fromkeys(a.site for a in activities)),
            mailboxes=tuple(boxes.get(int(pid), [])),
        )
    return out


def _mailbox_hits(conn: Connection, mids: list[int]) -> dict[int, Hit]:
    out: dict[int, Hit] = {}
    for mid, address, mtype, national, raw, overrides in conn.execute(
        _in("SELECT id, address, mailbox_type, national_id, raw, overrides "
            "FROM directory_mailbox WHERE id IN :ids"),
        {"ids": mids},
    ):
        f = records.mailbox_fields(raw, records.load_overrides(overrides))
        prof = f[records.MAILBOX_FIELDS["profession"]].strip()
        out[int(mid)] = Hit(
            kind="mailbox",
            name=records.mailbox_display_name(f),
            national_id=national,
            professions=(PROFESSIONS.get(prof, prof),) if prof else (),
            specialties=(),
            places=(records.mailbox_site(f),),
            mailboxes=(MailboxRef(address, mtype),),
            mailbox_type=mtype,
        )
    return out
