"""The directory of referenced practitioners (issue 6).

Imports the public Annuaire Santé extracts (DOMAIN.md §4) into the database, keeps them up
to date with deltas and manual overrides, and answers searches and policy lookups.

Modules, one concern each:

* :mod:`directory.formats` — the columns of both extract files, header recognition;
* :mod:`directory.reader` — opening ``.txt``/``.zip`` files, encoding detection, streaming lines;
* :mod:`directory.parse_person` / :mod:`directory.parse_mailbox` — validating one line;
* :mod:`directory.normalise` — accent/case folding and search terms;
* :mod:`directory.tables` — the SQLAlchemy tables (own ``MetaData``);
* :mod:`directory.importer` (with :mod:`directory.staging`, :mod:`directory.merge`) — one import
  = one transaction: stage, upsert, delta;
* :mod:`directory.search_index` / :mod:`directory.search` — the full-text index and queries;
* :mod:`directory.lookup` — facts for :mod:`policy`; :mod:`directory.admin` — manual edits;
* :mod:`directory.http_api` — the JSON API used by the webmail.
"""
