"""Directory import and search at national size, beside the physical floor (issue 6).

    python benchmarks/directory_import.py [--person-lines 2000000] [--mailbox-lines 550000]

1. generates the synthetic national extracts once (cached under the temp dir);
2. imports them into a fresh SQLite database, in a subprocess: time, lines/s, and the peak
   memory of the whole import — the resident memory of the importing process and of its
   parsing workers, sampled together every 100 ms (psutil), the peak of their sum;
3. re-imports a later extract of both files (1 % removed, 1 % changed): the delta;
4. runs 1,000 mixed searches (names, prefixes, spelling variants, RPPS, address, town,
   postcode, profession, specialty, département), p50/p95/max including result loading;
5. the physical floor: the ``sqlite3`` command-line ``.import`` of the same two files into
   unindexed tables (the same lines Caducée counts), and the ratio;
6. a PASS/FAIL line per target: ≥ 100,000 lines/s, peak memory < 300 MiB, search
   p95 < 10 ms.

Run on a quiet machine: the figures are wall-clock times.
"""

from __future__ import annotations

import argparse
import contextlib
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

import psutil  # noqa: E402

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


#: Targets of issue 6.
TARGET_LINES_PER_S = 100_000
TARGET_PEAK_MIB = 300
TARGET_P95_MS = 10.0
SAMPLE_EVERY = 0.1


def run_import(url: str, files: list[str], workers: int | None) -> dict[str, object]:
    """In the subprocess: import, and report timings and peak memory as JSON."""
    from directory.importer import ImportOptions, import_files
    from mailstore.db import create_db_engine

    engine = create_db_engine(url)
    t = time.perf_counter()
    res = import_files(engine, [Path(f) for f in files], ImportOptions(workers=workers))
    elapsed = time.perf_counter() - t
    engine.dispose()
    me, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
    return {
        "seconds": elapsed,
        "lines": res.lines,
        "timings": res.timings,
        "summary": res.summary_lines(),
        "rss_main_mib": me.ru_maxrss / 1024,
        "rss_workers_mib": children.ru_maxrss / 1024,
        "cpu_main_s": me.ru_utime + me.ru_stime,
        "cpu_workers_s": children.ru_utime + children.ru_stime,
    }


def _phases(result: dict[str, object]) -> str:
    """The phases' wall-clock times, and the CPU time spent (robust on a busy machine)."""
    return ("  phases: " + ", ".join(
        f"{k} {v:.1f} s" for k, v in result["timings"].items())  # type: ignore[attr-defined]
        + f"; CPU: importing process {result['cpu_main_s']:.1f} s, parsing workers "
        f"{result['cpu_workers_s']:.1f} s")


def _tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants, now (those that just exited
    count for nothing)."""
    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def _import(url: str, files: list[Path], workers: int | None) -> dict[str, object]:
    """Import in a subprocess; sample the memory of its process tree while it runs."""
    cmd = [sys.executable, __file__, "--run-import", url, *map(str, files)]
    if workers:
        cmd += ["--workers", str(workers)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=ROOT)
        tree = psutil.Process(child.pid)
        peak = samples = 0
        while child.poll() is None:
            peak = max(peak, _tree_rss(tree))
            samples += 1
            time.sleep(SAMPLE_EVERY)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"import failed ({child.returncode}):\n{err.read()}")
        result = dict(json.loads(out.read().strip().splitlines()[-1]))
    result["peak_tree_mib"] = peak / 2**20
    result["samples"] = samples
    return result


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


def _floor(person: Path, mailbox: Path, work: Path) -> float:
    """``sqlite3`` CLI ``.import`` of both files into unindexed tables (53 and 32 columns:
    the data columns and the empty one after the trailing ``|``), in one transaction."""
    db = work / "floor.db"
    db.unlink(missing_ok=True)
    person_cols = ", ".join(f"c{i} TEXT" for i in range(53))
    mailbox_cols = ", ".join(f"c{i} TEXT" for i in range(32))
    script = (f"PRAGMA journal_mode=WAL;\nCREATE TABLE p ({person_cols});\n"
              f"CREATE TABLE m ({mailbox_cols});\n.mode list\n.separator |\n"
              f".import --skip 1 {person} p\n.import --skip 1 {mailbox} m\n")
    t = time.perf_counter()
    subprocess.run(["sqlite3", str(db)], input=script, text=True, check=True,
                   capture_output=True)
    return time.perf_counter() - t


def _data_lines(path: Path) -> int:
    """Lines after the header (what the floor loads; Caducée counts the same ones)."""
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip()) - 1


def _verdict(ok: bool, what: str) -> str:
    return f"{'PASS' if ok else 'FAIL'}: {what}"


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
        rate = lines / secs
        peak = float(first["peak_tree_mib"])  # type: ignore[arg-type]
        print("\n".join(first["summary"]))  # type: ignore[arg-type]
        print(f"import: {lines} lines in {secs:.1f} s = {rate:,.0f} lines/s")
        print(_phases(first))
        print(f"  peak memory: {peak:.0f} MiB resident for the importing process and its "
              f"parsing workers together ({first['samples']} samples every "
              f"{SAMPLE_EVERY * 1000:.0f} ms); alone: importing process "
              f"{first['rss_main_mib']:.0f} MiB, largest worker "
              f"{first['rss_workers_mib']:.0f} MiB")
        size = sum(p.stat().st_size for p in work.glob("caducee.db*")) / 2**20
        print(f"  database size: {size:.0f} MiB")

        later = work / "PS_LibreAcces_Personne_activite_later.txt"
        later_boxes = work / "Extraction_Correspondance_MSSante_later.txt"
        gen_extract.derive_delta(person, later, remove=0.01, change=0.01)
        gen_extract.derive_mailbox_delta(mailbox, later_boxes, remove=0.01, change=0.01)
        delta = _import(url, [later, later_boxes], args.workers)
        dsecs = float(delta["seconds"])  # type: ignore[arg-type]
        print(f"delta import (1 % removed, 1 % changed, both files): {dsecs:.1f} s = "
              f"{int(delta['lines']) / dsecs:,.0f} lines/s, "  # type: ignore[call-overload]
              f"peak memory {float(delta['peak_tree_mib']):.0f} MiB")  # type: ignore[arg-type]
        print(_phases(delta))
        print("  " + " | ".join(delta["summary"][3:6]))  # type: ignore[index]

        lat = _search_latency(url, args.queries)
        print(f"search ({args.queries} mixed queries): p50 {lat['p50_ms']:.2f} ms, "
              f"p95 {lat['p95_ms']:.2f} ms, max {lat['max_ms']:.1f} ms, "
              f"{lat['mean_hits']:.1f} results a page on average")

        floor = _floor(person, mailbox, work)
        floor_lines = _data_lines(person) + _data_lines(mailbox)
        floor_rate = floor_lines / floor
        print(f"floor: sqlite3 .import of both files into unindexed tables: "
              f"{floor_lines} lines in {floor:.1f} s = {floor_rate:,.0f} lines/s")
        print(f"ratio: Caducée {rate:,.0f} lines/s ÷ floor {floor_rate:,.0f} lines/s = "
              f"{rate / floor_rate:.2f} (the floor is {floor_rate / rate:.1f}× faster per line)")
        if floor_lines != lines:
            print(f"  note: the floor loaded {floor_lines} lines, Caducée imported {lines}")

        print(_verdict(rate >= TARGET_LINES_PER_S,
                       f"import {rate:,.0f} lines/s (target ≥ {TARGET_LINES_PER_S:,})"))
        print(_verdict(peak < TARGET_PEAK_MIB,
                       f"peak memory {peak:.0f} MiB (target < {TARGET_PEAK_MIB} MiB)"))
        print(_verdict(lat["p95_ms"] < TARGET_P95_MS,
                       f"search p95 {lat['p95_ms']:.2f} ms (target < {TARGET_P95_MS:g} ms)"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
