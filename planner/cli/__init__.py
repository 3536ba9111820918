"""The ``plan`` command line: a thin typer layer over the planner, pricing and backend APIs.

``plan MODEL [options]`` estimates (and, with --execute, runs) a job; ``plan models``,
``plan prices ...``, ``plan adapters ...`` and friends are subcommands. Errors from the
library (PlannerError and its kin) become one line on stderr and exit code 2; set
``PLAN_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import codecs
import errno
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
from . import serve_cmd, eval_cmd, deploy_cmd, bench_cmd  # noqa: E402,F401


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


def _one_line(message: str) -> str:
    """A newline in a user's value must not split the one error line: shown escaped, as repr does."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


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
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
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
        print(f"error: {_one_line(exc.format_message())}", file=sys.stderr)  # type: ignore[attr-defined]
        return getattr(exc, "exit_code", 2) or 2
    except _click_types("Exit") as exc:
        return getattr(exc, "exit_code", 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


# What the tables and notes print, spelled in ASCII for a console that cannot show it.
_ASCII = {"\u00b7": ".", "\u00d7": "x", "\u2588": "#", "\u258c": "|", "\u00b1": "+/-", "\u2026": "...",
          "\u2013": "-", "\u2014": "-", "\u2192": "->", "\u2264": "<=", "\u2265": ">=", "\u2248": "~"}


def _ascii_fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return "".join(_ASCII.get(c, "?") for c in exc.object[exc.start:exc.end]), exc.end


codecs.register_error("plan-ascii", _ascii_fallback)


def _survivable_streams() -> str | None:
    """Output that survives its console (issue 19): a console that cannot encode a character gets
    its ASCII spelling (_ASCII, else '?') (rich already draws ASCII boxes there), and a closed stdout is one error line."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if stream is None or not hasattr(stream, "reconfigure"):
            continue
        if not encoding.startswith("utf"):
            stream.reconfigure(errors="plan-ascii")
        elif stream.errors == "strict":  # a non-UTF-8 file name from argv prints as the bytes it was
            stream.reconfigure(errors="surrogateescape")
    if sys.stdout is None:
        return "stdout is closed, so the results have nowhere to go; run with stdout open (e.g. > FILE)"
    return None


def run() -> None:  # pragma: no cover - console script wrapper
    problem = _survivable_streams()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `plan ... | head`: the reader left; not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except OSError as exc:  # stdout on a full disk, /dev/full, a dead terminal: say so, no traceback
        if exc.errno not in (errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT):
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush must not fail again
        print(f"error: cannot write the output: {exc.strerror}", file=sys.stderr)
        code = 1
    sys.exit(code)
