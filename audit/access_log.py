"""The patient's view: who accessed their messages and documents, and when.

The journal stores identifiers only; names, professions and titles are resolved at read
time by ``resolve``, a callable the caller supplies (the webmail resolves actors through
the directory and object ids through the mail store / dossier), so that nothing
identifying the content ever enters the journal and a rename shows up everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from audit.entries import query
from audit.events import Action, AuditEvent

#: What the patient sees for each action (French, shown as-is).
LABELS: dict[str, str] = {
    Action.PATIENT_DATA_READ: "a consulté",
    Action.DOSSIER_FILED: "a déposé dans votre dossier",
    Action.MESSAGE_DELIVERED: "vous a adressé",
    Action.PERMISSION_CHANGED: "a modifié l'autorisation d'échange",
}
REFUSED_LABELS: dict[str, str] = {
    Action.PATIENT_DATA_READ: "a tenté de consulter (accès refusé)",
}

#: The actions listed by default: reads by others, and documents filed into the dossier.
DEFAULT_ACTIONS: tuple[str, ...] = (Action.PATIENT_DATA_READ, Action.DOSSIER_FILED)


@dataclass(frozen=True, slots=True)
class Resolution:
    """What ``resolve`` returns for one event."""

    #: Display name of the actor ("Dr Jeanne Martin", "Centre hospitalier de …").
    name: str
    #: Profession label from the directory ("Médecin"), when known.
    profession: str | None = None
    #: Title of the message or document, resolved now (never stored in the journal).
    title: str | None = None


Resolve = Callable[[AuditEvent], Resolution]


@dataclass(frozen=True, slots=True)
class AccessRecord:
    seq: int
    at: datetime
    action: str
    #: French wording of the action ("a consulté").
    label: str
    actor: str
    who: str
    profession: str | None
    what: str | None
    protocol: str | None
    outcome: str


def access_log(
    conn: Connection,
    patient_ins: str,
    resolve: Resolve,
    *,
    actions: Sequence[str] = DEFAULT_ACTIONS,
    since: datetime | None = None,
    limit: int = 200,
) -> list[AccessRecord]:
    """The patient's access history, newest first."""
    records: list[AccessRecord] = []
    for entry in query(
        conn, patient_ins=patient_ins, actions=list(actions), since=since,
        newest_first=True, limit=limit,
    ):
        ev = entry.event
        res = resolve(ev)
        labels = LABELS if ev.outcome == "ok" else {**LABELS, **REFUSED_LABELS}
        records.append(
            AccessRecord(
                seq=entry.seq, at=entry.at, action=ev.action,
                label=labels.get(ev.action, ev.action), actor=ev.actor, who=res.name,
                profession=res.profession, what=res.title, protocol=ev.protocol,
                outcome=ev.outcome,
            )
        )
    return records
