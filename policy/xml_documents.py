"""XML attachments: HL7 CDA documents and IHE XDM metadata (DOMAIN.md §7). Pure.

Everything is parsed with ``defusedxml`` and no DTD at all (``forbid_dtd``): entity
expansion and external entities (XXE) are refused, not resolved.

* A CDA R2 document has the root ``ClinicalDocument`` in the namespace ``urn:hl7-org:v3``.
  An unstructured body (``nonXMLBody/text`` with ``representation="B64"``) carries a file;
  :func:`embedded_files` returns it so that it is checked like any attachment.
* ``METADATA.XML`` of an XDM package (IHE ITI-32) is an ebRIM ``SubmitObjectsRequest``; the
  patient is the ``patientId`` external identifier of the document entries and of the
  submission set, a CX value ``<id>^^^&<OID>&ISO`` (IHE ITI TF-3 §4.2.3.2.16 and §4.2.3.3.7).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from policy.identifiers import OID_INS_NIR

HL7_V3 = "urn:hl7-org:v3"
CDA_ROOT = f"{{{HL7_V3}}}ClinicalDocument"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
METADATA_ROOTS = frozenset(
    {f"{{{LCM}}}SubmitObjectsRequest", f"{{{RIM}}}RegistryObjectList"}
)

#: identificationScheme of XDSDocumentEntry.patientId and XDSSubmissionSet.patientId.
SCHEME_DOCUMENT_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
SCHEME_SUBMISSION_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"

#: The INS assigning authorities: INS-NIR, INS-NIA, and their test counterparts.
INS_OIDS = frozenset({OID_INS_NIR, "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10",
                      "1.2.250.1.213.1.4.11"})

#: An embedded body larger than this (decoded) is refused.
MAX_EMBEDDED = 32 * 1024 * 1024


class XmlRefused(ValueError):
    """The XML cannot be accepted (malformed, DTD/entities, wrong document)."""


def parse_xml(data: bytes) -> Element:
    """Parse with ``defusedxml``, forbidding any DTD; raise :class:`XmlRefused`."""
    try:
        root: Element = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise XmlRefused(f"forbidden XML construct ({exc.__class__.__name__})") from None
    except ParseError as exc:
        raise XmlRefused(f"malformed XML ({exc})") from None
    return root


def is_cda(root: Element) -> bool:
    return root.tag == CDA_ROOT


def is_xdm_metadata(root: Element) -> bool:
    return root.tag in METADATA_ROOTS


@dataclass(frozen=True, slots=True)
class EmbeddedFile:
    media_type: str
    data: bytes


def embedded_files(root: Element) -> list[EmbeddedFile]:
    """The base64 files of a CDA's unstructured body (``nonXMLBody``), decoded.

    Raise :class:`XmlRefused` if one is not valid base64 or is too large.
    """
    out: list[EmbeddedFile] = []
    for body in root.iter(f"{{{HL7_V3}}}nonXMLBody"):
        for text in body.findall(f"{{{HL7_V3}}}text"):
            if (text.get("representation") or "TXT").upper() != "B64":
                continue
            payload = "".join(text.itertext())
            if len(payload) > MAX_EMBEDDED * 4 // 3 + 1024:
                raise XmlRefused("embedded body too large")
            try:
                data = base64.b64decode("".join(payload.split()), validate=True)
            except (binascii.Error, ValueError):
                raise XmlRefused("embedded body is not valid base64") from None
            out.append(EmbeddedFile(text.get("mediaType") or "", data))
    return out


@dataclass(frozen=True, slots=True)
class PatientId:
    """One CX patient identifier: the id and its assigning authority's OID."""

    id: str
    authority: str

    @property
    def is_ins(self) -> bool:
        return self.authority in INS_OIDS


def parse_cx(value: str) -> PatientId:
    """``279035121518989^^^&1.2.250.1.213.1.4.8&ISO`` → id and authority (HL7 v2 CX)."""
    ident, _, rest = value.strip().partition("^^^")
    authority = ""
    if rest:
        parts = rest.split("&")
        if len(parts) >= 2:
            authority = parts[1]
    return PatientId(ident.strip(), authority.strip())


def metadata_patient_ids(root: Element) -> list[PatientId]:
    """Every ``patientId`` of the submission set and its document entries."""
    ids: list[PatientId] = []
    for ext in root.iter(f"{{{RIM}}}ExternalIdentifier"):
        if ext.get("identificationScheme") in (
            SCHEME_DOCUMENT_PATIENT_ID,
            SCHEME_SUBMISSION_PATIENT_ID,
        ):
            ids.append(parse_cx(ext.get("value") or ""))
    return ids
