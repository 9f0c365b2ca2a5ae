"""What a file is, from its bytes (ARCHITECTURE.md §5: by content, never by name). Pure.

:func:`sniff` recognises a *family* from the signature at offset 0 (our own table, precise
where ``puremagic``'s loose matches are weak: Mach-O, shebang scripts, text, markup), then
looks for a second interpretation of the same bytes (a polyglot):

* a ``%PDF-`` header anywhere in the first 1024 bytes, where PDF readers look for it
  (ISO 32000-1 §7.5.2, implementation note in annex H), unless the file *is* a PDF at 0;
* a valid ZIP end-of-central-directory record at the end (APPNOTE.TXT §4.3.16), which ZIP
  readers find from the end whatever precedes it (JPEG+ZIP, PDF+ZIP, self-extracting EXE);
* markup or script inside an image (``<script``, ``<html``, ``<?php``);
* ``puremagic``'s own identification at offset 0, when it names a dangerous family that our
  table did not see.

Text is recognised by decoding (UTF-8, or Windows-1252 for older French files) with no
control characters, then classified as markup, XML or plain text, and plain text is
searched for the marks of scripts (shell, batch, PowerShell, VBScript, JavaScript, Python).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from enum import StrEnum


class Family(StrEnum):
    PDF = "PDF"
    JPEG = "JPEG"
    PNG = "PNG"
    TIFF = "TIFF"
    TEXT = "text"
    XML = "XML"
    ZIP = "ZIP"
    GIF = "GIF"
    HTML = "HTML"
    RTF = "RTF"
    SCRIPT = "script"
    PE = "Windows executable (PE)"
    ELF = "ELF executable"
    MACHO = "Mach-O executable"
    JAVA = "Java class"
    WASM = "WebAssembly module"
    SHORTCUT = "Windows shortcut"
    OLE = "OLE compound document"
    ARCHIVE = "archive"
    UNKNOWN = "unknown"


#: Families that execute, or carry something that executes, whatever they are called.
EXECUTABLE = frozenset({Family.PE, Family.ELF, Family.MACHO, Family.JAVA, Family.WASM,
                        Family.SHORTCUT, Family.SCRIPT})
ARCHIVES = frozenset({Family.ZIP, Family.ARCHIVE})

_PREFIXES: tuple[tuple[bytes, Family], ...] = (
    (b"%PDF-", Family.PDF),
    (b"\xff\xd8\xff", Family.JPEG),
    (b"\x89PNG\r\n\x1a\n", Family.PNG),
    (b"II*\x00", Family.TIFF),
    (b"MM\x00*", Family.TIFF),
    (b"II+\x00", Family.TIFF),  # BigTIFF
    (b"MM\x00+", Family.TIFF),
    (b"PK\x03\x04", Family.ZIP),
    (b"PK\x05\x06", Family.ZIP),  # an empty archive
    (b"PK\x07\x08", Family.ZIP),  # a spanned archive
    (b"GIF87a", Family.GIF),
    (b"GIF89a", Family.GIF),
    (b"{\\rtf", Family.RTF),
    (b"MZ", Family.PE),
    (b"\x7fELF", Family.ELF),
    (b"\xfe\xed\xfa\xce", Family.MACHO),
    (b"\xfe\xed\xfa\xcf", Family.MACHO),
    (b"\xce\xfa\xed\xfe", Family.MACHO),
    (b"\xcf\xfa\xed\xfe", Family.MACHO),
    (b"\xca\xfe\xba\xbe", Family.JAVA),  # also a Mach-O universal binary: refused either way
    (b"\x00asm", Family.WASM),
    (b"L\x00\x00\x00\x01\x14\x02\x00", Family.SHORTCUT),
    (b"#!", Family.SCRIPT),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", Family.OLE),
    (b"\x1f\x8b", Family.ARCHIVE),  # gzip
    (b"BZh", Family.ARCHIVE),
    (b"\xfd7zXZ\x00", Family.ARCHIVE),
    (b"7z\xbc\xaf\x27\x1c", Family.ARCHIVE),
    (b"Rar!\x1a\x07", Family.ARCHIVE),
    (b"MSCF", Family.ARCHIVE),  # Windows cabinet
    (b"\x28\xb5\x2f\xfd", Family.ARCHIVE),  # zstd
    (b"ITSF", Family.ARCHIVE),  # compiled HTML help (.chm)
)

#: puremagic's MIME types that name a dangerous family (exact names; its ZIP-based guesses
#: such as ``.jar`` or office formats are left to the archive inspection).
_PUREMAGIC_DANGER: dict[str, Family] = {
    "application/vnd.microsoft.portable-executable": Family.PE,
    "application/x-msdownload": Family.PE,
    "application/x-dosexec": Family.PE,
    "application/x-executable": Family.ELF,
    "application/x-sharedlib": Family.ELF,
    "application/x-pef-executable": Family.ELF,
    "application/x-mach-binary": Family.MACHO,
    "application/java": Family.JAVA,
    "application/javascript": Family.SCRIPT,
    "application/x-script": Family.SCRIPT,
    "application/x-shellscript": Family.SCRIPT,
    "application/x-ole-storage": Family.OLE,
    "application/gzip": Family.ARCHIVE,
    "application/x-gzip": Family.ARCHIVE,
    "application/vnd.rar": Family.ARCHIVE,
    "application/x-rar-compressed": Family.ARCHIVE,
    "application/x-7z-compressed": Family.ARCHIVE,
    "application/x-bzip2": Family.ARCHIVE,
    "application/x-tar": Family.ARCHIVE,
    "application/x-apple-diskimage": Family.ARCHIVE,
    "application/x-zstd-compressed-tar": Family.ARCHIVE,
    "application/x-lz4-compressed-tar": Family.ARCHIVE,
}

_MARKUP_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body|script|iframe"
    rb"|svg|object|embed|meta|a\s|div|table|p[\s>]|style|form|frameset)",
    re.IGNORECASE | re.DOTALL,
)
_XML_START = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*<[?!A-Za-z_]")
_MARKUP_ANYWHERE = re.compile(rb"<script|<html|<\?php|<iframe|<svg[\s>]|javascript:", re.IGNORECASE)

#: Marks of scripts in something that is otherwise text; each alone is enough. Each mark is
#: a lower-case literal that must occur (found with ``str.find``, fast on large files) and
#: the pattern then checked on the line where it occurs.
_SCRIPT_MARKS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (trigger, re.compile(pattern, re.IGNORECASE | re.MULTILINE))
    for trigger, pattern in (
        # batch
        ("echo", r"^\s*@?echo\s+off\b"),
        ("%comspec%", r"%comspec%"),
        ("%~dp0", r"%~dp0"),
        ("cmd", r"\bcmd(?:\.exe)?\s+/[ck]\b"),
        ("goto", r"^\s*goto\s+:?[A-Za-z_]\w*\s*$"),
        # PowerShell
        ("invoke-", r"\bInvoke-(?:Expression|WebRequest|RestMethod)\b"),
        ("iex", r"\biex\s*\("),
        ("-encodedcommand", r"-EncodedCommand\b"),
        ("set-executionpolicy", r"\bSet-ExecutionPolicy\b"),
        ("start-process", r"\bStart-Process\b"),
        ("webclient", r"New-Object\s+(?:System\.)?Net\.WebClient"),
        (".downloadstring", r"\.DownloadString\s*\("),
        ("$env:", r"\$env:[A-Za-z_]"),
        ("powershell", r"\bpowershell(?:\.exe)?\s+-"),
        # VBScript
        ("wscript.", r"\bWScript\.\w+"),
        ("createobject", r"\bCreateObject\s*\(\s*[\"']"),
        ("on error", r"^\s*On\s+Error\s+Resume\s+Next\b"),
        ("executeglobal", r"\bExecuteGlobal\b"),
        ("shell.application", r"\bShell\.Application\b"),
        # JavaScript
        ("eval", r"\beval\s*\("),
        ("activexobject", r"\bnew\s+ActiveXObject\b"),
        ("document.write", r"\bdocument\.write\s*\("),
        ("fromcharcode", r"\bString\.fromCharCode\s*\("),
        ("window.location", r"\bwindow\.location\b"),
        ("child_process", r"\brequire\s*\(\s*[\"']child_process"),
        ("function", r"\bfunction\s+[A-Za-z_$][\w$]*\s*\([^)]*\)\s*\{"),
        ("var", r"^\s*var\s+[A-Za-z_$][\w$]*\s*="),
        ("let", r"^\s*let\s+[A-Za-z_$][\w$]*\s*="),
        ("const", r"^\s*const\s+[A-Za-z_$][\w$]*\s*="),
        # Python
        ("import", r"^\s*import\s+(?:os|sys|subprocess|socket|ctypes)\b"),
        ("os.system", r"\bos\.system\s*\("),
        ("subprocess.", r"\bsubprocess\.\w+\s*\("),
        ("__import__", r"\b__import__\s*\("),
    )
)

#: Control characters that text never holds (tab, line feed, form feed, return allowed).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")

_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_MAX_COMMENT = 0xFFFF


@dataclass(frozen=True, slots=True)
class Sniffed:
    """The family recognised at offset 0, and any other interpretation of the same bytes."""

    family: Family
    #: Other families the bytes also read as (non-empty: a polyglot).
    also: frozenset[Family] = field(default_factory=frozenset)
    #: The decoded text, for text-like families (``TEXT``, ``XML``, ``HTML``, ``SCRIPT``).
    text: str | None = None

    @property
    def is_polyglot(self) -> bool:
        return bool(self.also - {self.family})


def zip_eocd_offset(data: bytes) -> int | None:
    """The offset of a consistent end-of-central-directory record, searched from the end.

    Consistent: its comment length reaches exactly the end of the data, and the central
    directory it points to fits before it (APPNOTE.TXT §4.3.16).
    """
    start = max(0, len(data) - _EOCD_SIZE - _MAX_COMMENT)
    pos = data.rfind(_EOCD, start)
    while pos >= 0:
        if pos + _EOCD_SIZE <= len(data):
            (_, _, _, _, _, cd_size, _, comment_len) = struct.unpack_from(
                "<4s4H2LH", data, pos
            )
            if pos + _EOCD_SIZE + comment_len == len(data) and cd_size <= pos:
                return pos
        pos = data.rfind(_EOCD, start, pos)
    return None


def _decode_text(data: bytes) -> str | None:
    """Decode as text, or ``None`` if these bytes are not text."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _CONTROL.search(text):
            return None
        return text
    return None


def _head_family(data: bytes) -> Family:
    for prefix, family in _PREFIXES:
        if data.startswith(prefix):
            return family
    if len(data) > 262 and data[257:262] == b"ustar":
        return Family.ARCHIVE
    return Family.UNKNOWN


def _puremagic_families(data: bytes) -> set[Family]:
    import puremagic  # on first use: its signature table costs a process ~1 MiB

    try:
        matches = puremagic.magic_string(data)
    except (puremagic.PureError, ValueError):
        return set()
    found: set[Family] = set()
    for m in matches:
        if m.offset != 0:
            continue
        family = _PUREMAGIC_DANGER.get(m.mime_type.lower())
        if family is not None:
            found.add(family)
    return found


def looks_like_script(text: str) -> bool:
    """Does the text carry one of the marks of a script (see ``_SCRIPT_MARKS``)?"""
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters change length when lowered
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    for trigger, pattern in _SCRIPT_MARKS:
        pos = lowered.find(trigger)
        while pos >= 0:
            start = text.rfind("\n", 0, pos) + 1
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            if pattern.search(text, start, end):
                return True
            pos = lowered.find(trigger, end)
    return False


def sniff(data: bytes) -> Sniffed:
    """Recognise ``data``; see the module documentation."""
    family = _head_family(data)
    also: set[Family] = set()
    text: str | None = None
    if family is Family.UNKNOWN:
        text = _decode_text(data)
        if text is not None:
            if _MARKUP_START.match(data):
                family = Family.HTML
            elif _XML_START.match(data):
                family = Family.XML
                if _MARKUP_ANYWHERE.search(data):
                    also.add(Family.HTML)
            elif looks_like_script(text):
                family = Family.SCRIPT
            else:
                family = Family.TEXT
    elif family is Family.SCRIPT:
        text = _decode_text(data)
    pdf_at = data.find(b"%PDF-", 0, 1024 + 5)
    if pdf_at >= 0 and family is not Family.PDF:
        also.add(Family.PDF)
    if family is not Family.ZIP and zip_eocd_offset(data) is not None:
        also.add(Family.ZIP)
    if family in (Family.JPEG, Family.PNG, Family.TIFF, Family.GIF) and _MARKUP_ANYWHERE.search(
        data
    ):
        also.add(Family.HTML)
    for extra in _puremagic_families(data[:65536]):
        if extra is not family and not (family is Family.MACHO and extra is Family.JAVA):
            also.add(extra)
    also.discard(family)
    return Sniffed(family, frozenset(also), text)
