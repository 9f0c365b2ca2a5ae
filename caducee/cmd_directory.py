"""`caducee directory import|search|add|edit|deactivate|reactivate|show` (issue 6)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Connection, Engine

from caducee import config as config_mod
from caducee.cli import CliError
from caducee.config import Config
from directory import admin, importer, search
from directory.issues import ImportRefused
from directory.reader import SourceError
from mailstore.db import create_db_engine

T = TypeVar("T")


def _workers(value: str) -> int:
    """``--workers``: a number of processes, 1 to 64 (argparse names the option)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"must be 1 to 64, got {n}")
    return n


def register(sub: Any) -> None:
    d = sub.add_parser("directory", help="the directory of practitioners (Annuaire Santé)")
    s = d.add_subparsers(dest="directory_cmd", required=True)

    imp = s.add_parser("import", help="import Annuaire Santé extracts (.txt or .zip)")
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imp.add_argument("--strict", action="store_true",
                     help="refuse everything on the first error, a wrong check digit "
                          "included (default: skip bad lines, warn on check digits)")
    imp.add_argument("--report", type=Path, metavar="FILE",
                     help="report file (default: in [directory] report_dir)")
    imp.add_argument("--strict-identifiers", action="store_true",
                     help="a wrong check digit rejects the line (default: reported only)")
    imp.add_argument("--workers", type=_workers, default=None,
                     help="parsing processes (1 to 64)")
    imp.add_argument("--allow-deactivation", action="store_true",
                     help="accept an extract that deactivates more than [directory] "
                          "max_deactivation of the practitioners or mailboxes (default 10 %%)")
    imp.set_defaults(func=cmd_import)

    se = s.add_parser("search", help="search the directory")
    se.add_argument("text", nargs="*", help="names, RPPS, postcode, address…")
    se.add_argument("--profession", default="", help="code (10) or label (Médecin)")
    se.add_argument("--specialty", default="", help="specialty code (SM54)")
    se.add_argument("--town", default="")
    se.add_argument("--postcode", default="")
    se.add_argument("--departement", default="")
    se.add_argument("--rpps", dest="identifier", default="", help="RPPS or national id")
    se.add_argument("--address", default="", help="mailbox address (or its beginning)")
    se.add_argument("--type", dest="mailbox_type", default="", help="PER, ORG, APP or CAB")
    se.add_argument("--page", type=int, default=1)
    se.add_argument("--per-page", type=int, default=20)
    se.add_argument("--json", action="store_true", help="print JSON")
    se.set_defaults(func=cmd_search)

    add = s.add_parser("add", help="add a practitioner or a mailbox by hand")
    a = add.add_subparsers(dest="directory_add", required=True)
    ap = a.add_parser("practitioner", help="add a practitioner (with one activity)")
    ap.add_argument("national_id", help="RPPS (11 digits) or national id (8+RPPS, 0+ADELI)")
    ap.add_argument("--last-name", required=True)
    ap.add_argument("--first-name", default="")
    ap.add_argument("--civility", default="", help='e.g. "Docteur"')
    ap.add_argument("--civility-code", default="", help='e.g. "DR"')
    ap.add_argument("--profession", required=True, help="profession code, e.g. 10")
    ap.add_argument("--specialty-code", default="")
    ap.add_argument("--specialty", default="", help="specialty label")
    ap.add_argument("--town", default="")
    ap.add_argument("--postcode", default="")
    ap.add_argument("--departement", default="")
    ap.set_defaults(func=cmd_add_practitioner)
    am = a.add_parser("mailbox", help="add a mailbox")
    am.add_argument("address")
    am.add_argument("--type", dest="mailbox_type", required=True, help="PER, ORG, APP or CAB")
    am.add_argument("--national-id", default=None)
    am.add_argument("--last-name", default="")
    am.add_argument("--first-name", default="")
    am.add_argument("--structure", default="")
    am.add_argument("--service", default="")
    am.add_argument("--profession", default="")
    am.add_argument("--red-list", action="store_true", help="never shown by search")
    am.set_defaults(func=cmd_add_mailbox)

    ed = s.add_parser(
        "edit", help="correct a practitioner (RPPS) or a mailbox (address)",
        description="Each value given is kept as a manual override that later imports do "
                    "not undo (they report when they disagree). Practitioner corrections "
                    "of profession, specialty and site apply to its main activity.")
    ed.add_argument("target", help="RPPS / national id, or mailbox address")
    ed.add_argument("--last-name")
    ed.add_argument("--first-name")
    ed.add_argument("--profession", help="profession code, e.g. 10")
    pr = ed.add_argument_group("practitioner only")
    pr.add_argument("--civility", help='e.g. "Docteur"')
    pr.add_argument("--civility-code", help='e.g. "DR"')
    pr.add_argument("--specialty-code", help="e.g. SM54")
    pr.add_argument("--specialty", help="specialty label")
    pr.add_argument("--town", help="town of the main site")
    pr.add_argument("--postcode", help="postcode of the main site")
    pr.add_argument("--departement", help="département of the main site (69, 2A, 974…)")
    mb = ed.add_argument_group("mailbox only")
    mb.add_argument("--type", dest="mailbox_type")
    mb.add_argument("--national-id")
    mb.add_argument("--structure", dest="structure_name")
    mb.add_argument("--service")
    red = mb.add_mutually_exclusive_group()
    red.add_argument("--red-list", dest="red_list", action="store_true", default=None)
    red.add_argument("--no-red-list", dest="red_list", action="store_false")
    ed.add_argument("--reset", action="append", default=[], metavar="FIELD",
                    help="drop the manual value of FIELD (the extract's applies again)")
    ed.set_defaults(func=cmd_edit)

    de = s.add_parser("deactivate", help="deactivate a practitioner or a mailbox by hand")
    de.add_argument("target")
    de.set_defaults(func=cmd_deactivate)
    re_ = s.add_parser("reactivate", help="undo a manual deactivation")
    re_.add_argument("target")
    re_.set_defaults(func=cmd_reactivate)

    sh = s.add_parser("show", help="everything the directory holds on an entry")
    sh.add_argument("target")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_show)


# -- plumbing -----------------------------------------------------------------------------


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # pragma: no cover - no user name
        return "cli"


@contextmanager
def _engine(args: argparse.Namespace) -> Iterator[tuple[Config, Engine]]:
    cfg = config_mod.load(args.config)
    engine = create_db_engine(cfg.database_url, pool_size=2)
    try:
        yield cfg, engine
    finally:
        engine.dispose()


def _journal(cfg: Config) -> Any:
    from caducee.context import open_journal

    return open_journal(cfg)


def _write(engine: Engine, fn: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            return fn(conn)


def _read(engine: Engine, fn: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        return fn(conn)


# -- import -------------------------------------------------------------------------------


class _Progress:
    """A rich progress bar on a terminal, phase lines otherwise (stderr)."""

    PHASES: ClassVar[dict[str, str]] = {
        "merge": "merging into the directory", "index": "updating the search index",
        "commit": "committing",
    }

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._said: set[str] = set()

    def __enter__(self) -> _Progress:
        if self.tty:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 DownloadColumn(), TimeElapsedColumn(), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("reading extracts", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, p: importer.Progress) -> None:
        if self._bar is not None:
            if p.phase == "read":
                self._bar.update(self._task, completed=p.done, total=p.total)
            elif p.phase in self.PHASES:
                self._bar.update(self._task, description=self.PHASES[p.phase])
            elif p.phase == "done":
                self._bar.update(self._task, description="done")
            return
        if p.phase not in self._said and (p.phase in self.PHASES or p.phase == "read"):
            self._said.add(p.phase)
            what = "reading extracts" if p.phase == "read" else self.PHASES[p.phase]
            print(f"caducee: directory import: {what}…", file=sys.stderr, flush=True)


def _check_report(report: Path) -> None:
    """The report is written after the import's commit: make sure it can be, first."""
    if report.is_dir():
        raise CliError(f"--report {report}: is a directory (give a file name)")
    existing = next((d for d in report.parents if d.exists()), None)
    if existing is not None and not existing.is_dir():
        raise CliError(f"--report {report}: {existing} is not a directory")
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(
            f"--report {report}: cannot create {report.parent} ({exc.strerror})"
        ) from None
    if not os.access(report.parent, os.W_OK | os.X_OK):
        raise CliError(f"--report {report}: {report.parent} is not writable")


def cmd_import(args: argparse.Namespace) -> int:
    with _engine(args) as (cfg, engine):
        section = cfg.directory
        report = args.report or (
            section.report_dir
            / f"directory-import-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.txt"
        )
        _check_report(report)
        with _Progress() as progress:
            options = importer.ImportOptions(
                strict=args.strict,
                lenient_identifiers=section.lenient_identifiers and not args.strict_identifiers,
                actor=_actor(), report_path=report, progress=progress,
                journal=_journal(cfg), workers=args.workers or section.import_workers or None,
                max_deactivation=None if args.allow_deactivation else section.max_deactivation,
            )
            try:
                result = importer.import_files(engine, args.files, options)
            except ImportRefused as exc:
                raise CliError(
                    f"import refused, nothing changed: {exc}\nreport: {report}"
                ) from None
            except SourceError as exc:
                raise CliError(str(exc)) from None
    for line in result.summary_lines():
        print(line)
    for issue in result.first_issues[:20]:
        print(f"  {issue.severity.value}: {issue}")
    if result.errors + result.warnings > 20:
        print(f"  … {result.errors + result.warnings - 20} more")
    print(f"report: {report}")
    return 0


# -- search -------------------------------------------------------------------------------


def cmd_search(args: argparse.Namespace) -> int:
    query = search.Query(
        text=" ".join(args.text), profession=args.profession, specialty=args.specialty,
        town=args.town, postcode=args.postcode, departement=args.departement,
        identifier=args.identifier, address=args.address, mailbox_type=args.mailbox_type,
        page=args.page, per_page=args.per_page,
    )
    with _engine(args) as (_, engine):
        try:
            page = _read(engine, lambda conn: search.search(conn, query))
        except search.QueryError as exc:
            raise CliError(exc.message_fr) from None
    if args.json:
        print(json.dumps({"page": page.page, "has_more": page.has_more,
                          "results": [h.as_json() for h in page.hits]},
                         ensure_ascii=False, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Annuaire — page {page.page}" + (" (suite…)" if page.has_more else ""))
    for col in ("Nom", "Identifiant", "Profession", "Lieu", "Messagerie"):
        table.add_column(col)
    for h in page.hits:
        place = h.places[0] if h.places else None
        where = f"{place.postcode} {place.town}".strip() if place else ""
        if len(h.places) > 1:
            where += f" (+{len(h.places) - 1})"
        table.add_row(
            h.name, h.national_id or "",
            ", ".join(h.professions + h.specialties),
            where, "\n".join(m.address for m in h.mailboxes),
        )
    # on a pipe, wide enough that addresses are never folded
    Console(width=None if sys.stdout.isatty() else 250).print(table)
    if not page.hits:
        print("Aucun résultat.")
    return 0


# -- admin --------------------------------------------------------------------------------


def _admin(args: argparse.Namespace, fn: Callable[[Connection, admin.Who, Any], T]) -> T:
    with _engine(args) as (cfg, engine):
        journal = _journal(cfg)
        who = admin.Who(_actor(), "cli")
        try:
            return _write(engine, lambda conn: fn(conn, who, journal))
        except admin.AdminError as exc:
            raise CliError(str(exc)) from None


def cmd_add_practitioner(args: argparse.Namespace) -> int:
    entry = _admin(args, lambda conn, who, journal: admin.add_practitioner(
        conn, national_id=args.national_id, last_name=args.last_name,
        first_name=args.first_name, civility=args.civility, civility_code=args.civility_code,
        profession=args.profession,
        specialty_code=args.specialty_code, specialty=args.specialty, town=args.town,
        postcode=args.postcode, departement=args.departement, who=who, journal=journal,
    ))
    print(f"added practitioner {entry.national_id}: {entry.display_name} ({entry.profession})")
    return 0


def cmd_add_mailbox(args: argparse.Namespace) -> int:
    entry = _admin(args, lambda conn, who, journal: admin.add_mailbox(
        conn, address=args.address, mailbox_type=args.mailbox_type,
        national_id=args.national_id, last_name=args.last_name, first_name=args.first_name,
        structure_name=args.structure, service=args.service, profession=args.profession,
        red_list=args.red_list, who=who, journal=journal,
    ))
    print(f"added {entry.mailbox_type} mailbox {entry.address}"
          + (" (red list: never shown by search)" if entry.red_list else ""))
    return 0


#: The options of `edit` (argparse destinations, named as the fields they override).
_PRACTITIONER_EDITS = ("last_name", "first_name", "civility", "civility_code", "profession",
                       "specialty_code", "specialty", "town", "postcode", "departement")
_MAILBOX_EDITS = ("last_name", "first_name", "mailbox_type", "national_id", "structure_name",
                  "service", "profession", "red_list")


def cmd_edit(args: argparse.Namespace) -> int:
    is_mailbox = "@" in args.target
    names = _MAILBOX_EDITS if is_mailbox else _PRACTITIONER_EDITS
    changes: dict[str, str | bool | None] = {}
    for field in names:
        value = getattr(args, field, None)
        if value is not None:
            changes[field] = value
    others = sorted(o for o in {*_MAILBOX_EDITS, *_PRACTITIONER_EDITS} - set(names)
                    if getattr(args, o, None) is not None)
    if others:
        what = "a practitioner" if is_mailbox else "a mailbox"
        raise CliError(f"not {what}: cannot change " + ", ".join(others))
    for field in args.reset:
        changes[field] = None
    if not changes:
        raise CliError("nothing to change")
    if is_mailbox:
        entry: Any = _admin(args, lambda conn, who, journal: admin.edit_mailbox(
            conn, args.target, changes, who=who, journal=journal))
        print(f"{entry.address}: updated ({entry.display_name})")
    else:
        entry = _admin(args, lambda conn, who, journal: admin.edit_practitioner(
            conn, args.target, changes, who=who, journal=journal))
        print(f"{entry.national_id}: updated ({entry.display_name})")
    return 0


def cmd_deactivate(args: argparse.Namespace) -> int:
    _admin(args, lambda conn, who, journal: admin.deactivate(
        conn, args.target, who=who, journal=journal))
    print(f"{args.target}: deactivated (kept, with the date; imports will not reactivate it)")
    return 0


def cmd_reactivate(args: argparse.Namespace) -> int:
    _admin(args, lambda conn, who, journal: admin.reactivate(
        conn, args.target, who=who, journal=journal))
    print(f"{args.target}: manual deactivation removed")
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def cmd_show(args: argparse.Namespace) -> int:
    with _engine(args) as (_, engine):
        try:
            details = _read(engine, lambda conn: admin.show(conn, args.target))
        except admin.AdminError as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(_jsonable(asdict(details)), ensure_ascii=False, indent=2))
        return 0
    if isinstance(details, admin.PractitionerDetails):
        e = details.entry
        print(f"{e.display_name} — {e.national_id}")
        print(f"  state: {'active' if e.active else 'inactive'}"
              + (f" since {details.inactive_since:%Y-%m-%d}" if details.inactive_since else "")
              + f"; source: {details.source}; updated {details.updated_at:%Y-%m-%d %H:%M}")
        for a in details.activities:
            s = a.activity
            print(f"  activity ({'active' if a.active else 'inactive'}): {s.profession}"
                  + (f", {s.specialty}" if s.specialty else "")
                  + f" — {s.site.name} {s.site.postcode} {s.site.town}".rstrip())
        for m in details.mailboxes:
            print(f"  mailbox {m.address} ({m.mailbox_type}"
                  + (", red list" if m.red_list else "")
                  + (", inactive" if not m.active else "") + ")")
    else:
        m = details.entry
        print(f"{m.address} — {m.mailbox_type} — {m.display_name}")
        print(f"  state: {'active' if m.active else 'inactive'}"
              + (f" since {details.inactive_since:%Y-%m-%d}" if details.inactive_since else "")
              + f"; source: {m.source}" + ("; red list" if m.red_list else ""))
    for name, o in details.overrides.items():
        imported = f" (the extract says «{o['imported']}»)" if o.get("imported") else ""
        print(f"  manual {name} = «{o['value']}» by {o['by']} on {o['at']}{imported}")
    return 0
