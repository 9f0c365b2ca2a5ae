"""The command parser: one complete command's bytes in, a typed command out.

Grammar: RFC 3501 §9 and RFC 9051 §9, with the extensions the server announces
(LITERAL+ RFC 7888, ENABLE RFC 5161, ID RFC 2971, SASL-IR RFC 4959, UIDPLUS RFC 4315,
MOVE RFC 6851, CONDSTORE RFC 7162, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819,
SPECIAL-USE RFC 6154, ESEARCH RFC 4731, SEARCHRES RFC 5182, BINARY RFC 3516, UNSELECT
RFC 3691, STATUS=SIZE RFC 8438). Syntax errors raise :class:`ParseError` (tagged ``BAD``).
"""

from __future__ import annotations

from collections.abc import Callable

from mailstore.imap import mutf7
from mailstore.imap.commands import (
    Append,
    Authenticate,
    Command,
    Copy,
    Enable,
    Expunge,
    Fetch,
    Id,
    List,
    Login,
    MailboxCommand,
    Rename,
    Search,
    Select,
    Status,
    Store,
)
from mailstore.imap.fetch_items import fetch_atts
from mailstore.imap.lexer import MAX_NUMBER64, Cursor
from mailstore.imap.search_keys import check_charset, parse_search_program
from mailstore.imap.seqset import SeqSet

STATUS_ITEMS = frozenset(
    {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE", "HIGHESTMODSEQ", "DELETED"}
)
LIST_SELECTION = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
SEARCH_RETURN = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
_UID_COMMANDS = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE"})
_NO_ARGS = frozenset(
    {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE", "UNSELECT", "IDLE", "NAMESPACE"}
)


class _Ctx:
    __slots__ = ("cur", "name", "tag", "uid", "utf8")

    def __init__(self, cur: Cursor, tag: bytes, name: str, uid: bool, utf8: bool) -> None:
        self.cur, self.tag, self.name, self.uid, self.utf8 = cur, tag, name, uid, utf8


def decode_mailbox(raw: bytes, *, utf8: bool) -> str:
    """A mailbox name from the wire: modified UTF-7, or UTF-8 once enabled (RFC 9051 §5.1)."""
    if raw.upper() == b"INBOX":
        return "INBOX"
    if utf8 or not raw.isascii():
        return raw.decode("utf-8")
    return mutf7.decode(raw)


def _mailbox(ctx: _Ctx, *, pattern: bool = False) -> str:
    cur = ctx.cur
    raw = cur.list_mailbox() if pattern else cur.astring("a mailbox name")
    try:
        return decode_mailbox(raw, utf8=ctx.utf8)
    except (UnicodeDecodeError, mutf7.MUtf7Error):
        raise cur.error("invalid mailbox name encoding") from None


def _atom_list(cur: Cursor, *, allow_empty: bool = True) -> list[str]:
    cur.expect(b"(")
    out: list[str] = []
    if cur.take(b")"):
        if not allow_empty:
            raise cur.error("empty list")
        return out
    while True:
        out.append(cur.atom().upper().decode("ascii"))
        if cur.take(b")"):
            return out
        cur.sp()


def _no_args(ctx: _Ctx) -> Command:
    return Command(ctx.tag, ctx.name)


def _login(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    user = cur.astring("a user name")
    cur.sp()
    password = cur.astring("a password")
    return Login(ctx.tag, ctx.name, user, password)


def _authenticate(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    mech = cur.atom("a SASL mechanism").upper().decode("ascii")
    initial: bytes | None = None
    if cur.peek() == 0x20:  # SASL-IR (RFC 4959 §3): base64 or "="
        cur.sp()
        start = cur.pos
        while cur.pos < len(cur.data) and cur.data[cur.pos] != 0x20:
            cur.pos += 1
        initial = cur.data[start : cur.pos]
        if not initial:
            raise cur.error("empty initial response")
    return Authenticate(ctx.tag, ctx.name, mech, initial)


def _enable(ctx: _Ctx) -> Command:
    cur = ctx.cur
    caps = []
    while cur.peek() == 0x20:
        cur.sp()
        caps.append(cur.atom("a capability").upper().decode("ascii"))
    if not caps:
        raise cur.error("ENABLE needs at least one capability")
    return Enable(ctx.tag, ctx.name, tuple(caps))


def _id(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    if cur.take(b"NIL"):
        return Id(ctx.tag, ctx.name, None)
    cur.expect(b"(")
    params: list[tuple[bytes, bytes | None]] = []
    if not cur.take(b")"):
        while True:
            key = cur.string()
            cur.sp()
            params.append((key, cur.nstring()))
            if cur.take(b")"):
                break
            cur.sp()
    if len(params) > 30:  # RFC 2971 §3.3: at most 30 pairs
        raise cur.error("too many ID parameters")
    return Id(ctx.tag, ctx.name, tuple(params))


def _select(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    box = _mailbox(ctx)
    condstore = False
    if cur.peek() == 0x20:
        cur.sp()
        cur.expect(b"(")
        while True:
            param = cur.atom("a SELECT parameter").upper().decode("ascii")
            if param != "CONDSTORE":  # RFC 7162 §3.1.8; QRESYNC is not offered
                raise cur.error(f"unsupported {ctx.name} parameter {param}")
            condstore = True
            if cur.take(b")"):
                break
            cur.sp()
    return Select(ctx.tag, ctx.name, box, condstore)


def _mailbox_only(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    box = _mailbox(ctx)
    uses: tuple[str, ...] = ()
    if ctx.name == "CREATE" and cur.peek() == 0x20:
        # RFC 6154 §3: create-param "USE" SP "(" [use-attr *(SP use-attr)] ")"
        cur.sp()
        cur.expect(b"(")
        cur.expect(b"USE")
        cur.sp()
        uses = tuple(cur.flag_list())
        cur.expect(b")")
    return MailboxCommand(ctx.tag, ctx.name, box, uses)


def _rename(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    old = _mailbox(ctx)
    cur.sp()
    return Rename(ctx.tag, ctx.name, old, _mailbox(ctx))


def _list(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    selection: list[str] = []
    extended = False
    if cur.peek() == 0x28:  # RFC 5258 §3: list-select-opts
        extended = True
        selection = _atom_list(cur)
        for opt in selection:
            if opt not in LIST_SELECTION:
                raise cur.error(f"unknown LIST selection option {opt}")
        if "RECURSIVEMATCH" in selection and len(selection) == 1:
            raise cur.error("RECURSIVEMATCH needs another selection option")
        cur.sp()
    reference = _mailbox(ctx)
    cur.sp()
    patterns: list[str] = []
    if cur.peek() == 0x28 and ctx.name == "LIST":
        extended = True
        cur.pos += 1
        patterns.append(_mailbox(ctx, pattern=True))
        while cur.take(b" "):
            patterns.append(_mailbox(ctx, pattern=True))
        cur.expect(b")")
    else:
        patterns.append(_mailbox(ctx, pattern=True))
    returns: list[str] = []
    status_items: list[str] = []
    if ctx.name == "LIST" and cur.peek() == 0x20:
        extended = True
        cur.sp()
        cur.expect(b"RETURN")
        cur.sp()
        cur.expect(b"(")
        while not cur.take(b")"):
            if returns:
                cur.sp()
            opt = cur.atom("a LIST return option").upper().decode("ascii")
            if opt not in LIST_RETURN:
                raise cur.error(f"unknown LIST return option {opt}")
            returns.append(opt)
            if opt == "STATUS":  # RFC 5819 §2
                cur.sp()
                status_items = _status_items(cur)
    return List(
        ctx.tag, ctx.name, reference, tuple(patterns), frozenset(selection),
        frozenset(returns), tuple(status_items), extended,
    )


def _status_items(cur: Cursor) -> list[str]:
    items = _atom_list(cur, allow_empty=False)
    for item in items:
        if item not in STATUS_ITEMS:
            raise cur.error(f"unknown STATUS item {item}")
    return items


def _status(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    box = _mailbox(ctx)
    cur.sp()
    return Status(ctx.tag, ctx.name, box, tuple(_status_items(cur)))


def _append(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    box = _mailbox(ctx)
    cur.sp()
    flags: list[str] = []
    if cur.peek() == 0x28:
        flags = cur.flag_list()
        cur.sp()
    when = None
    if cur.peek() == 0x22:
        when = cur.date_time()
        cur.sp()
    binary = cur.is_binary_literal()
    message = cur.literal(binary_ok=True)
    if cur.peek() == 0x20:
        raise cur.error("MULTIAPPEND is not supported: one message per APPEND")
    return Append(ctx.tag, ctx.name, box, tuple(flags), when, message, binary)


def _search(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    returns: tuple[str, ...] | None = None
    if cur.take(b"RETURN "):  # RFC 4731 §3
        opts = _atom_list(cur)
        for opt in opts:
            if opt not in SEARCH_RETURN:
                raise cur.error(f"unknown SEARCH return option {opt}")
        returns = tuple(opts) if opts else ("ALL",)
        cur.sp()
    charset = "US-ASCII"
    if cur.take(b"CHARSET "):
        charset = check_charset(cur.astring("a charset").decode("ascii", "replace"))
        cur.sp()
    key = parse_search_program(cur, charset)
    return Search(ctx.tag, ctx.name, ctx.uid, charset, key, returns)


def _fetch(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    seqset = SeqSet.parse(cur)
    cur.sp()
    items = fetch_atts(cur)
    changedsince = None
    if cur.peek() == 0x20:  # RFC 4466 §2.4 fetch-modifiers, RFC 7162 §3.1.4.1
        cur.sp()
        cur.expect(b"(")
        while True:
            mod = cur.atom("a FETCH modifier").upper()
            if mod == b"CHANGEDSINCE":
                cur.sp()
                changedsince = cur.number(maximum=MAX_NUMBER64, what="a mod-sequence")
            else:
                raise cur.error(f"unsupported FETCH modifier {mod.decode('ascii', 'replace')}")
            if cur.take(b")"):
                break
            cur.sp()
    return Fetch(ctx.tag, ctx.name, ctx.uid, seqset, items, changedsince)


def _store(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    seqset = SeqSet.parse(cur)
    cur.sp()
    unchangedsince = None
    if cur.peek() == 0x28:  # RFC 7162 §3.1.3 store-modifier
        cur.pos += 1
        cur.expect(b"UNCHANGEDSINCE")
        cur.sp()
        unchangedsince = cur.number(maximum=MAX_NUMBER64, what="a mod-sequence")
        cur.expect(b")")
        cur.sp()
    mode = ""
    if cur.peek() in (0x2B, 0x2D):
        mode = chr(cur.peek())
        cur.pos += 1
    cur.expect(b"FLAGS", "FLAGS, +FLAGS or -FLAGS")
    silent = cur.take(b".SILENT")
    cur.sp()
    flags = cur.flags()
    return Store(ctx.tag, ctx.name, ctx.uid, seqset, mode, silent, tuple(flags), unchangedsince)


def _copy(ctx: _Ctx) -> Command:
    cur = ctx.cur
    cur.sp()
    seqset = SeqSet.parse(cur)
    cur.sp()
    return Copy(ctx.tag, ctx.name, ctx.uid, seqset, _mailbox(ctx))


def _expunge(ctx: _Ctx) -> Command:
    if not ctx.uid:
        return Expunge(ctx.tag, ctx.name)
    ctx.cur.sp()
    return Expunge(ctx.tag, ctx.name, True, SeqSet.parse(ctx.cur))


_PARSERS: dict[str, Callable[[_Ctx], Command]] = {
    **dict.fromkeys(_NO_ARGS, _no_args),
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "ENABLE": _enable,
    "ID": _id,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _mailbox_only,
    "DELETE": _mailbox_only,
    "SUBSCRIBE": _mailbox_only,
    "UNSUBSCRIBE": _mailbox_only,
    "RENAME": _rename,
    "LIST": _list,
    "LSUB": _list,
    "STATUS": _status,
    "APPEND": _append,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    "EXPUNGE": _expunge,
}

KNOWN_COMMANDS = frozenset(_PARSERS)


def parse_command(data: bytes, *, utf8: bool = False) -> Command:
    """Parse one command (its bytes without the final CRLF, literals inline)."""
    cur = Cursor(data)
    tag = cur.tag_token()
    cur.sp()
    name = cur.atom("a command name").upper().decode("ascii")
    uid = False
    if name == "UID":
        cur.sp()
        name = cur.atom("a command after UID").upper().decode("ascii")
        if name not in _UID_COMMANDS:
            raise cur.error(f"UID {name} is not a command")
        uid = True
    parse = _PARSERS.get(name)
    if parse is None:
        raise cur.error(f"unknown command {name[:40]}")
    command = parse(_Ctx(cur, tag, name, uid, utf8))
    cur.end()
    return command


def peek_tag_and_name(data: bytes) -> tuple[bytes | None, str]:
    """The tag and command name at the start of a (possibly partial) command, best effort."""
    parts = data.split(b" ", 3)
    tag = parts[0] if parts and parts[0] else None
    name = parts[1].upper().decode("ascii", "replace") if len(parts) > 1 else ""
    if name == "UID" and len(parts) > 2:
        name = parts[2].upper().decode("ascii", "replace")
    return tag, name
