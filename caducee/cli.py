"""The ``caducee`` command: parse arguments, load the configuration, dispatch.

Each group of subcommands lives in its own ``caducee.cmd_*`` module exposing
``register(subparsers)``; a command is a function ``(args) -> int`` stored as ``args.func``.
No business logic here: commands call the packages.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from caducee.config import ConfigError

#: The modules that register subcommands (add yours here).
COMMAND_MODULES: tuple[str, ...] = (
    "caducee.cmd_setup",
    "caducee.cmd_run",
    "caducee.cmd_account",
    "caducee.cmd_audit",
    "caducee.cmd_policy",
    "caducee.cmd_directory",
    "caducee.cmd_queue",
)

DEFAULT_CONFIG = "conf/caducee.toml"


class CliError(Exception):
    """A user-facing command failure: printed without a traceback, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caducee", description="Caducée secure health messaging platform"
    )
    parser.add_argument(
        "-c", "--config",
        default=os.environ.get("CADUCEE_CONFIG", DEFAULT_CONFIG),
        help="configuration file (default: $CADUCEE_CONFIG or conf/caducee.toml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"caducee: configuration error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"caducee: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
