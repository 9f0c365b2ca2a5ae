"""The patient's view: names and titles resolved at read time, newest first."""

from __future__ import annotations

from sqlalchemy import Engine

from audit.access_log import Resolution, access_log
from audit.events import Action, AuditEvent
from audit.journal import Journal

INS = "255081416802538"
OTHER = "184127645108946"

DIRECTORY = {"dr.martin@hopital.example": ("Dr Jeanne Martin", "Médecin")}
TITLES = {"doc-1": "Compte rendu de consultation", "<m1@x>": "Résultats de biologie"}


def resolve(ev: AuditEvent) -> Resolution:
    name, profession = DIRECTORY.get(ev.actor, (ev.actor, None))
    title = TITLES.get(ev.document_id or "") or TITLES.get(ev.message_id or "")
    return Resolution(name, profession, title)


def test_access_log_lists_reads_by_others(engine: Engine, journal: Journal) -> None:
    with engine.begin() as conn:
        journal.append(conn, [
            AuditEvent(Action.DOSSIER_FILED, "dr.martin@hopital.example", patient_ins=INS,
                       document_id="doc-1", protocol="smtp"),
            AuditEvent(Action.PATIENT_DATA_READ, "dr.martin@hopital.example",
                       patient_ins=INS, message_id="<m1@x>", protocol="imap"),
            AuditEvent(Action.PATIENT_DATA_READ, "intrus@clinique.example", patient_ins=INS,
                       document_id="doc-1", protocol="web", outcome="refused",
                       reason="patient_not_contacted"),
            AuditEvent(Action.PATIENT_DATA_READ, "dr.martin@hopital.example",
                       patient_ins=OTHER, document_id="doc-9", protocol="imap"),
            AuditEvent(Action.LOGIN_SUCCEEDED, "dr.martin@hopital.example", protocol="imap"),
        ])
    with engine.connect() as conn:
        log = access_log(conn, INS, resolve)
    assert [(r.seq, r.label, r.who, r.profession, r.what) for r in log] == [
        (3, "a tenté de consulter (accès refusé)", "intrus@clinique.example", None,
         "Compte rendu de consultation"),
        (2, "a consulté", "Dr Jeanne Martin", "Médecin", "Résultats de biologie"),
        (1, "a déposé dans votre dossier", "Dr Jeanne Martin", "Médecin",
         "Compte rendu de consultation"),
    ]
    assert all(r.at.tzinfo is not None for r in log)
