"""The `codecdoctor` command line: a typer app assembled from codecdoctor.commands.*.

`main()` turns every error into one line on stderr and exit code 2; only a bug shows a traceback,
and only with CODECDOCTOR_DEBUG=1.
"""
from __future__ import annotations

import os
import sys

import typer

from codecdoctor.commands import audit, catalog, ckpt, compare, demo, env, merge, probe, train, watch
from codecdoctor.core import tuning
from codecdoctor.core.errors import CheckFailed, InputError

app = typer.Typer(
    name="codecdoctor",
    help="Measured diagnostics for neural audio codec training: audit data, inspect checkpoints, "
    "compare reconstructions, probe codecs, train with live checks.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for module in (audit, ckpt, compare, train, watch, probe, catalog, env, demo, merge):
    module.register(app)


def _exception_types() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(exit, usage error, abort) exception classes. Typer >= 0.20 vendors click as
    `typer._click` and raises its own classes; older typer raises click's, and has imported click
    to do so. So click's classes are added only when click is loaded: importing it for nothing
    cost 6-12 ms of every command's start-up (about 5% of `codecdoctor --help`)."""
    exits: list[type] = [typer.Exit]
    usage: list[type] = [typer.TyperException]
    aborts: list[type] = [typer.Abort]
    click = sys.modules.get("click")
    if click is not None:
        exits.append(click.exceptions.Exit)
        usage.append(click.ClickException)
        aborts.append(click.exceptions.Abort)
    return tuple(exits), tuple(usage), tuple(aborts)


def _quiet_numeric_warnings(argv: list[str] | None) -> None:
    """numpy's floating-point warnings (overflow, invalid value, divide by zero) never reach the
    terminal: the measurements handle non-finite values themselves (a corrupted file is a finding
    with numbers, not a screen of warnings). Under `watch` the user's own script keeps its warnings:
    only those raised in codecdoctor's code are silenced."""
    import warnings

    words = sys.argv[1:] if argv is None else argv
    owners = "codecdoctor" if "watch" in words[:1] else "(codecdoctor|numpy|scipy)"
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=owners + r"(\.|_|$)")


def main(argv: list[str] | None = None) -> int:
    exit_types, usage_types, abort_types = _exception_types()
    _quiet_numeric_warnings(argv)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="codecdoctor", standalone_mode=False)
    except exit_types as exc:
        return exc.exit_code
    except usage_types as exc:
        exc.show()
        return 2
    except abort_types:
        print("codecdoctor: aborted", file=sys.stderr)
        return 130
    except (InputError, CheckFailed) as exc:
        print(f"codecdoctor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codecdoctor: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line, never dump a traceback on a user
        if os.environ.get("CODECDOCTOR_DEBUG"):
            raise
        print(f"codecdoctor: internal error: {type(exc).__name__}: {exc} (set CODECDOCTOR_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def entry(*, fast_exit: bool = False) -> None:
    """Run the command line in sys.argv and exit with its code. `fast_exit` (the console script and
    `python -m codecdoctor`, see console) skips the interpreter's teardown for the numpy commands."""
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    tuning.before_command(command)
    code = main()
    if fast_exit and command in tuning.OWN_PARALLELISM:
        tuning.exit_now(code)
    sys.exit(code)


def console() -> None:
    """The `codecdoctor` executable: the process is ours alone, so it may end without teardown.
    Code that calls entry() inside a process of its own (a test runner) keeps the normal exit."""
    entry(fast_exit=True)


if __name__ == "__main__":
    console()
