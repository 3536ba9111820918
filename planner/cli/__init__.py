"""The ``plan`` command line: a thin typer layer over the planner, pricing and backend APIs.

``plan MODEL [options]`` estimates (and, with --execute, runs) a job; ``plan models``,
``plan prices ...``, ``plan adapters ...`` and friends are subcommands. Errors from the
library (PlannerError and its kin) become one line on stderr and exit code 2; set
``PLAN_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import os
import sys

import click
import typer
from typer.core import TyperGroup

from ..errors import PlannerError

DEFAULT_COMMAND = "estimate"


class DefaultGroup(TyperGroup):
    """Route ``plan MODEL ...`` to the default command when MODEL is not a subcommand name."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultGroup,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Plan an LLM job: GPU memory term by term, the cheapest machine that fits, then run it.\n\n"
         "Usage: plan MODEL --mode MODE [options]   (or one of the commands below)",
)

# Each command module registers itself on ``app`` when imported.
from . import plan_cmd, models_cmd  # noqa: E402,F401
for _optional in ("prices_cmd", "adapters_cmd", "jobs_cmd", "serve_cmd", "eval_cmd", "deploy_cmd"):
    try:
        __import__(f"{__name__}.{_optional}")
    except ModuleNotFoundError as _exc:  # a command module not written yet
        if _exc.name != f"{__name__}.{_optional}":
            raise


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the user asked for something wrong', not 'bug'."""
    return (PlannerError,)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, translating user errors at this one boundary."""
    debug = bool(os.environ.get("PLAN_DEBUG"))
    try:
        rc = app(args=argv, prog_name="plan", standalone_mode=False)  # click returns typer.Exit's code here
        if isinstance(rc, int) and rc:
            return rc
    except user_errors() as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except click.ClickException as exc:
        if debug:
            raise
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code or 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:  # pragma: no cover - console script wrapper
    sys.exit(main())
