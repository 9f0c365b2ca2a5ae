"""The tamper-evident audit journal (issue 4).

Typed events (:mod:`audit.events`) are appended, hash-chained, inside the caller's
transaction (:mod:`audit.journal`); signed checkpoints are kept in the database and in an
append-only file (:mod:`audit.checkpoints`); :mod:`audit.verify` finds and locates any
edit, deletion, insertion, reordering or truncation; :mod:`audit.export` writes signed
JSON Lines for outside auditors; :mod:`audit.prune` applies retention behind a signed
checkpoint; :mod:`audit.access_log` is the patient's view of who read their data.

This package imports nothing else of Caducée.
"""

from audit.events import Action, AuditEvent, Outcome
from audit.journal import Journal

__all__ = ["Action", "AuditEvent", "Journal", "Outcome"]
