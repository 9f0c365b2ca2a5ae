"""Directory import and search at national size, beside the physical floor (issue 6).

    python benchmarks/directory_import.py [--person-lines 2000000] [--mailbox-lines 550000]

1. generates the synthetic national extracts once (cached under the temp dir);
2. imports them into a fresh SQLite database, in a subprocess: time, lines/s, peak RSS of
   the importing process and of its parsing workers;
3. re-imports a later extract (1 % of practitioners removed, 1 % changed): the delta;
4. runs 1,000 mixed searches (names, prefixes, spelling variants, RPPS, address, town,
   postcode, profession, specialty, département), p50/p95/max including result loading;
5. the physical floor: the ``sqlite3`` command-line ``.import`` of the same person file into
   an unindexed table, and the ratio.

Targets: ≥ 100,000 lines/s, peak RSS < 300 MiB, search p95 < 10 ms. Run on a quiet machine:
the figures are wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import gen_extract  # noqa: E402


def _extracts(cache: Path, person_lines: int, mailbox_lines: int) -> tuple[Path, Path]:
    d = cache / f"extract-{person_lines}-{mailbox_lines}"
    person, mailbox = d / gen_extract.PERSON_NAME, d / gen_extract.MAILBOX_NAME
    done = d / "complete"
    if not done.exists():
        print(f"generating {person_lines} + {mailbox_lines} lines into {d} (cached)…", flush=True)
        shutil.rmtree(d, ignore_errors=True)
        gen_extract.generate(d, person_lines=person_lines, mailbox_lines=mailbox_lines, seed=1)
        done.touch()
    return person, mailbox


def run_import(url: str, files: list[str], workers: int | None) -> dict[str, object]:
    """In the subprocess: import, and report timings and peak memory as JSON."""
    from directory.importer import ImportOptions, import_files
    from mailstore.db import create_db_engine

    engine = create_db_engine(url)
    t = time.perf_counter()
    res = import_files(engine, [Path(f) for f in files], ImportOptions(workers=workers))
    elapsed = time.perf_counter() - t
    engine.dispose()
    return {
        "seconds": elapsed,
        "lines": res.lines,
        "timings": res.timings,
        "summary": res.summary_lines(),
        "rss_main_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_workers_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _import(url: str, files: list[Path], workers: int | None) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--run-import", url, *map(str, files)]
    if workers:
        cmd += ["--workers", str(workers)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _queries(url: str, n: int, seed: int = 42) -> list[dict[str, object]]:
    """Mixed realistic queries built from the imported data."""
    from sqlalchemy import text

    from directory import records
    from mailstore.db import create_db_engine

    rng = random.Random(seed)
    engine = create_db_engine(url)
    with engine.connect() as conn:
        total = int(conn.execute(text("SELECT count(*) FROM practitioner")).scalar_one())
        ids = [int(r[0]) for r in conn.execute(
            text("SELECT id FROM practitioner ORDER BY id LIMIT 1 OFFSET :o"),
            {"o": rng.randrange(total)}
        )]
        sample = conn.execute(text(
            "SELECT p.national_id, p.raw, a.raw FROM practitioner p "
            "JOIN practitioner_activity a ON a.practitioner_id = p.id "
            "WHERE p.id >= :start ORDER BY p.id LIMIT :n"), {"start": ids[0], "n": n}
        ).all()
        addresses = [r[0] for r in conn.execute(text(
            "SELECT address FROM directory_mailbox WHERE id % 97 = 1 LIMIT :n"), {"n": n})]
    engine.dispose()
    queries: list[dict[str, object]] = []
    for i in range(n):
        nat, praw, araw = sample[i % len(sample)]
        person = records.person_fields(praw)
        act = records.activity_record(araw)
        last, first = person[7], person[8]
        kind = i % 10
        if kind == 0:
            q: dict[str, object] = {"text": last}
        elif kind == 1:
            q = {"text": last[: max(3, len(last) // 2)]}
        elif kind == 2:
            q = {"text": f"{first} {last}"}
        elif kind == 3:
            q = {"text": last.replace("-", " ").lower()}
        elif kind == 4:
            q = {"identifier": nat[1:]}
        elif kind == 5:
            q = {"address": addresses[i % len(addresses)].split("@")[0]}
        elif kind == 6:
            q = {"town": act.site.town, "profession": act.profession_code}
        elif kind == 7:
            q = {"postcode": act.site.postcode, "text": last[:3]}
        elif kind == 8:
            q = {"departement": act.site.departement, "profession": act.profession_code,
                 "page": 3}
        else:
            q = {"specialty": act.specialty_code or "SM54", "town": act.site.town}
        queries.append(q)
    return queries


def _search_latency(url: str, n: int) -> dict[str, float]:
    from directory.search import Query, search
    from mailstore.db import create_db_engine

    queries = _queries(url, n)
    engine = create_db_engine(url)
    times: list[float] = []
    hits = 0
    with engine.connect() as conn:
        for q in queries[:20]:  # warm the page cache a little, as a running server would be
            search(conn, Query(**q))  # type: ignore[arg-type]
        for q in queries:
            t = time.perf_counter()
            page = search(conn, Query(**q))  # type: ignore[arg-type]
            times.append(time.perf_counter() - t)
            hits += len(page.hits)
    engine.dispose()
    times.sort()
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": times[int(len(times) * 0.95)] * 1000,
        "max_ms": times[-1] * 1000,
        "mean_hits": hits / len(times),
    }


def _floor(person: Path, work: Path) -> float:
    """``sqlite3`` CLI ``.import`` of the person file into an unindexed 53-column table."""
    db = work / "floor.db"
    db.unlink(missing_ok=True)
    cols = ", ".join(f"c{i} TEXT" for i in range(53))
    script = (f"PRAGMA journal_mode=WAL;\nCREATE TABLE t ({cols});\n.mode list\n"
              f".separator |\n.import --skip 1 {person} t\n")
    t = time.perf_counter()
    subprocess.run(["sqlite3", str(db)], input=script, text=True, check=True,
                   capture_output=True)
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--person-lines", type=int, default=2_000_000)
    parser.add_argument("--mailbox-lines", type=int, default=550_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "caducee-bench-directory")
    parser.add_argument("--run-import", nargs="+", metavar=("URL", "FILE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_import:
        url, *files = args.run_import
        print(json.dumps(run_import(url, files, args.workers)))
        return 0

    args.cache.mkdir(parents=True, exist_ok=True)
    person, mailbox = _extracts(args.cache, args.person_lines, args.mailbox_lines)
    work = Path(tempfile.mkdtemp(prefix="caducee-bench-dir-", dir=args.cache))
    try:
        from caducee.dbschema import upgrade
        from mailstore.db import create_db_engine

        url = f"sqlite:///{work / 'caducee.db'}"
        engine = create_db_engine(url)
        upgrade(engine)
        engine.dispose()

        first = _import(url, [person, mailbox], args.workers)
        lines = int(first["lines"])  # type: ignore[call-overload]
        secs = float(first["seconds"])  # type: ignore[arg-type]
        print("\n".join(first["summary"]))  # type: ignore[arg-type]
        print(f"import: {lines} lines in {secs:.1f} s = {lines / secs:,.0f} lines/s")
        print("  phases: " + ", ".join(
            f"{k} {v:.1f} s" for k, v in first["timings"].items()))  # type: ignore[attr-defined]
        print(f"  peak RSS: importing process {first['rss_main_mib']:.0f} MiB, "
              f"largest parsing worker {first['rss_workers_mib']:.0f} MiB")
        size = sum(p.stat().st_size for p in work.glob("caducee.db*")) / 2**20
        print(f"  database size: {size:.0f} MiB")

        later = work / "PS_LibreAcces_Personne_activite_later.txt"
        gen_extract.derive_delta(person, later, remove=0.01, change=0.01)
        delta = _import(url, [later, mailbox], args.workers)
        dsecs = float(delta["seconds"])  # type: ignore[arg-type]
        print(f"delta import (1 % removed, 1 % changed): {dsecs:.1f} s = "
              f"{int(delta['lines']) / dsecs:,.0f} lines/s")  # type: ignore[call-overload]
        print("  " + " | ".join(delta["summary"][3:6]))  # type: ignore[index]

        lat = _search_latency(url, args.queries)
        print(f"search ({args.queries} mixed queries): p50 {lat['p50_ms']:.2f} ms, "
              f"p95 {lat['p95_ms']:.2f} ms, max {lat['max_ms']:.1f} ms, "
              f"{lat['mean_hits']:.1f} results a page on average")

        floor = _floor(person, work)
        n_person = args.person_lines
        print(f"floor: sqlite3 .import of the person file (unindexed): {floor:.1f} s = "
              f"{n_person / floor:,.0f} lines/s")
        print(f"ratio: Caducée {lines / secs:,.0f} lines/s vs floor {n_person / floor:,.0f} "
              f"lines/s = {(lines / secs) / (n_person / floor):.2f}× "
              f"(floor is {floor and (secs / floor * n_person / lines):.1f}× faster per line)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
