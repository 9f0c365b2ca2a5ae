"""The IHE XDM package layout (IHE ITI TF-1 §16, ITI-32; DOMAIN.md §7). Pure.

```
README.TXT   INDEX.HTM   IHE_XDM/SUBSET01/METADATA.XML   IHE_XDM/SUBSET01/<DOC>.XML
```

Names are matched case-insensitively. Every member is either ``README.TXT`` or
``INDEX.HTM`` at the root, or inside a submission set directory ``IHE_XDM/<SUBSET>/``
that holds a ``METADATA.XML``. The patient is the ``patientId`` of ``METADATA.XML``: when the
caller knows the patient recipients, every INS there must be one of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum

from policy.xml_documents import XmlRefused, is_xdm_metadata, metadata_patient_ids, parse_xml
from policy.zip_inspect import ZipMember

ROOT_DIR = "IHE_XDM"
METADATA = "METADATA.XML"

#: What an XDM viewer page must not contain: it is the one HTML file we let through.
_ACTIVE_HTML = re.compile(
    r"<\s*(?:script|iframe|object|embed|form|applet|base|link|meta\s+http-equiv)\b"
    r"|javascript\s*:|vbscript\s*:|\son[a-z]+\s*=",
    re.IGNORECASE,
)


class Role(Enum):
    README = "README"
    INDEX = "INDEX"
    METADATA = "METADATA"
    DOCUMENT = "DOCUMENT"
    OUTSIDE = "OUTSIDE"


def role_of(name: str) -> Role:
    upper = name.upper()
    if upper == "README.TXT":
        return Role.README
    if upper == "INDEX.HTM":
        return Role.INDEX
    parts = upper.split("/")
    if len(parts) == 3 and parts[0] == ROOT_DIR and parts[1] and parts[2]:
        return Role.METADATA if parts[2] == METADATA else Role.DOCUMENT
    return Role.OUTSIDE


def is_xdm(members: Sequence[ZipMember]) -> bool:
    """Does the archive look like an XDM package (one ``IHE_XDM/*/METADATA.XML`` at least)?"""
    return any(role_of(m.name) is Role.METADATA for m in members)


def index_problem(data: bytes) -> str | None:
    """Why the ``INDEX.HTM`` page is refused, or ``None``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    if "\x00" in text:
        return "INDEX.HTM is not text"
    if _ACTIVE_HTML.search(text):
        return "INDEX.HTM has active content (script, frame, form or event handler)"
    return None


def layout_problem(members: Sequence[ZipMember]) -> str | None:
    """Why the members do not form an XDM package, or ``None``."""
    subsets_with_metadata: set[str] = set()
    subsets: set[str] = set()
    for m in members:
        role = role_of(m.name)
        if role is Role.OUTSIDE:
            return f"unexpected member in an XDM package: {m.name}"
        if role in (Role.METADATA, Role.DOCUMENT):
            subset = m.name.upper().split("/")[1]
            subsets.add(subset)
            if role is Role.METADATA:
                subsets_with_metadata.add(subset)
    missing = sorted(subsets - subsets_with_metadata)
    if missing:
        return f"submission set without METADATA.XML: {ROOT_DIR}/{missing[0]}"
    if not subsets_with_metadata:
        return "no IHE_XDM/<SUBSET>/METADATA.XML"
    return None


def metadata_problem(data: bytes, expected_patients: frozenset[str] | None) -> str | None:
    """Why a ``METADATA.XML`` is refused, or ``None``.

    With ``expected_patients`` (the INS of the patient recipients) the metadata must name a
    patient, and every INS patientId must be one of them.
    """
    try:
        root = parse_xml(data)
    except XmlRefused as exc:
        return f"METADATA.XML: {exc}"
    if not is_xdm_metadata(root):
        return "METADATA.XML is not an ebRIM submission"
    if expected_patients is None:
        return None
    ids = [p for p in metadata_patient_ids(root) if p.id]
    if not ids:
        return "METADATA.XML names no patient"
    expected = {ins.upper() for ins in expected_patients}
    for pid in ids:
        if not pid.is_ins:
            return f"METADATA.XML patientId has an unknown authority ({pid.authority or 'none'})"
        if pid.id.upper() not in expected:
            return "METADATA.XML patientId does not match the patient recipient"
    return None
