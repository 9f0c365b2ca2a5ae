"""Store-level pieces: the hot-path AAD, the structure cache, flag arithmetic, UID sets."""

from __future__ import annotations

from mailstore.imap_cache import StructureCache
from mailstore.imap_messages import apply_flags, blob_aad
from mailstore.messages import body_aad, meta_aad


def test_hot_path_aad_matches_the_store() -> None:
    assert blob_aad("blob-meta", "ab12", 7) == meta_aad("ab12", 7)
    assert blob_aad("blob-body", "ab12", 7) == body_aad("ab12", 7)


def test_structure_cache_is_bounded_and_keeps_only_structure() -> None:
    cache = StructureCache(max_entries=2)
    meta = {"envelope": "E", "body": "B", "bodystructure": "S", "fields": [["from", "x"]]}
    entry = cache.put("a", meta)
    assert (entry.envelope, entry.body, entry.bodystructure) == (b"E", b"B", b"S")
    assert not hasattr(entry, "fields") and entry.reads == (None, ())
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


def test_structure_cache_keeps_the_journal_facts_of_patient_addresses() -> None:
    ins = "1234567890123AB"
    meta = {
        "envelope": "E", "body": "B", "bodystructure": "S",
        "fields": [
            ["from", f"Patient <{ins.lower()}@Patient.Test>"],
            ["to", "dr@chu.test, 223456789012345@other.test"],
            ["subject", f"about {ins}@patient.test"],  # not an address field
            ["message-id", " <m1@patient.test> "],
            ["message-id", "<second@x>"],
        ],
    }
    entry = StructureCache().put("a", meta)
    assert entry.reads == (
        "<m1@patient.test>", ((ins.upper(), "patient.test"), ("223456789012345", "other.test")),
    )
    assert StructureCache().get_many(["nope", "other"]) == [None, None]
