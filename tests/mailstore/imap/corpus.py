"""Real-world shaped messages for the MIME index and FETCH tests."""

from __future__ import annotations

import base64

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PDF_B64 = base64.encodebytes(PDF).replace(b"\n", b"\r\n")

SIMPLE = (
    b"Return-Path: <claire.martin@chu-exemple.mssante.fr>\r\n"
    b"From: Claire Martin <claire.martin@chu-exemple.mssante.fr>\r\n"
    b"To: paul.durand@cabinet.mssante.fr\r\n"
    b"Subject: Compte rendu\r\n"
    b"Date: Tue, 05 Mar 2024 10:00:00 +0100\r\n"
    b"Message-ID: <simple-1@chu-exemple.mssante.fr>\r\n"
    b"\r\n"
    b"Bonjour,\r\n\r\nVoici le compte rendu.\r\n"
)

WITH_PDF = (
    b"From: \"Martin, Claire\" <claire.martin@chu-exemple.mssante.fr>\r\n"
    b"To: Paul Durand <paul.durand@cabinet.mssante.fr>, secretariat@cabinet.mssante.fr\r\n"
    b"Cc: undisclosed-recipients:;\r\n"
    b"Subject: =?UTF-8?B?UsOpc3VsdGF0cyBkZSBiaW9sb2dpZQ==?=\r\n"
    b"Date: Wed, 6 Mar 2024 08:15:00 +0000\r\n"
    b"Message-ID: <pdf-1@chu-exemple.mssante.fr>\r\n"
    b"In-Reply-To: <q-1@cabinet.mssante.fr>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed;\r\n boundary=\"----=_Part_0\"\r\n"
    b"\r\n"
    b"This is a multi-part message in MIME format.\r\n"
    b"------=_Part_0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"R=C3=A9sultats ci-joints.\r\n"
    b"------=_Part_0\r\n"
    b"Content-Type: application/pdf; name=\"resultats.pdf\"\r\n"
    b"Content-Disposition: attachment; filename=\"resultats.pdf\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Description: Biologie\r\n"
    b"\r\n"
    + PDF_B64
    + b"------=_Part_0--\r\n"
)

ALTERNATIVE = (
    b"From: =?iso-8859-1?q?Ren=E9_L=E9vy?= <rene.levy@clinique.mssante.fr>\r\n"
    b"To: claire.martin@chu-exemple.mssante.fr\r\n"
    b"Subject: =?utf-8?q?Courrier_de_sortie_=E2=80=93_patient?=\r\n"
    b"Date: Thu, 7 Mar 2024 17:45:10 +0200\r\n"
    b"Content-Type: multipart/mixed; boundary=outer\r\n"
    b"Content-Language: fr\r\n"
    b"\r\n"
    b"--outer\r\n"
    b"Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=\"utf-8\"\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Sortie pr\xc3\xa9vue demain.\r\n"
    b"Traitement inchang\xc3\xa9.\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"<p>Sortie pr\xc3\xa9vue <b>demain</b>.</p>\r\n"
    b"--inner--\r\n"
    b"\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf\r\n"
    b"Content-Disposition: attachment;\r\n\tfilename=\"courrier.pdf\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    + PDF_B64
    + b"\r\n--outer--\r\nepilogue\r\n"
)

FORWARDED = (
    b"From: paul.durand@cabinet.mssante.fr\r\n"
    b"To: claire.martin@chu-exemple.mssante.fr\r\n"
    b"Subject: Fwd: Compte rendu\r\n"
    b"Date: Fri, 8 Mar 2024 09:00:00 +0100\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"fwd\"\r\n"
    b"\r\n"
    b"--fwd\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"Pour info.\r\n"
    b"--fwd\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"Content-Disposition: inline\r\n"
    b"\r\n"
    + WITH_PDF
    + b"\r\n--fwd--\r\n"
)

EIGHT_BIT_HEADERS = (
    b"From: =?utf-8?b?w4lsb2RpZQ==?= Ch\xc3\xa9rie <elodie@cabinet.mssante.fr>\r\n"
    b"To: \"Dr. Zo\xc3\xa9\" <zoe@chu-exemple.mssante.fr>\r\n"
    b"Subject: Ordonnance r\xc3\xa9nouvel\xc3\xa9e\r\n"
    b"Date: Sat, 9 Mar 2024 12:00:00 +0100\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"X-MSS-MES: FIN\r\n"
    b"\r\n"
    b"Tr\xc3\xa8s bien, merci.\r\n"
)

HEADERS_ONLY = b"From: a@b.c\r\nSubject: no body\r\n"

NO_CONTENT_TYPE_GROUP = (
    b"From: Secr\xe9tariat <secretariat@cabinet.mssante.fr>\r\n"
    b"To: Equipe: a@x.fr, \"B\" <b@x.fr>;, c@y.fr\r\n"
    b"Reply-To: <@relay.fr:reply@x.fr>\r\n"
    b"Subject: Latin-1 8-bit header\r\n"
    b"\r\n"
    b"Body line\r\nsecond line without newline"
)

DIGEST = (
    b"From: list@x.fr\r\nSubject: digest\r\n"
    b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
    b"--d\r\n\r\nFrom: one@x.fr\r\nSubject: first\r\n\r\nbody one\r\n"
    b"--d\r\n\r\nFrom: two@x.fr\r\nSubject: second\r\n\r\nbody two\r\n"
    b"--d--\r\n"
)

BARE_LF = (
    b"From: lf@x.fr\nSubject: bare LF\nContent-Type: multipart/mixed; boundary=b\n\n"
    b"--b\nContent-Type: text/plain\n\nline one\nline two\n--b--\n"
)

ALL = {
    "simple": SIMPLE,
    "with_pdf": WITH_PDF,
    "alternative": ALTERNATIVE,
    "forwarded": FORWARDED,
    "eight_bit_headers": EIGHT_BIT_HEADERS,
    "headers_only": HEADERS_ONLY,
    "no_content_type_group": NO_CONTENT_TYPE_GROUP,
    "digest": DIGEST,
    "bare_lf": BARE_LF,
}
