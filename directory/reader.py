"""Reading extract files: plain ``.txt`` or inside the published ``.zip``, any encoding.

Lines are streamed (constant memory whatever the file size), from any byte range so that
several processes can share a file. The encoding is detected, not assumed (DOMAIN.md §4),
once per file (:func:`directory.staging.plan`): a UTF-8 byte-order mark means UTF-8;
otherwise the non-ASCII lines of the file's beginning vote. In a UTF-8 file a line that is
not valid UTF-8 is an error on that line. Only when the beginning is all ASCII does a range
decide alone: a line that is not valid UTF-8 *before any valid non-ASCII UTF-8 was seen*
switches it to Latin-1 (old extracts), a bad line *after* valid UTF-8 is an error.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from directory.issues import Issue

UTF8 = "utf-8"
#: How much :meth:`RangeReader.blocks` reads and decodes at once.
BLOCK_BYTES = 1 << 20
LATIN1 = "latin-1"
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Source:
    """One extract: a file, or one member of a zip archive."""

    #: How problems name it: ``path`` or ``archive.zip!member.txt``.
    label: str
    path: Path
    member: str | None
    #: Uncompressed size in bytes (for progress).
    size: int

    def open(self) -> BinaryIO:
        if self.member is None:
            return self.path.open("rb")
        archive = zipfile.ZipFile(self.path)
        try:
            stream = archive.open(self.member)
        except BaseException:
            archive.close()
            raise
        return _ZipMember(archive, stream)  # type: ignore[arg-type,return-value]


class _ZipMember:
    """A member stream that also closes its archive."""

    def __init__(self, archive: zipfile.ZipFile, stream: BinaryIO) -> None:
        self._archive, self._stream = archive, stream

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def readline(self, size: int = -1) -> bytes:
        return self._stream.readline(size)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._archive.close()

    def __enter__(self) -> _ZipMember:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SourceError(Exception):
    """A file that cannot be read at all (missing, not a zip, no extract inside)."""


#: The first bytes of a zip archive's local file header (APPNOTE.TXT §4.3.7).
ZIP_MAGIC = b"PK\x03\x04"


def sources(path: Path) -> list[Source]:
    """The extracts in ``path``: the file itself, or each ``.txt`` member of a zip.

    A zip archive that cannot be opened (a truncated download has no central directory) is
    refused as such, rather than read as a text file with a garbage header.
    """
    if path.is_dir():
        raise SourceError(f"{path}: is a directory, not an extract file (.txt or .zip)")
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            magic = f.read(len(ZIP_MAGIC))
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror})") from None
    if magic == ZIP_MAGIC and not zipfile.is_zipfile(path):
        raise SourceError(f"{path}: damaged or truncated zip archive (download it again)")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                members = [
                    i for i in archive.infolist()
                    if not i.is_dir() and i.filename.lower().endswith((".txt", ".csv"))
                ]
        except zipfile.BadZipFile as exc:
            raise SourceError(f"{path}: unreadable zip archive ({exc})") from None
        if not members:
            raise SourceError(f"{path}: the archive holds no .txt extract")
        return [Source(f"{path}!{m.filename}", path, m.filename, m.file_size) for m in members]
    return [Source(str(path), path, None, path.stat().st_size)]


class RangeReader:
    """Decoded lines of a byte range of a source, numbered from 1, end-of-line removed.

    ``codec`` is the file's encoding when known (:data:`UTF8` or :data:`LATIN1`), None to
    detect it in this range. Undecodable lines are passed to ``on_issue`` and given as empty
    strings (skipped as empty lines are, but numbered). ``progress(bytes)`` is called after
    each block of ``block_bytes``. After iteration, ``physical_lines`` counts every line
    consumed (empty and undecodable ones included) and ``encoding`` names the decoding used.
    """

    def __init__(
        self, source: Source, start: int, end: int | None, *, bom: bool, skip_header: bool,
        on_issue: Callable[[Issue], None], progress: Callable[[int], None] | None = None,
        codec: str | None = None, block_bytes: int = BLOCK_BYTES,
    ) -> None:
        self.source, self.start, self.end = source, start, end
        self.block_bytes = block_bytes
        self.skip_header = skip_header
        self.on_issue, self.progress = on_issue, progress
        self.codec = codec or UTF8
        self.encoding = "utf-8 (BOM)" if bom else self.codec
        # a known UTF-8 file never switches: its bad lines are errors
        self.seen_utf8 = bom or codec == UTF8
        self.physical_lines = 0

    def blocks(self) -> Iterator[tuple[int, list[str]]]:
        """The lines a block at a time: (number of the first line, lines).

        A whole block of lines is decoded at once, which costs much less than line by line.
        An undecodable line is reported and given as an empty string (the parsers skip empty
        lines without counting them), so that the lines of a block stay consecutively
        numbered.
        """
        with self.source.open() as stream:
            if self.skip_header:
                stream.readline()
            elif self.start:
                stream.seek(self.start)
            left = None if self.end is None else self.end - self.start
            done = n = 0
            rest = b""
            while True:
                size = self.block_bytes if left is None else min(self.block_bytes, left)
                data = stream.read(size) if size > 0 else b""
                if left is not None:
                    left -= len(data)
                if data:
                    cut = data.rfind(b"\n") + 1
                    if not cut:
                        rest += data
                        continue
                    chunk, rest = rest + data[:cut], data[cut:]
                elif rest:  # the last line has no end-of-line
                    chunk, rest = rest, b""
                else:
                    break
                done += len(chunk)
                lines = self._decode_block(chunk, n)
                yield n + 1, lines
                n += len(lines)
                if self.progress is not None:
                    self.progress(done)
            self.physical_lines = n

    def _decode_block(self, chunk: bytes, before: int) -> list[str]:
        """The lines of ``chunk`` (whole lines; ``before`` lines came before it)."""
        try:
            text = chunk.decode(self.codec)
        except UnicodeDecodeError:
            return self._decode_lines(chunk, before)
        if not self.seen_utf8 and not chunk.isascii():
            self.seen_utf8 = True
        lines = text.split("\n")
        if chunk.endswith(b"\n"):
            lines.pop()
        if "\r" in text:
            lines = [line.rstrip("\r") for line in lines]
        return lines

    def _decode_lines(self, chunk: bytes, before: int) -> list[str]:
        """A block that does not decode as a whole, line by line."""
        out: list[str] = []
        raws = chunk.split(b"\n")
        if chunk.endswith(b"\n"):
            raws.pop()
        for i, raw in enumerate(raws, before + 1):
            try:
                text = raw.decode(self.codec)
            except UnicodeDecodeError as exc:
                if self.seen_utf8:
                    bad = raw[exc.start : exc.start + 1].hex()
                    self.on_issue(Issue(self.source.label, i, "-", "not valid UTF-8",
                                        f"byte 0x{bad}"))
                    out.append("")
                    continue
                self.codec = self.encoding = LATIN1
                text = raw.decode(LATIN1)
            else:
                if not self.seen_utf8 and not raw.isascii():
                    self.seen_utf8 = True
            out.append(text.rstrip("\r"))
        return out
