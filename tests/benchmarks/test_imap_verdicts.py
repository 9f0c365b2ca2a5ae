"""The IMAP benchmark judges its figures against issue 5's targets (ops ≥ 1.0× Dovecot's
speed; ≤ 20 MiB per 1,000 idle connections). Pure: figures in, verdict lines out."""

from __future__ import annotations

from benchmarks.imap import MiB, Side, verdicts


def _side(name: str, a: float, b: float, c: float) -> Side:
    side = Side(name, 0, "u", "p", None, list)
    side.times = {"a": [a], "b": [b], "c": [c]}
    return side


def test_each_op_and_idle_memory_get_a_verdict() -> None:
    dov = _side("Dovecot", 1.0, 2.0, 3.0)
    cad = _side("Caducée", 0.5, 2.0, 6.0)
    cad.memory = {"rss_before": 100 * MiB, "rss_idle": 118 * MiB,
                  "pss_before": 90 * MiB, "pss_idle": 107 * MiB}
    lines = verdicts(dov, cad, 1000)
    assert lines[0].startswith("(a) SELECT + FETCH ENVELOPE: Caducée at 2.00× ")
    assert lines[0].endswith("(target ≥ 1.0×): met")
    assert lines[1].endswith("1.00× Dovecot's speed (target ≥ 1.0×): met")
    assert lines[2].endswith("0.50× Dovecot's speed (target ≥ 1.0×): MISSED")
    assert lines[3] == (
        "(d) idle connections: Caducée grows 18.0 MiB per 1,000 (target ≤ 20 MiB): met"
    )
    # 500 connections, RSS +11 MiB, PSS +10 MiB: the larger counts, 22 MiB per 1,000
    cad.memory.update(rss_idle=111 * MiB, pss_idle=100 * MiB)
    assert verdicts(dov, cad, 500)[3].endswith("grows 22.0 MiB per 1,000 (target ≤ 20 MiB): MISSED")


def test_missing_figures_are_not_judged() -> None:
    cad = _side("Caducée", 1.0, 1.0, 1.0)
    assert verdicts(None, cad, 1000) == [
        "(a) SELECT + FETCH ENVELOPE: not judged (no figure for both servers)",
        "(b) FETCH BODY[]: not judged (no figure for both servers)",
        "(c) SEARCH TEXT: not judged (no figure for both servers)",
        "(d) idle connections: not judged (no memory figure for Caducée)",
    ]
    assert verdicts(None, None, 1000) == []
