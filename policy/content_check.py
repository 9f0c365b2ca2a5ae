"""Is one file acceptable, judged by its content alone? Pure: bytes in, a verdict out.

Accepted (issue 7): PDF, JPEG, PNG, TIFF, plain text, HL7 CDA XML, and ZIP only as an IHE
XDM package whose members are themselves acceptable. Refused, whatever the file is called:
executables and scripts, macro-enabled (and other) office files, other archives, encrypted,
nested or oversized archives, polyglots, HTML and anything unrecognised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policy.file_types import ARCHIVES, EXECUTABLE, Family, sniff
from policy.xdm import Role, index_problem, is_xdm, layout_problem, metadata_problem, role_of
from policy.xml_documents import XmlRefused, embedded_files, is_cda, parse_xml
from policy.zip_inspect import ZipLimits, ZipMember, ZipRefused, read_zip

#: How deep files may be found inside files (an XDM package, a CDA inside it, a PDF inside that).
MAX_DEPTH = 3

_ACCEPTED_LEAVES = frozenset({Family.PDF, Family.JPEG, Family.PNG, Family.TIFF, Family.TEXT})

#: PDF names that start code or hide files (ISO 32000-1 §12.6.4.16, §12.6.4.5, §7.11.4).
_PDF_ACTIVE = frozenset({"JavaScript", "JS", "Launch", "EmbeddedFile", "EmbeddedFiles",
                         "RichMedia"})
#: Names too long to occur by chance in compressed data (looked for everywhere).
_PDF_ACTIVE_LONG = _PDF_ACTIVE - {"JS"}
_PDF_NAME = re.compile(rb"/([^\s/<>\[\]()%{}]{1,64})")
_PDF_HEX_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_PDF_STREAM = re.compile(rb"\bstream\r?\n.*?\bendstream\b", re.S)


@dataclass(frozen=True, slots=True)
class ContentVerdict:
    allowed: bool
    family: Family
    #: Why it is refused (English, names no file: the caller adds the name).
    problem: str = ""


def _refuse(family: Family, problem: str) -> ContentVerdict:
    return ContentVerdict(False, family, problem)


def check_content(
    data: bytes,
    *,
    zip_limits: ZipLimits,
    expected_patients: frozenset[str] | None = None,
    depth: int = 0,
) -> ContentVerdict:
    """Judge one file. ``expected_patients``: INS of the patient recipients (XDM check)."""
    found = sniff(data)
    family = found.family
    if found.is_polyglot:
        others = ", ".join(sorted(f.value for f in found.also))
        return _refuse(family, f"polyglot: content reads as {family.value} and as {others}")
    if family in EXECUTABLE:
        what = "script" if family is Family.SCRIPT else f"executable ({family.value})"
        return _refuse(family, what)
    if family is Family.OLE:
        return _refuse(family, "OLE compound document (legacy office file or installer)")
    if family in ARCHIVES and depth > 0:
        return _refuse(family, "nested archive")
    if family is Family.ARCHIVE:
        return _refuse(family, "archive type not accepted (only IHE XDM ZIP packages)")
    if family is Family.ZIP:
        return _check_zip(data, zip_limits, expected_patients, depth)
    if family is Family.PDF:
        active = pdf_active_content(data)
        if active:
            return _refuse(family, f"PDF with active content (/{active})")
        return ContentVerdict(True, family)
    if family in _ACCEPTED_LEAVES:
        return ContentVerdict(True, family)
    if family is Family.XML:
        return _check_xml(data, zip_limits, depth)
    labels = {
        Family.HTML: "HTML document",
        Family.GIF: "GIF image not accepted",
        Family.RTF: "RTF document (may embed objects)",
        Family.UNKNOWN: "unrecognised content",
    }
    return _refuse(family, labels.get(family, f"{family.value} not accepted"))


def pdf_active_content(data: bytes) -> str | None:
    """The first PDF name that starts code or embeds a file, or ``None``.

    Names are compared after decoding ``#xx`` escapes (ISO 32000-1 §7.3.5). Stream data
    (ISO 32000-1 §7.3.8: between ``stream`` and ``endstream``) is skipped for the short
    ``/JS``: compressed bytes may contain it by chance. The long names are looked for in
    the whole file too: what looks like a stream may be a string literal — ``(stream)``
    before an object and ``(endstream)`` after it would otherwise hide the object, while
    a reader goes straight to it through the cross-reference table (ISO 32000-1 §7.5.4).
    Names inside compressed object streams are not seen: this is a screen, not a proof.
    """
    found = _pdf_names(_PDF_STREAM.sub(b" ", data), _PDF_ACTIVE)
    return found or _pdf_names(data, _PDF_ACTIVE_LONG)


def _pdf_names(data: bytes, wanted: frozenset[str]) -> str | None:
    for m in _PDF_NAME.finditer(data):
        raw = m.group(1)
        if b"#" in raw:
            raw = _PDF_HEX_ESCAPE.sub(lambda e: bytes([int(e.group(1), 16)]), raw)
        name = raw.decode("latin-1")
        if name in wanted:
            return name
    return None


def _check_xml(data: bytes, zip_limits: ZipLimits, depth: int) -> ContentVerdict:
    try:
        root = parse_xml(data)
    except XmlRefused as exc:
        return _refuse(Family.XML, str(exc))
    if not is_cda(root):
        return _refuse(Family.XML, "XML other than an HL7 CDA document")
    try:
        embedded = embedded_files(root)
    except XmlRefused as exc:
        return _refuse(Family.XML, f"CDA body: {exc}")
    if embedded and depth >= MAX_DEPTH:
        return _refuse(Family.XML, "files nested too deep")
    for item in embedded:
        verdict = check_content(item.data, zip_limits=zip_limits, depth=depth + 1)
        if not verdict.allowed:
            return _refuse(Family.XML, f"CDA body: {verdict.problem}")
    return ContentVerdict(True, Family.XML)


def _check_zip(
    data: bytes, limits: ZipLimits, expected_patients: frozenset[str] | None, depth: int
) -> ContentVerdict:
    try:
        members = read_zip(data, limits)
    except ZipRefused as exc:
        return _refuse(Family.ZIP, str(exc))
    for m in members:
        inner = sniff(m.data)
        if inner.family in ARCHIVES or inner.also & ARCHIVES:
            return _refuse(Family.ZIP, f"nested archive: {m.name}")
    kind = _package_kind(members)
    if kind is not None:
        return _refuse(Family.ZIP, kind)
    if not is_xdm(members):
        return _refuse(Family.ZIP, "ZIP archive that is not an IHE XDM package")
    problem = layout_problem(members)
    if problem:
        return _refuse(Family.ZIP, problem)
    for m in members:
        problem = _xdm_member_problem(m, limits, expected_patients, depth)
        if problem:
            return _refuse(Family.ZIP, f"XDM member {m.name}: {problem}")
    return ContentVerdict(True, Family.ZIP)


def _package_kind(members: list[ZipMember]) -> str | None:
    """Name the known non-XDM packages: office documents and Java archives."""
    names = {m.name.upper(): m for m in members}
    if "[CONTENT_TYPES].XML" in names:
        types = names["[CONTENT_TYPES].XML"].data.lower()
        if b"macroenabled" in types or any(n.endswith("VBAPROJECT.BIN") for n in names):
            return "macro-enabled office document"
        return "office document (not accepted)"
    if any(n.endswith("VBAPROJECT.BIN") for n in names):
        return "macro-enabled office document"
    mimetype = names.get("MIMETYPE")
    if mimetype is not None and mimetype.data.startswith(b"application/vnd.oasis.opendocument"):
        return "office document (not accepted)"
    if "META-INF/MANIFEST.MF" in names or any(n.endswith(".CLASS") for n in names):
        return "Java archive (executable)"
    return None


def _xdm_member_problem(
    m: ZipMember, limits: ZipLimits, expected_patients: frozenset[str] | None, depth: int
) -> str | None:
    role = role_of(m.name)
    if role is Role.INDEX:
        page = sniff(m.data)
        markup = {Family.HTML, Family.TEXT, Family.XML}
        if page.family not in markup or not page.also <= markup:
            return "INDEX.HTM is not an HTML page"
        return index_problem(m.data)
    if role is Role.METADATA:
        return metadata_problem(m.data, expected_patients)
    verdict = check_content(m.data, zip_limits=limits, depth=depth + 1)
    if not verdict.allowed:
        return verdict.problem
    if role is Role.README and verdict.family is not Family.TEXT:
        return "README.TXT is not text"
    return None
