"""The ``plan`` command line: a thin typer layer over the planner, pricing and backend APIs.

``plan MODEL [options]`` estimates (and, with --execute, runs) a job; ``plan models``,
``plan prices ...``, ``plan adapters ...`` and friends are subcommands. Errors from the
library (PlannerError and its kin) become one line on stderr and exit code 2; set
``PLAN_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import os
import sys
import warnings

import typer
from typer.core import TyperGroup

from ..errors import PlannerError

DEFAULT_COMMAND = "estimate"


class DefaultGroup(TyperGroup):
    """Route ``plan MODEL ...`` to the default command when MODEL is not a subcommand name."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version", "-V"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx, args: list[str]):
        name, cmd, rest = super().resolve_command(ctx, args)
        # `plan MODEL --help` and its errors read "plan MODEL", never the hidden name
        return ("MODEL" if name == DEFAULT_COMMAND else name), cmd, rest

    def get_params(self, ctx):
        return [*super().get_params(ctx), _version_option()]

    def format_options(self, ctx, formatter) -> None:
        from .help import write_main_flags
        super().format_options(ctx, formatter)
        write_main_flags(self, ctx, formatter, DEFAULT_COMMAND)


def _version_option():
    """``--version`` / ``-V``: the installed distribution's version (package metadata; nothing heavy)."""
    from typer.core import TyperOption

    def show(ctx, _param, value):
        if value and not ctx.resilient_parsing:
            from .. import __version__
            print(f"plan {__version__}")
            ctx.exit(0)

    return TyperOption(param_decls=["--version", "-V"], is_flag=True, expose_value=False, is_eager=True,
                       callback=show, help="Show the version and exit.")


app = typer.Typer(
    cls=DefaultGroup,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Plan an LLM job: GPU memory term by term, the cheapest machine that fits, then run it.\n\n"
         "Usage: plan MODEL --mode MODE [options]   (or one of the commands below)",
)

# Each command module registers itself on ``app`` when imported (merge_cmd on adapters_cmd's group).
# The order here is the order of `plan --help`.
from . import plan_cmd, models_cmd, prices_cmd, adapters_cmd, merge_cmd, jobs_cmd  # noqa: E402,F401
from . import serve_cmd, eval_cmd, deploy_cmd  # noqa: E402,F401


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the user asked for something wrong', not 'bug'."""
    return (PlannerError,)


def _click_modules() -> list:
    """typer's vendored click (typer >= 0.26 ships its own) and standalone click, whichever exist."""
    import importlib

    mods = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            pass
    return mods


def _click_types(name: str) -> tuple[type[BaseException], ...]:
    return tuple(getattr(m, name) for m in _click_modules() if hasattr(m, name))


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """Our own warnings (pricing, backend, planner) as one ``warning:`` line; others as Python shows them."""
    if category.__module__.split(".")[0] in ("planner", "pricing", "backend"):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, translating user errors at this one boundary."""
    debug = bool(os.environ.get("PLAN_DEBUG"))
    warnings.showwarning = _show_warning
    try:
        rc = app(args=argv, prog_name="plan", standalone_mode=False)  # click returns typer.Exit's code here
        if isinstance(rc, int) and rc:
            return rc
    except user_errors() as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except _click_types("Abort"):
        print("aborted", file=sys.stderr)
        return 1
    except _click_types("ClickException") as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and getattr(exc, "ctx", None) is not None:
            print(exc.ctx.get_help())  # type: ignore[attr-defined]
            return 0
        if debug:
            raise
        print(f"error: {exc.format_message()}", file=sys.stderr)  # type: ignore[attr-defined]
        return getattr(exc, "exit_code", 2) or 2
    except _click_types("Exit") as exc:
        return getattr(exc, "exit_code", 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:  # pragma: no cover - console script wrapper
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `plan ... | head`: the reader left; not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
