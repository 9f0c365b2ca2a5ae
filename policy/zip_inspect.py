"""Bounded reading of ZIP archives, against zip bombs and tricks (APPNOTE.TXT 6.3.x). Pure.

Nothing is decompressed before the central directory has been judged:

1. the end-of-central-directory record (APPNOTE §4.3.16) is read first: no ZIP64, no
   spanning, at most ``max_members`` entries, a central directory of plausible size;
2. the central directory (``zipfile``, which reads only it when opening): member names are
   safe relative paths, not duplicated; no member is encrypted (general purpose flag bit 0,
   APPNOTE §4.4.4); only *stored* or *deflated* (§4.4.5); each declared size is within
   ``max_member_size``, the declared total within ``max_total_size`` and each ratio of
   uncompressed to compressed size within ``max_ratio``;
3. only then each member is read through a bounded stream: ``zipfile`` never returns more
   than the declared size and checks the CRC-32 at the end, so a member that lies about its
   size is caught, and memory stays bounded by the declared total.

Nested archives are the caller's business: members come back as bytes to be checked.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

from policy.file_types import zip_eocd_offset

_EOCD_FORMAT = "<4s4H2LH"
_CD_ENTRY_MIN = 46
_CD_ENTRY_MAX = 46 + 1024 + 1024  # a generous name and extra field


class ZipRefused(ValueError):
    """The archive is refused; the message says why."""


@dataclass(frozen=True, slots=True)
class ZipLimits:
    max_members: int = 256
    max_member_size: int = 10 * 1024 * 1024
    max_total_size: int = 64 * 1024 * 1024
    max_ratio: int = 100
    #: The ratio is judged only for members larger than this (tiny files compress oddly).
    ratio_floor: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class ZipMember:
    name: str
    size: int
    compressed_size: int
    data: bytes


def _check_name(name: str) -> str | None:
    if not name or len(name) > 1024:
        return "empty or overlong member name"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "control character in a member name"
    if "\\" in name:
        return "backslash in a member name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute member path"
    if any(part == ".." for part in name.split("/")):
        return "member path leaves the archive (..)"
    return None


def _check_eocd(data: bytes, limits: ZipLimits) -> None:
    pos = zip_eocd_offset(data)
    if pos is None:
        raise ZipRefused("not a readable ZIP archive (no end of central directory)")
    (_, disk, cd_disk, entries_here, entries, cd_size, cd_offset, _) = struct.unpack_from(
        _EOCD_FORMAT, data, pos
    )
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        raise ZipRefused("ZIP64 archive not accepted")
    if disk != 0 or cd_disk != 0 or entries_here != entries:
        raise ZipRefused("multi-volume archive not accepted")
    if entries > limits.max_members:
        raise ZipRefused(f"archive has {entries} members (more than {limits.max_members})")
    if cd_size > entries * _CD_ENTRY_MAX or cd_size < entries * _CD_ENTRY_MIN:
        raise ZipRefused("central directory inconsistent with its member count")


def read_zip(data: bytes, limits: ZipLimits) -> list[ZipMember]:
    """Judge the archive, then read its members (directories left out).

    Raise :class:`ZipRefused` with the reason when the archive is refused.
    """
    _check_eocd(data, limits)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            _check_directory(infos, limits)
            members: list[ZipMember] = []
            for info in infos:
                if info.is_dir():
                    continue
                with archive.open(info) as stream:
                    content = stream.read(info.file_size + 1)
                if len(content) != info.file_size:
                    raise ZipRefused(f"member size differs from the directory: {info.filename}")
                members.append(
                    ZipMember(info.filename, info.file_size, info.compress_size, content)
                )
            return members
    except ZipRefused:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ZipRefused(f"corrupt archive ({exc})") from None
    except (NotImplementedError, RuntimeError, ValueError, EOFError, zlib.error, struct.error,
            OSError) as exc:
        raise ZipRefused(f"unreadable archive ({exc.__class__.__name__})") from None


def _check_directory(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    if len(infos) > limits.max_members:
        raise ZipRefused(f"archive has more than {limits.max_members} members")
    seen: set[str] = set()
    total = 0
    for info in infos:
        problem = _check_name(info.filename)
        if problem:
            raise ZipRefused(problem)
        key = info.filename.rstrip("/").upper()
        if key in seen:
            raise ZipRefused(f"duplicate member name: {info.filename}")
        seen.add(key)
        if info.flag_bits & 0x1 or info.flag_bits & 0x40:
            raise ZipRefused("encrypted archive")
        if info.is_dir():
            continue
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ZipRefused(f"compression method {info.compress_type} not accepted")
        if info.file_size > limits.max_member_size:
            raise ZipRefused(
                f"member expands to {info.file_size} bytes (limit {limits.max_member_size})"
            )
        if (
            info.file_size > limits.ratio_floor
            and info.file_size > limits.max_ratio * max(info.compress_size, 1)
        ):
            ratio = info.file_size // max(info.compress_size, 1)
            raise ZipRefused(f"compression ratio {ratio}:1 (zip bomb)")
        total += info.file_size
        if total > limits.max_total_size:
            raise ZipRefused(f"archive expands beyond {limits.max_total_size} bytes (zip bomb)")
