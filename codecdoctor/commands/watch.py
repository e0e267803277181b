"""`codecdoctor watch [OPTIONS] -- SCRIPT.py [ARGS...]` (or `-m MODULE [ARGS...]`): a thin wrapper
over `codecdoctor.watch.watch`.

Everything after the script (or after `--`) belongs to the script. The exit code is the script's own;
when the script exits 0 but findings reach --fail-on it is 1; 2 when the script cannot be run.
Under torchrun rank 0 prints the terminal report and writes `reports/watch.html`; rank N writes
`reports/watch.rankN.html` / `.json`.
"""
from __future__ import annotations

import enum
from typing import Annotated, Optional

import typer

from codecdoctor.commands.common import FailOn, FailOnOption, HtmlOption, JsonOption, Outputs


class Checks(str, enum.Enum):
    nonfinite = "nonfinite"
    strict = "strict"
    warn = "warn"


def register(app: typer.Typer) -> None:
    @app.command("watch", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                            "allow_interspersed_args": False})
    def command(
        script: Annotated[Optional[list[str]], typer.Argument(
            metavar="[--] SCRIPT.py [ARGS]...", help="The training script and its own arguments.")] = None,
        module: Annotated[Optional[str], typer.Option(
            "-m", "--module", metavar="MODULE", help="Run a module as `python -m MODULE` does.")] = None,
        sample_rate: Annotated[int, typer.Option("--sample-rate", min=1, metavar="HZ")] = 16000,
        checks: Annotated[Checks, typer.Option(
            "--checks", case_sensitive=False, help="nonfinite: stop the script on NaN/Inf (default); strict: stop "
                                                   "on any error finding; warn: never stop.")] = Checks.nonfinite,
        output_bound: Annotated[Optional[float], typer.Option(
            "--output-bound", help="The decoder's output bound (default: inferred from a final Tanh/Hardtanh/"
                                   "clamp module, else none).")] = None,
        read_every: Annotated[int, typer.Option("--read-every", min=1,
                                                help="Read the on-device statistics back every N steps.")] = 25,
        event_log: Annotated[Optional[str], typer.Option("--event-log", metavar="PATH",
                                                         help="Also write every read-back as JSON lines.")] = None,
        tensorboard: Annotated[Optional[str], typer.Option(
            "--tensorboard", metavar="DIR", help="Log the monitor's statistics as TensorBoard scalars.")] = None,
        html: HtmlOption = None,
        json: JsonOption = None,
        fail_on: FailOnOption = FailOn.error,
    ) -> None:
        """Run your own, unmodified training script with the live checks attached (T601-T612)."""
        from codecdoctor.commands.common import console_for, write_outputs
        from codecdoctor.core.errors import InputError
        from codecdoctor.report import terminal
        from codecdoctor.watch import WatchRequest, final_exit_code, rank, rank_path, watch

        words = list(script or [])
        if words and words[0] == "--":
            words = words[1:]
        if module is None and not words:
            raise InputError("give the script to run: codecdoctor watch -- train.py [ARGS] (or -m MODULE)")
        request = WatchRequest(script=None if module else words[0], module=module,
                               args=words if module else words[1:], sample_rate=sample_rate, checks=checks.value,
                               output_bound=output_bound, read_every=read_every, event_log=event_log,
                               tensorboard=tensorboard)
        result = watch(request)
        report = result.report
        outputs = Outputs(rank_path(html if html is not None else "reports/watch.html"),
                          rank_path(json if json is not None else "reports/watch.json"), fail_on)
        console = console_for(outputs.json)
        if rank()[0] == 0:
            terminal.render(report, console)
        write_outputs(report, outputs, name="watch", console=console,
                      title=f"codecdoctor watch {report.measurements['script']}")
        raise typer.Exit(final_exit_code(result, report.exit_code(fail_on.value) != 0))
