"""``blockvault``: the command line. Builds the argparse tree, runs one handler, maps errors to exit codes.

    blockvault [global options] COMMAND ...

    bv ...                 Block Volume commands (oci bv names and flags)
    kms ...                Vault commands (oci kms names and flags)
    volume|boot-volume     write/read the data of a volume
    clock                  the server's admin clock
    endpoints              what `blockvault serve` published
    serve                  run the server (blockvault.cli.commands.serve, imported only for this command)

Global options may be given before the command or anywhere after it, like the ``oci`` CLI's
(``blockvault bv volume get --volume-id X --region us-phoenix-1``).

This is the only module that catches errors (STYLE §2.8): API errors are printed to stderr as a JSON block like the
real CLI's ServiceError output, other failures as ``Error: ...``; ``exitcodes.py`` picks the status.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from blockvault.cli import exitcodes
from blockvault.cli.client import (
    DEFAULT_MAX_ATTEMPTS,
    ApiError,
    CliContext,
    GlobalOptions,
    WaitTimeout,
)
from blockvault.cli.commands import admin, attach, bv, data, iam, kms
from blockvault.cli.commands import groups as group_commands
from blockvault.cli.commands import policies as policy_commands
from blockvault.cli.output import Output
from blockvault.errors import BlockvaultError

# Global options that take a value (needed to find the command word before parsing, for the lazy serve import).
_VALUE_OPTIONS = frozenset(
    {"--data-dir", "--region", "--endpoint", "--config-file", "--profile", "--output", "--max-retries", "--cert-bundle"}
)
_SERVE = "serve"


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    """The global flags; SUPPRESS defaults so that a later (inner) parser never erases an earlier value."""
    s = argparse.SUPPRESS
    g = parser.add_argument_group("global options")
    g.add_argument(
        "--data-dir",
        default=s,
        help="where `blockvault serve` keeps blockvault.json "
        "(default: $BLOCKVAULT_DATA_DIR or ~/.local/share/blockvault)",
    )
    g.add_argument(
        "--region",
        default=s,
        help="region name from blockvault.json (default: $BLOCKVAULT_REGION or its defaultRegion)",
    )
    g.add_argument(
        "--endpoint",
        default=s,
        help="endpoint URL to use instead of the region's; for `kms management "
        "key|key-version` and `kms crypto`, the vault's management/crypto endpoint, like `oci`",
    )
    g.add_argument("--config-file", default=s, help="OCI config file (default: the one blockvault.json names)")
    g.add_argument("--profile", default=s, help="profile in the OCI config file")
    g.add_argument("--output", default=s, choices=("json", "table"), help="output format (default json)")
    g.add_argument(
        "--max-retries",
        default=s,
        type=int,
        help=f"attempts for transient errors (429, 5xx, 409 IncorrectState); default {DEFAULT_MAX_ATTEMPTS}",
    )
    g.add_argument("--no-retry", default=s, action="store_true", help="do not retry transient errors")
    g.add_argument("--cert-bundle", default=s, help="CA bundle for https endpoints")


def _subparser_actions(parser: argparse.ArgumentParser) -> list[argparse._SubParsersAction[argparse.ArgumentParser]]:
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def _propagate_globals(parser: argparse.ArgumentParser, seen: set[int]) -> None:
    for action in _subparser_actions(parser):
        for name, child in action.choices.items():
            if name == _SERVE or id(child) in seen:
                continue
            seen.add(id(child))
            _add_global_options(child)
            _propagate_globals(child, seen)


def command_word(argv: Sequence[str]) -> str | None:
    """The first positional argument (the command), skipping global options and their values."""
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--":
            return None
        if token.startswith("-"):
            if token in _VALUE_OPTIONS:
                skip = True
            continue
        return token
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blockvault",
        description="Client of a blockvault server (OCI Block Volume + Vault APIs), and the server itself.",
        allow_abbrev=False,
    )
    _add_global_options(parser)
    sub = parser.add_subparsers(title="commands", dest="_command", required=True, metavar="COMMAND")
    bv.register(sub)
    kms.register(sub)
    data.register(sub)
    admin.register(sub)
    attach.register(sub)
    iam.register(sub)
    group_commands.register(sub)  # bv volume-group, bv volume-group-backup (after bv.register)
    policy_commands.register(sub)  # bv volume-backup-policy[-assignment] (after bv.register)
    if command_word(argv) == _SERVE:
        # Imported only when asked for: the server pulls in the whole service stack. Written by the server's
        # owners; if it is not there, `serve` is simply not a command.
        try:
            from blockvault.cli.commands import serve  # type: ignore[attr-defined, unused-ignore]
        except ImportError:
            pass
        else:
            serve.register(sub)
    else:
        sub.add_parser(_SERVE, help="run the blockvault server (see `blockvault serve --help`)", add_help=False)
    _propagate_globals(parser, set())
    return parser


def options_from(args: argparse.Namespace, env: Mapping[str, str]) -> GlobalOptions:
    max_attempts = 1 if getattr(args, "no_retry", False) else getattr(args, "max_retries", DEFAULT_MAX_ATTEMPTS)
    return GlobalOptions.resolve(
        data_dir=getattr(args, "data_dir", None),
        region=getattr(args, "region", None),
        endpoint=getattr(args, "endpoint", None),
        config_file=getattr(args, "config_file", None),
        profile=getattr(args, "profile", None),
        env=env,
        max_attempts=max_attempts,
        cert_bundle=getattr(args, "cert_bundle", None),
        output=getattr(args, "output", "json"),
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Entry point (``blockvault = blockvault.cli.app:main``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else exitcodes.USAGE
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(stderr or sys.stderr)
        return exitcodes.USAGE
    opts = options_from(args, env)
    out = Output(stdout or sys.stdout, stderr or sys.stderr, fmt=opts.output)
    ctx = CliContext(opts, out)
    try:
        return int(handler(args, ctx))
    except WaitTimeout as exc:
        # Like the real CLI: show the last state seen on stdout, the reason on stderr, exit 2.
        if exc.last is not None and exc.last.data is not None:
            out.emit(exc.last.data, etag=exc.last.etag)
        out.note(exc.text)
        return exitcodes.for_error(exc)
    except ApiError as exc:
        out.error(exc.to_doc())
        return exitcodes.for_error(exc)
    except BlockvaultError as exc:
        out.note(f"Error: {exc.text}")
        return exitcodes.for_error(exc)
    except KeyboardInterrupt as exc:
        out.note("Interrupted.")
        return exitcodes.for_error(exc)
    except BrokenPipeError:
        # `blockvault volume read X --to-file - | head`: the reader left; not worth a traceback.
        return exitcodes.GENERIC
