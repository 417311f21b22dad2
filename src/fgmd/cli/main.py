"""``fgmd`` command line: a thin layer over the Python API; one module per subcommand."""

from __future__ import annotations

import argparse
import os
import sys

from fgmd.cli.commands import (
    ablate,
    check_data,
    config,
    demo,
    diagnose,
    eval,
    export,
    generate_demo_data,
    index,
    info,
    prepare,
    report,
    search,
    serve,
    sweep,
    train,
)

DEBUG_ENV = "FGMD_DEBUG"

COMMANDS = [
    demo,
    train,
    eval,
    report,
    diagnose,
    index,
    search,
    serve,
    export,
    sweep,
    ablate,
    info,
    config,
    check_data,
    prepare,
    generate_demo_data,
]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``fgmd`` parser. With ``argv``, only the command it names gets its arguments (a
    command's options may import heavy modules for their choices: ``fgmd --help`` and the
    other commands do not pay for them); without, every command does."""
    from fgmd import __version__

    names = {command.NAME for command in COMMANDS}
    chosen = None if argv is None else next((token for token in argv if token in names), "")
    parser = argparse.ArgumentParser(prog="fgmd", description="FG-MD cross-modal hashing retrieval.")
    parser.add_argument("--version", action="version", version=f"fgmd {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help=f"show the Python traceback of an error (also: {DEBUG_ENV}=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        subparser = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        if chosen is None or command.NAME == chosen:
            command.add_arguments(subparser)
    return parser


def flag_hint(parser: argparse.ArgumentParser, command: str, error: BaseException) -> str:
    """`` (see --a, --b)`` for the options a library error was tagged with (``fgmd.runtime.hints``)
    that ``command`` has as flags; empty when it has none of them."""
    from fgmd.runtime.hints import suggested_options

    options = suggested_options(error)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = subparsers.choices[command]._actions
    flags = [a.option_strings[-1] for o in options for a in actions if a.dest == o and a.option_strings]
    return f" (see {', '.join(flags)})" if flags else ""


def main(argv: list[str] | None = None) -> int:
    import dataclasses

    from fgmd.cli.common import extract_overrides
    from fgmd.config import Config

    argv = sys.argv[1:] if argv is None else list(argv)
    argv, overrides = extract_overrides(argv, {f.name for f in dataclasses.fields(Config)})
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if overrides:
        if not hasattr(args, "overrides"):
            print(f"fgmd {args.command}: error: takes no config overrides (got {' '.join(overrides)})", file=sys.stderr)
            return 2
        args.overrides = overrides
    from fgmd.allocator import tune_cpu_allocator
    from fgmd.errors import USER_ERRORS

    tune_cpu_allocator()  # large CPU tensors: reuse freed heap blocks instead of re-mapping them

    command = next(c for c in COMMANDS if c.NAME == args.command)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return command.run(args)
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"fgmd {args.command}: error: {error}{flag_hint(parser, args.command, error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"fgmd {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, or a failure fgmd has no message for: one line, unless debugging
        if debug:
            raise
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"fgmd {args.command}: internal error: {type(error).__name__}: {text} "
            f"(run with --debug or {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
