"""The attachment corpus, built by the tests: real files, traps, and their expected decision."""

from __future__ import annotations

import base64
import io
import struct
import zipfile
from email.message import EmailMessage

from PIL import Image

from policy.identifiers import OID_INS_NIR, nir_key

INS_A = "279035121518989"
INS_CORSICA = "185052A12345633"
INS_B = "185057512345673"


def make_ins(body13: str) -> str:
    return body13 + f"{nir_key(body13):02d}"


def image(fmt: str, size: tuple[int, int] = (48, 32)) -> bytes:
    out = io.BytesIO()
    img = Image.new("RGB", size, (200, 30, 60))
    for x in range(size[0]):
        img.putpixel((x, x % size[1]), (10, 200, 10))
    img.save(out, fmt)
    return out.getvalue()


def pdf() -> bytes:
    """A real PDF (Pillow's PDF writer: catalog, pages, an image, xref, trailer)."""
    return image("PDF")


def jpeg() -> bytes:
    return image("JPEG")


def png() -> bytes:
    return image("PNG")


def tiff() -> bytes:
    return image("TIFF")


def gif() -> bytes:
    return image("GIF")


def text_utf8() -> bytes:
    return "Compte rendu de consultation.\nTension artérielle : 12/8, état général conservé.\n".encode()


def text_cp1252() -> bytes:
    return "Ordonnance : paracétamol 1 g, 3 fois par jour. Réévaluer à J7.\r\n".encode("cp1252")


def exe() -> bytes:
    """A minimal PE image: DOS header with its stub, the PE signature at e_lfanew."""
    dos = bytearray(0x80)
    dos[0:2] = b"MZ"
    dos[0x3C:0x40] = struct.pack("<I", 0x80)
    stub = b"This program cannot be run in DOS mode.\r\r\n$"
    dos[0x40 : 0x40 + len(stub)] = stub
    pe = b"PE\x00\x00" + struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 0xF0, 0x22)
    return bytes(dos) + pe + b"\x00" * 256


def elf() -> bytes:
    return b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + struct.pack("<HHI", 2, 0x3E, 1) + b"\0" * 40


def ole() -> bytes:
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504


def zip_of(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def cda(body: str = "", *, patient: str = INS_A) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1" displayName="Note de consultation"/>
  <recordTarget><patientRole><id root="{OID_INS_NIR}" extension="{patient}"/></patientRole>
  </recordTarget>
  <component>{body or "<structuredBody><component><section><text>RAS</text></section>"
                      "</component></structuredBody>"}</component>
</ClinicalDocument>
""".encode()


def cda_with_embedded(data: bytes, media_type: str = "application/pdf") -> bytes:
    b64 = base64.b64encode(data).decode()
    return cda(f'<nonXMLBody><text mediaType="{media_type}" representation="B64">{b64}</text>'
               "</nonXMLBody>")


def metadata(patient: str = INS_A, oid: str = OID_INS_NIR) -> bytes:
    cx = f"{patient}^^^&amp;{oid}&amp;ISO"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
    xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
  <rim:RegistryObjectList>
    <rim:ExtrinsicObject id="Document01" mimeType="text/xml"
        objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
      <rim:Slot name="URI"><rim:ValueList><rim:Value>DOC0001.XML</rim:Value></rim:ValueList>
      </rim:Slot>
      <rim:ExternalIdentifier id="ei01" registryObject="Document01"
          identificationScheme="urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427" value="{cx}"/>
    </rim:ExtrinsicObject>
    <rim:RegistryPackage id="SubmissionSet01">
      <rim:ExternalIdentifier id="ei02" registryObject="SubmissionSet01"
          identificationScheme="urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446" value="{cx}"/>
    </rim:RegistryPackage>
  </rim:RegistryObjectList>
</lcm:SubmitObjectsRequest>
""".encode()


README = b"IHE XDM package produced by the Caducee tests.\r\nSee INDEX.HTM.\r\n"
INDEX = (b"<html><head><title>XDM</title></head><body>"
         b'<a href="IHE_XDM/SUBSET01/DOC0001.XML">Document</a></body></html>')


def xdm(extra: dict[str, bytes] | None = None, *, patient: str = INS_A) -> bytes:
    members = {
        "README.TXT": README,
        "INDEX.HTM": INDEX,
        "IHE_XDM/SUBSET01/METADATA.XML": metadata(patient),
        "IHE_XDM/SUBSET01/DOC0001.XML": cda(patient=patient),
    }
    members.update(extra or {})
    return zip_of(members)


def docm() -> bytes:
    return zip_of({
        "[Content_Types].xml": (
            b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/'
            b'2006/content-types"><Override PartName="/word/document.xml" ContentType="'
            b'application/vnd.ms-word.document.macroEnabled.main+xml"/></Types>'
        ),
        "word/document.xml": b"<w:document/>",
        "word/vbaProject.bin": ole(),
    })


def docx() -> bytes:
    return zip_of({
        "[Content_Types].xml": b'<?xml version="1.0"?><Types/>',
        "word/document.xml": b"<w:document/>",
    })


def encrypted_zip() -> bytes:
    """A ZIP whose member is marked encrypted (general purpose flag bit 0) in both headers."""
    data = bytearray(xdm())
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = data.find(sig)
        while pos >= 0:
            flags = struct.unpack_from("<H", data, pos + offset)[0]
            struct.pack_into("<H", data, pos + offset, flags | 0x1)
            pos = data.find(sig, pos + 4)
    return bytes(data)


def nested_bomb(levels: int = 3, fanout: int = 10) -> bytes:
    """42.zip-style: archives of copies of archives of … a highly compressible file."""
    layer = zip_of({"0.txt": b"\x00" * (1024 * 1024)})
    for level in range(levels):
        layer = zip_of({f"{level}-{i}.zip": layer for i in range(fanout)})
    return layer


def ratio_bomb(size: int = 8 * 1024 * 1024) -> bytes:
    """An XDM-shaped package with one member of very high compression ratio."""
    return xdm({"IHE_XDM/SUBSET01/DOC0002.XML": b" " * size})


def pdf_zip_polyglot() -> bytes:
    return pdf() + zip_of({"payload.txt": b"hidden"})


def jpeg_zip_polyglot() -> bytes:
    return jpeg() + zip_of({"payload.exe": exe()})


def message(*attachments: tuple[bytes, str, str], body: str = "Bonjour,\nci-joint.\n") -> bytes:
    """A message with ``(data, content type, file name)`` attachments."""
    msg = EmailMessage()
    msg["From"] = "claire.martin@chu-exemple.mssante.fr"
    msg["To"] = f"{INS_A}@patient.chu-exemple.mssante.fr"
    msg["Subject"] = "Résultats"
    msg.set_content(body)
    for data, ctype, name in attachments:
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def exe_base64() -> bytes:
    """An executable's base64 with no padding (its length a multiple of 3): one character
    more is then base64 that cannot be decoded."""
    data = exe()
    data += b"\x00" * (-len(data) % 3)
    encoded = base64.b64encode(data)
    assert not encoded.endswith(b"=")
    return encoded


def raw_message(part_headers: bytes, body: bytes, *,
                sender: str = "claire.martin@demo.mssante.fr",
                to: str = "paul.lefevre@demo.mssante.fr") -> bytes:
    """A text body and one attachment part written as given (headers and body as bytes,
    for forms ``EmailMessage`` would not write)."""
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: resultats\r\n".encode()
        + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        + b"--XX\r\nContent-Type: text/plain\r\n\r\nBonjour\r\n--XX\r\n"
        + part_headers + b"\r\n" + body + b"\r\n--XX--\r\n"
    )
