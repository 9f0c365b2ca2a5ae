"""Reading a byte range a block at a time gives the lines a line-by-line reader gives."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from directory.issues import Issue
from directory.reader import LATIN1, UTF8, RangeReader, sources


def _reference(data: bytes, codec: str | None) -> tuple[list[tuple[int, str]], list[int], str]:
    """Line by line, as the importer read before blocks: (numbered non-error lines, line
    numbers of the undecodable ones, encoding)."""
    out: list[tuple[int, str]] = []
    bad: list[int] = []
    current = codec or UTF8
    seen_utf8 = codec == UTF8
    raws = data.split(b"\n") if data else []
    if data.endswith(b"\n"):
        raws.pop()
    for n, raw in enumerate(raws, 1):
        try:
            text = raw.decode(current)
        except UnicodeDecodeError:
            if seen_utf8:
                bad.append(n)
                continue
            current = LATIN1
            text = raw.decode(LATIN1)
        else:
            if not seen_utf8 and not raw.isascii():
                seen_utf8 = True
        out.append((n, text.rstrip("\r")))
    return out, bad, current


def _read(path: Path, codec: str | None, block: int) -> tuple[RangeReader, list[Issue],
                                                              list[tuple[int, list[str]]]]:
    issues: list[Issue] = []
    reader = RangeReader(sources(path)[0], 0, None, bom=False, skip_header=False,
                         on_issue=issues.append, codec=codec, block_bytes=block)
    return reader, issues, list(reader.blocks())


_LINES = st.lists(
    st.one_of(
        st.text(alphabet="abc|éŒ \r", max_size=12).map(lambda t: t.encode("utf-8")),
        st.text(alphabet="abc|é", max_size=6).map(lambda t: t.encode("latin-1")),
        st.just(b""),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(lines=_LINES, final_newline=st.booleans(), block=st.integers(1, 40),
       codec=st.sampled_from([None, UTF8, LATIN1]))
def test_blocks_agree_with_a_line_by_line_reader(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], final_newline: bool,
    block: int, codec: str | None,
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    path = tmp_path_factory.mktemp("r") / "extract.txt"
    path.write_bytes(data)
    expected, bad, encoding = _reference(data, codec)
    reader, issues, blocks = _read(path, codec, block)
    numbered = [(n, text) for first, texts in blocks for n, text in enumerate(texts, first)]
    # an undecodable line is given empty (numbered, skipped by the parsers) and reported
    assert [(n, t) for n, t in numbered if n not in bad] == expected
    assert all(numbered[n - 1] == (n, "") for n in bad)
    assert [i.line for i in issues] == bad
    assert all(i.message == "not valid UTF-8" for i in issues)
    assert reader.physical_lines == len(numbered) == len(expected) + len(bad)
    assert reader.codec == encoding


def test_a_range_reads_whole_lines_up_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "extract.txt"
    path.write_bytes(b"head\none\r\ntwo\nthree\nfour")
    start, end = len(b"head\n"), len(b"head\none\r\ntwo\n")
    seen: list[int] = []
    reader = RangeReader(sources(path)[0], start, end, bom=False, skip_header=False,
                         on_issue=lambda i: None, progress=seen.append, block_bytes=4)
    assert [(n, t) for first, b in reader.blocks() for n, t in enumerate(b, first)] == [
        (1, "one"), (2, "two")]
    assert reader.physical_lines == 2
    assert seen[-1] == end - start


def test_paths_that_are_not_extracts_are_named_for_what_they_are(tmp_path: Path) -> None:
    """A directory is not "missing", and a zip cut short by an interrupted download is not
    read as a text file (its garbage would be reported as a wrong header)."""
    from directory.reader import SourceError

    with pytest.raises(SourceError, match="is a directory, not an extract file"):
        sources(tmp_path)
    with pytest.raises(SourceError, match="no such file"):
        sources(tmp_path / "absent.txt")
    whole = tmp_path / "Extraction.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Extraction_Correspondance_MSSante_20261125.txt", "a|b|\n" * 5000)
    assert [s.member for s in sources(whole)] == [
        "Extraction_Correspondance_MSSante_20261125.txt"]
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(SourceError, match="damaged or truncated zip archive"):
        sources(cut)
