"""Store-level pieces: the hot-path AAD, the structure cache, flag arithmetic, UID sets."""

from __future__ import annotations

from mailstore.imap_cache import StructureCache
from mailstore.imap_messages import _aad, apply_flags
from mailstore.messages import body_aad, meta_aad


def test_hot_path_aad_matches_the_store() -> None:
    assert _aad("blob-meta", "ab12", 7) == meta_aad("ab12", 7)
    assert _aad("blob-body", "ab12", 7) == body_aad("ab12", 7)


def test_structure_cache_is_bounded_and_keeps_only_structure() -> None:
    cache = StructureCache(max_entries=2)
    meta = {"envelope": "E", "body": "B", "bodystructure": "S", "fields": [["from", "x"]]}
    assert cache.put("a", meta) == {"envelope": "E", "body": "B", "bodystructure": "S"}
    cache.put("b", meta)
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", meta)
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2
    off = StructureCache(max_entries=0)
    off.put("a", meta)
    assert off.get("a") is None and len(off) == 0


def test_flag_arithmetic() -> None:
    assert apply_flags("\\Seen", "+", ["\\Flagged", "\\Recent"]) == "\\Flagged \\Seen"
    assert apply_flags("\\Flagged \\Seen", "-", ["\\Seen"]) == "\\Flagged"
    assert apply_flags("\\Flagged \\Seen", "", ["$x"]) == "$x"
