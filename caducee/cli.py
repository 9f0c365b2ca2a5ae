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

#: The module that registers each top-level command, so that one command loads only its
#: own module (``caducee run`` then carries no import or audit-export code in its memory).
#: tests/caducee/test_cli.py checks it against what the modules register.
COMMAND_OWNERS: dict[str, str] = {
    "init": "caducee.cmd_setup", "db": "caducee.cmd_setup", "keys": "caducee.cmd_setup",
    "dkim": "caducee.cmd_setup", "run": "caducee.cmd_run", "demo": "caducee.cmd_run",
    "account": "caducee.cmd_account", "audit": "caducee.cmd_audit",
    "patient": "caducee.cmd_policy", "trust": "caducee.cmd_policy",
    "directory": "caducee.cmd_directory", "queue": "caducee.cmd_queue",
}

DEFAULT_CONFIG = "conf/caducee.toml"


class CliError(Exception):
    """A user-facing command failure: printed without a traceback, exit status 1."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with a known ``command``, only its module is loaded."""
    parser = argparse.ArgumentParser(
        prog="caducee", description="Caducée secure health messaging platform"
    )
    parser.add_argument(
        "-c", "--config",
        default=os.environ.get("CADUCEE_CONFIG", DEFAULT_CONFIG),
        help="configuration file (default: $CADUCEE_CONFIG or conf/caducee.toml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    owner = COMMAND_OWNERS.get(command or "")
    for name in (owner,) if owner else COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word after the global options)."""
    args = list(argv)
    i = 0
    while i < len(args):
        word = args[i]
        if word in ("-c", "--config"):
            i += 2
            continue
        if word.startswith("-"):
            i += 1
            continue
        return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(command_of(argv))
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
    except BrokenPipeError:
        # The reader of our output left (``caducee directory search … | head``): no
        # traceback, and none either when the interpreter flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
