"""Attachments of a message: which are acceptable (issue 7, "Attachments"). Pure: bytes in.

:func:`check_message` walks the MIME tree (RFC 2045/2046, parsed with ``email`` and
``email.policy.default``; ``message/rfc822`` parts are entered, so a forwarded message's
attachments are judged too) and judges every attachment:

* its **content** (:func:`policy.content_check.check_content`: magic bytes, polyglots,
  bounded ZIP inspection, CDA and XDM checks);
* its **declared type** and **file name** must not contradict that content (a PDF declared
  ``application/zip``, a PNG called ``scan.pdf``), and a name with an extension that runs
  code (``.exe``, ``.js``, ``.docm``…) is refused whatever the content;
* its **size** (``max_attachment_size``) and the message's (``max_message_size``).

A leaf part is an attachment when it has a file name, is marked ``attachment``, or is not
one of the body types (``text/plain``, ``text/html``, delivery and disposition reports).

The detail of a refusal names the attachment (its file name, fine in a reply to the
sender); :attr:`AttachmentReport.audit_detail` names it only by position, since a file
name may carry health information and must never reach the audit journal.
"""

from __future__ import annotations

import email
import email.errors
import email.message
import email.policy
import email.utils
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email.message import Message

from policy.content_check import check_content
from policy.decision import Decision, Reason
from policy.file_types import Family
from policy.zip_inspect import ZipLimits

MiB = 1024 * 1024

#: Leaf types that are the message itself, not attachments, unless named or marked so.
BODY_TYPES = frozenset({
    "text/plain",
    "text/html",
    "message/delivery-status",
    "message/global-delivery-status",
    "message/disposition-notification",
    "message/global-disposition-notification",
    "text/rfc822-headers",
    "message/global-headers",
})

#: Declared types that say nothing about the content.
NEUTRAL_TYPES = frozenset({
    "application/octet-stream",
    "binary/octet-stream",
    "application/x-download",
    "application/force-download",
    "application/unknown",
})

#: Declared types we know, and the content families they may carry.
DECLARED_FAMILIES: dict[str, frozenset[Family]] = {
    "application/pdf": frozenset({Family.PDF}),
    "application/x-pdf": frozenset({Family.PDF}),
    "image/jpeg": frozenset({Family.JPEG}),
    "image/jpg": frozenset({Family.JPEG}),
    "image/pjpeg": frozenset({Family.JPEG}),
    "image/png": frozenset({Family.PNG}),
    "image/tiff": frozenset({Family.TIFF}),
    "image/tiff-fx": frozenset({Family.TIFF}),
    "text/xml": frozenset({Family.XML}),
    "application/xml": frozenset({Family.XML}),
    "application/hl7-v3+xml": frozenset({Family.XML}),
    "application/hl7-cda+xml": frozenset({Family.XML}),
    "application/cda+xml": frozenset({Family.XML}),
    "application/zip": frozenset({Family.ZIP}),
    "application/x-zip": frozenset({Family.ZIP}),
    "application/x-zip-compressed": frozenset({Family.ZIP}),
    "multipart/x-zip": frozenset({Family.ZIP}),
}

#: File name extensions we know, and the family they promise.
EXTENSION_FAMILIES: dict[str, frozenset[Family]] = {
    "pdf": frozenset({Family.PDF}),
    "jpg": frozenset({Family.JPEG}),
    "jpeg": frozenset({Family.JPEG}),
    "jpe": frozenset({Family.JPEG}),
    "jfif": frozenset({Family.JPEG}),
    "png": frozenset({Family.PNG}),
    "tif": frozenset({Family.TIFF}),
    "tiff": frozenset({Family.TIFF}),
    "txt": frozenset({Family.TEXT}),
    "text": frozenset({Family.TEXT}),
    "csv": frozenset({Family.TEXT}),
    "xml": frozenset({Family.XML}),
    "zip": frozenset({Family.ZIP}),
}

#: Extensions that run code or carry macros on common systems: refused whatever the content.
DANGEROUS_EXTENSIONS = frozenset({
    "exe", "com", "scr", "pif", "bat", "cmd", "js", "jse", "mjs", "vbs", "vbe", "wsf", "wsh",
    "ps1", "psm1", "psd1", "msi", "msp", "mst", "hta", "jar", "lnk", "cpl", "dll", "sys", "reg",
    "sh", "bash", "zsh", "csh", "command", "app", "dmg", "pkg", "apk", "deb", "rpm", "elf",
    "scf", "inf", "ins", "isp", "url", "website", "library-ms", "settingcontent-ms", "appref-ms",
    "docm", "dotm", "xlsm", "xltm", "xlam", "xlsb", "pptm", "potm", "ppam", "ppsm", "sldm",
    "iso", "img", "vhd", "vhdx", "chm", "application", "gadget", "msc", "py", "pyw", "pl", "rb",
    "php", "svg",
    # HTML runs its scripts when opened (a browser judges by the name, not the content).
    "html", "htm", "xhtml", "xht", "shtml", "mht", "mhtml",
})

#: Content-Transfer-Encoding values (RFC 2045 §6.1) that leave the content as it is.
IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
#: Those ``email`` decodes — only when the field is exactly one of them, whereas mail
#: clients take the first word (``base64 (comment)``, ``base64;``, ``base64 ``).
DECODED_ENCODINGS = frozenset({
    "base64", "quoted-printable", "x-uuencode", "uuencode", "uue", "x-uue",
})


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    max_message_size: int = 20 * MiB
    max_attachment_size: int = 10 * MiB
    zip_max_members: int = 256
    zip_max_total_size: int = 64 * MiB
    zip_max_ratio: int = 100
    #: MIME structure bounds (RFC 2046 allows any depth; we do not).
    max_parts: int = 500
    max_depth: int = 20

    def zip_limits(self) -> ZipLimits:
        return ZipLimits(
            max_members=self.zip_max_members,
            max_member_size=self.max_attachment_size,
            max_total_size=self.zip_max_total_size,
            max_ratio=self.zip_max_ratio,
        )


@dataclass(frozen=True, slots=True)
class AttachmentFinding:
    """The verdict on one attachment."""

    #: Position among the message's attachments, from 1.
    index: int
    #: The file name, cleaned of control characters ("" when none). Never for the journal.
    name: str
    declared_type: str
    size: int
    family: Family
    allowed: bool
    reason: Reason = Reason.OK
    problem: str = ""

    @property
    def label(self) -> str:
        return self.name or f"attachment #{self.index}"

    @property
    def decision(self) -> Decision:
        if self.allowed:
            return Decision.allow(self.label)
        return Decision.deny(self.reason, f"{self.label}: {self.problem}")

    @property
    def audit_detail(self) -> str:
        """What the journal may keep: position, declared type, size, why — not the name."""
        return f"attachment #{self.index} ({self.declared_type}, {self.size} bytes): {self.problem}"


@dataclass(frozen=True, slots=True)
class AttachmentReport:
    """The message's decision (the first refusal, or allowed) and every attachment's verdict."""

    decision: Decision
    attachments: tuple[AttachmentFinding, ...] = ()
    #: The refusal without file names, for the audit journal.
    audit_detail: str = ""


class _Refused(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def clean_name(name: str | None, limit: int = 120) -> str:
    """A file name fit for a reply: no control or formatting characters, bounded length.

    Formatting characters include the right-to-left override used to disguise
    ``invoice<U+202E>fdp.exe`` as ``invoiceexe.pdf``.
    """
    if not name:
        return ""
    cleaned = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf"))
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _extension(name: str) -> str:
    base = name.replace("\\", "/").rpartition("/")[2].rstrip(". ")
    stem, dot, ext = base.rpartition(".")
    return ext.lower() if dot and stem else ""


def declared_problem(name: str, declared_type: str, family: Family) -> str | None:
    """Why the declared type or the name contradicts the content ``family``, or ``None``."""
    ext = _extension(unicodedata.normalize("NFKC", name))
    if ext in DANGEROUS_EXTENSIONS:
        return f"file name extension .{ext} not accepted"
    ctype = declared_type.lower()
    if ctype and ctype not in NEUTRAL_TYPES:
        allowed = DECLARED_FAMILIES.get(ctype)
        if allowed is None and ctype.startswith("text/") and ctype != "text/html":
            allowed = frozenset({Family.TEXT})
        if allowed is None or family not in allowed:
            return f"declared type {ctype} contradicts the content ({family.value})"
    promised = EXTENSION_FAMILIES.get(ext)
    if promised is not None and family not in promised:
        return f"file name extension .{ext} contradicts the content ({family.value})"
    return None


def check_attachment(
    data: bytes,
    *,
    name: str = "",
    declared_type: str = "application/octet-stream",
    limits: AttachmentLimits = AttachmentLimits(),
    patient_recipients: frozenset[str] | None = None,
    index: int = 1,
) -> AttachmentFinding:
    """Judge one attachment (also used for files uploaded through the webmail).

    ``patient_recipients``: the INS of the message's patient recipients, when there are
    some; an XDM package must then name one of them as its patient.
    """
    shown = clean_name(name)
    ctype = declared_type.lower().strip()
    if len(data) > limits.max_attachment_size:
        return AttachmentFinding(
            index, shown, ctype, len(data), Family.UNKNOWN, False, Reason.MESSAGE_TOO_LARGE,
            f"attachment larger than {limits.max_attachment_size} bytes",
        )
    verdict = check_content(
        data, zip_limits=limits.zip_limits(), expected_patients=patient_recipients
    )
    if not verdict.allowed:
        return AttachmentFinding(
            index, shown, ctype, len(data), verdict.family, False,
            Reason.ATTACHMENT_TYPE_REFUSED, verdict.problem,
        )
    problem = declared_problem(name, ctype, verdict.family)
    if problem:
        return AttachmentFinding(
            index, shown, ctype, len(data), verdict.family, False,
            Reason.ATTACHMENT_TYPE_REFUSED, problem,
        )
    return AttachmentFinding(index, shown, ctype, len(data), verdict.family, True)


def _leaves(
    part: Message, depth: int, limits: AttachmentLimits, count: list[int]
) -> Iterator[Message]:
    count[0] += 1
    if count[0] > limits.max_parts:
        raise _Refused(Reason.ATTACHMENT_TYPE_REFUSED, f"more than {limits.max_parts} MIME parts")
    if depth > limits.max_depth:
        raise _Refused(Reason.ATTACHMENT_TYPE_REFUSED, "MIME structure nested too deep")
    if part.is_multipart():
        if _transfer_encoding(part) not in IDENTITY_ENCODINGS:  # (None: repeated)
            # RFC 2045 §6.4, RFC 2046 §5.2.1: a multipart or message/rfc822 entity is never
            # encoded; ``email`` then reads the encoded text as the part, readers decode it.
            raise _Refused(
                Reason.ATTACHMENT_TYPE_REFUSED,
                f"encoded {part.get_content_type()} part",
            )
        payload = part.get_payload()
        for sub in payload if isinstance(payload, list) else []:
            if isinstance(sub, Message):
                yield from _leaves(sub, depth + 1, limits, count)
        return
    yield part


def _transfer_encoding(part: Message) -> str | None:
    """The ``Content-Transfer-Encoding`` (lower case, surrounding spaces removed; ``7bit``
    when absent), or ``None`` when the field is repeated (readers differ on which counts)."""
    values = part.get_all("content-transfer-encoding") or []
    if len(values) > 1:
        return None
    return str(values[0]).strip().lower() if values else "7bit"


def _payload(part: Message) -> tuple[bytes, str | None]:
    """The part's content as a reader decodes it, or why it cannot be judged.

    ``email`` leaves the content encoded when the field is not exactly a known encoding
    (``base64 ``, ``base64;``, ``base64 (comment)``), and returns the base64 *text* when it
    cannot decode it (one character too many), whereas mail clients decode what they can:
    the content judged would not be the file a reader saves.
    """
    cte = _transfer_encoding(part)
    if cte is None:
        return b"", "repeated Content-Transfer-Encoding"
    if cte not in IDENTITY_ENCODINGS | DECODED_ENCODINGS:
        # The value is the sender's text: not repeated (the problem reaches the journal).
        return b"", "Content-Transfer-Encoding not understood"
    if str(part.get("content-transfer-encoding", cte)).lower() != cte:
        part.replace_header("content-transfer-encoding", cte)  # what ``email`` decodes
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    if cte == "base64" and any(
        isinstance(d, email.errors.InvalidBase64LengthDefect) for d in part.defects
    ):
        return data, "base64 content that cannot be decoded"
    return data, None


def _file_names(part: Message) -> list[str]:
    """Every file name the part gives: ``filename`` (RFC 2183) and ``name`` (RFC 2045),
    plain, RFC 2231-encoded and repeated — mail clients differ on which one they save the
    file under, so each must be acceptable.

    The fields are read as written: ``email.policy.default`` renders parsed parameters,
    keeping one of each name.
    """
    names: list[str] = []
    for field, value in part.raw_items():
        if field.lower() not in ("content-disposition", "content-type"):
            continue
        raw = email.message.Message()  # compat32: keeps repeated parameters
        raw["x"] = " ".join(str(value).split())
        for key, param in raw.get_params(header="x", failobj=[])[1:]:
            if key.lower() in ("filename", "name"):
                names.append(str(email.utils.collapse_rfc2231_value(param)))
    for name in (part.get_filename(), part.get_param("name", header="content-type")):
        if isinstance(name, str):
            names.append(name)
    return list(dict.fromkeys(n for n in names if n))


def _is_attachment(part: Message) -> bool:
    if part.get_filename() is not None or part.get_content_disposition() == "attachment":
        return True
    return part.get_content_type() not in BODY_TYPES


#: The header fields that decide whether a message is one body part, with their folded
#: continuation lines (RFC 5322 §2.2.3).
_TYPE_FIELDS = re.compile(
    rb"^(?:content-type|content-disposition)[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*",
    re.IGNORECASE | re.MULTILINE,
)


def _header_end(raw: bytes) -> int:
    """Where the header block ends (RFC 5322 §2.1: at the first empty line)."""
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return min(ends) + 2 if ends else len(raw)


def _single_body_part(raw: bytes) -> bool:
    """Fast path: a message that is one body part (text, no file name) has no attachment.

    Deliberately conservative, on the header block only: exactly one ``Content-Type``
    (or none: ``text/plain``, RFC 2045 §5.2) naming a body type, no ``Content-Disposition``
    and no ``name`` parameter. Anything else — multipart, named, disposed, commented,
    duplicated — goes through the full MIME walk.
    """
    fields = _TYPE_FIELDS.findall(raw, 0, _header_end(raw))
    if not fields:
        return True
    if len(fields) > 1:
        return False
    value = fields[0].partition(b":")[2]
    if b"name" in value.lower():
        return False
    media = value.split(b";", 1)[0].strip().lower().decode("latin-1")
    return media in BODY_TYPES


def _judge_part(
    part: Message,
    limits: AttachmentLimits,
    patient_recipients: frozenset[str] | None,
    index: int,
) -> AttachmentFinding:
    """Judge one attachment of a message: its decoded content under each of its names."""
    names = _file_names(part)
    name = part.get_filename() or (names[0] if names else "")
    ctype = part.get_content_type()
    data, problem = _payload(part)
    if problem:
        return AttachmentFinding(
            index, clean_name(name), ctype, len(data), Family.UNKNOWN, False,
            Reason.ATTACHMENT_TYPE_REFUSED, problem,
        )
    finding = check_attachment(
        data, name=name, declared_type=ctype, limits=limits,
        patient_recipients=patient_recipients, index=index,
    )
    for other in names:
        if not finding.allowed:
            break
        problem = declared_problem(other, ctype, finding.family)
        if problem:
            finding = replace(
                finding, name=clean_name(other), allowed=False,
                reason=Reason.ATTACHMENT_TYPE_REFUSED, problem=problem,
            )
    return finding


def check_message(
    raw: bytes,
    *,
    limits: AttachmentLimits = AttachmentLimits(),
    patient_recipients: frozenset[str] | None = None,
) -> AttachmentReport:
    """Judge a whole RFC 5322 message: its size, then every attachment."""
    if len(raw) > limits.max_message_size:
        detail = f"{len(raw)} bytes (limit {limits.max_message_size})"
        return AttachmentReport(Decision.deny(Reason.MESSAGE_TOO_LARGE, detail), (), detail)
    if _single_body_part(raw):
        return AttachmentReport(Decision.allow(), ())
    findings: list[AttachmentFinding] = []
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        for part in _leaves(msg, 0, limits, [0]):
            if not _is_attachment(part):
                continue
            findings.append(_judge_part(part, limits, patient_recipients, len(findings) + 1))
    except _Refused as exc:
        return AttachmentReport(Decision.deny(exc.reason, exc.detail), tuple(findings), exc.detail)
    except (email.errors.MessageError, LookupError, ValueError, TypeError) as exc:
        detail = f"unreadable MIME structure ({exc.__class__.__name__})"
        return AttachmentReport(
            Decision.deny(Reason.ATTACHMENT_TYPE_REFUSED, detail), tuple(findings), detail
        )
    for finding in findings:
        if not finding.allowed:
            return AttachmentReport(finding.decision, tuple(findings), finding.audit_detail)
    return AttachmentReport(Decision.allow(), tuple(findings))
