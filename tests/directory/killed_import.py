"""Run an import and hang at a given phase, so the test can ``kill -9`` it there.

    python -m tests.directory.killed_import DB_URL PHASE WORKDIR FILE...

``PHASE:fresh`` builds the search index beside the merge whatever the size of the files
(:mod:`directory.fresh_index`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from directory.importer import ImportOptions, Progress, import_files
from mailstore.db import create_db_engine


def main() -> None:
    url, phase, workdir, *files = sys.argv[1:]
    phase, _, mode = phase.partition(":")

    def progress(p: Progress) -> None:
        if p.phase == phase:
            print("MARK", flush=True)
            time.sleep(600)  # wait to be killed

    engine = create_db_engine(url)
    options = ImportOptions(progress=progress, workers=1, workdir=Path(workdir),
                            fresh_index=True if mode == "fresh" else None,
                            max_deactivation=None)
    import_files(engine, [Path(f) for f in files], options)


if __name__ == "__main__":
    main()
