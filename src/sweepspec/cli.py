"""The ``sweepspec`` command line. One error policy, in :func:`main`.

Exit codes: 0 success, 1 invalid input or failed checks, 2 usage error, 130 interrupted,
3 an unexpected error (a bug: the message says where the details are).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from . import __version__
from .analysis.table import SOURCES
from .compiler import compiler_formats, compiler_formats_help, compiler_names
from .runners.base import ENGINE_OPTIONS, engine_names
from .trackers import TRACKERS


class SweepspecError(click.ClickException):
    """An expected failure: bad input, a refused action. Exits 1 with one clear line, its
    credentials redacted."""

    def __init__(self, message: str) -> None:
        from .redact import redact

        super().__init__(redact(message))


# '--help' first: older click names the first one in "Try 'sweepspec X --help' for help."
@click.group(context_settings={"help_option_names": ["--help", "-h"]})
@click.version_option(__version__, prog_name="sweepspec")
def cli() -> None:
    """Write a hyperparameter sweep once; validate, compile, run and compare it."""


def _exit(code: int) -> None:
    """click ignores a command's return value in standalone mode: exit through the context."""
    click.get_current_context().exit(code)


# --------------------------------------------------------------------------- shared options
# The options several commands take, one definition each; a command gives its own help text
# where the option means something else there.

F = TypeVar("F", bound=Callable[..., Any])
READ_STORAGE = "The storage 'run' used, if not the default."


def _engine_option(text: str, names: Sequence[str] | None = None) -> Callable[[F], F]:
    """``--engine``, one of ``names`` (default: the engine registry's)."""
    choices = names if names is not None else engine_names()
    return click.option("--engine", type=click.Choice(choices), default=None, help=text)


def _tracker_option(text: str) -> Callable[[F], F]:
    """``--tracker``, one of the tracker registry's names."""
    return click.option("--tracker", type=click.Choice(TRACKERS), default=None, help=text)


def _storage_option(text: str = READ_STORAGE) -> Callable[[F], F]:
    """``--storage URL``: where the engine's state of the sweep is."""
    return click.option("--storage", metavar="URL", default=None, help=text)


def _fresh_option(text: str) -> Callable[[F], F]:
    """``--fresh``: start over."""
    return click.option("--fresh", is_flag=True, help=text)


@cli.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one array of findings on stdout.",
)
def validate_command(files: tuple[str, ...], strict: bool, fmt: str) -> None:
    """Check spec FILES; one line per finding on stderr: FILE:LINE:COL: LEVEL: MESSAGE.

    Exit 0 when every file is valid (warnings allowed unless --strict), 1 otherwise. Never
    imports or runs the code a spec names, so it is safe in pre-commit on any branch.
    """
    from .commands.validate import validate

    _exit(validate(list(files), strict=strict, fmt=fmt))


@cli.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of the spec (for editors: yaml-language-server)."""
    from .commands import emit
    from .schema import spec_schema

    emit(json.dumps(spec_schema(), indent=2) + "\n")


@cli.command("compile")
@click.argument("file", type=click.Path(dir_okay=False))
@_engine_option("Target engine (default: the spec's 'engine', else optuna).", compiler_names())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(compiler_formats()),
    default=None,
    help=compiler_formats_help(),
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the artifact to this file instead of stdout.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail (exit 1, write nothing) when the engine cannot express part of the spec.",
)
def compile_command(
    file: str, engine: str | None, fmt: str | None, output: str | None, strict: bool
) -> None:
    """Compile spec FILE to a W&B sweep config or an Optuna study.

    What the engine cannot express is named on stderr, one line each
    (FILE: warning: unsupported on ENGINE: FEATURE: MESSAGE), and recorded in the artifact.
    """
    from .commands.compile import compile_spec

    _exit(compile_spec(file, engine=engine, fmt=fmt, output=output, strict=strict))


def _engine_options(command: F) -> F:
    """Each engine's own options on ``run`` (:data:`~sweepspec.runners.base.ENGINE_OPTIONS`),
    passed on by flag (``--ray-address``) in ``engine_options``."""
    for engine, options in reversed(ENGINE_OPTIONS.items()):
        for option in reversed(options):
            command = click.option(
                option.flag,
                f"engine_option_{option.key}_{engine}",
                metavar=option.metavar,
                default=None,
                help=f"[{engine} engine] {option.help}",
            )(command)
    return command


def _given_engine_options(values: dict[str, Any]) -> dict[str, Any]:
    """The engine options' values by flag, from click's keyword arguments."""
    flags = {
        f"engine_option_{o.key}_{engine}": o.flag
        for engine, options in ENGINE_OPTIONS.items()
        for o in options
    }
    return {flags[name]: value for name, value in values.items() if name in flags}


@cli.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@_engine_option("Engine (default: the spec's 'engine', else optuna).")
@_tracker_option(
    "Where runs are logged (default: the spec's 'tracking.tracker', else "
    "mlflow; MLflow honours MLFLOW_TRACKING_URI)."
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=None,
    help="Finished trials to reach, over every worker sharing the storage (overrides run_cap).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes on the same storage (default: budget.workers, else 1).",
)
@_storage_option(
    "Optuna storage: an RDB URL (sqlite:///x.db, postgresql://...) or a "
    "journal file path (default: .sweepspec/<study>.journal here)."
)
@_fresh_option("Delete the sweep's existing study first and start over.")
@click.option(
    "--gpus",
    metavar="IDS",
    default=None,
    help="GPU ids the workers share out, budget.gpus_per_trial (default 1) to each; every "
    "trial sees only its worker's (CUDA_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES, "
    "ZE_AFFINITY_MASK). A device listed twice is shared by two workers. Default with "
    "budget.gpus_per_trial: CUDA_VISIBLE_DEVICES, else nvidia-smi -L.",
)
@_engine_options
def run_command(
    file: str,
    engine: str | None,
    tracker: str | None,
    trials: int | None,
    workers: int | None,
    storage: str | None,
    fresh: bool,
    gpus: str | None,
    **engine_options: Any,
) -> None:
    """Run spec FILE's sweep; running it again resumes it.

    Stops at the trial budget, the wall-clock limit, the metric target or the cost cap, and
    after budget.max_consecutive_failures failed trials in a row (exit 1). Ctrl-C exits 130;
    the running trial is recorded as failed, nothing finished is lost.
    """
    from .commands.run import run

    _exit(
        run(
            file,
            engine=engine,
            tracker=tracker,
            trials=trials,
            workers=workers,
            storage=storage,
            fresh=fresh,
            gpus=gpus,
            extra=_given_engine_options(engine_options),
        )
    )


@cli.command("results")
@click.argument("file", type=click.Path(dir_okay=False))
@_storage_option()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="json: an array, one object per trial.",
)
@click.option(
    "--from",
    "source",
    type=click.Choice(SOURCES),
    default="engine",
    show_default=True,
    help="Read the trials from the engine's storage, from MLflow (the sweep's parent run and "
    "its nested runs), or from W&B's offline run folders ($WANDB_DIR/wandb, ./wandb).",
)
@click.option(
    "--filter",
    "where",
    metavar="EXPR",
    default=None,
    help="Keep the rows where every condition holds: COLUMN OP VALUE joined by 'and', "
    'e.g. "metrics.val_loss < 0.2 and params.lr >= 1e-4" (OP: < <= > >= = !=).',
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["COMPLETE", "PRUNED", "FAIL", "RUNNING"]),
    help="Keep trials in this state (repeatable).",
)
@click.option(
    "--sort",
    metavar="COLUMN",
    default=None,
    help="Sort by this column (a leading '-' or --desc: descending); empty cells last.",
)
@click.option("--desc", is_flag=True, help="Sort descending.")
@click.option(
    "--columns",
    metavar="A,B,...",
    default=None,
    help="Show these columns, in this order (patterns such as 'params.*' allowed).",
)
@click.option(
    "--per-seed",
    is_flag=True,
    help="With 'seeds:': one row per trial and seed (a 'seed' column, that seed's metrics).",
)
def results_command(
    file: str,
    storage: str | None,
    fmt: str,
    source: str,
    where: str | None,
    states: tuple[str, ...],
    sort: str | None,
    desc: bool,
    columns: str | None,
    per_seed: bool,
) -> None:
    """Show the trials of spec FILE's sweep: number, state, params.*, metrics.*, duration
    (and seed, cost, decision, error when there are any)."""
    from .commands.results import Selection, results

    selection = Selection(where, states, sort, desc, columns, per_seed)
    _exit(results(file, storage=storage, fmt=fmt, source=source, selection=selection))


@cli.command("compare")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--top",
    type=click.IntRange(min=2),
    default=None,
    help="Compare the K best distinct configurations of the sweep (default 3).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="Run each configuration with seeds 0..N-1 (the same seeds for all: paired).",
)
@click.option(
    "--configs",
    type=click.Path(dir_okay=False),
    default=None,
    help="A YAML file of named configurations (NAME: {param: value}) instead of --top.",
)
@_engine_option("Engine of the comparison's runs (default: the spec's 'engine', else optuna).")
@_tracker_option("Where the runs are logged (default: the spec's 'tracking.tracker', else mlflow).")
@_storage_option()
@_fresh_option("Delete the comparison's runs first and start over.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: {configs: [{id, params, scores}], pairs: [{a, b, test, p_value, p_adjusted}]}.",
)
def compare_command(
    file: str,
    top: int | None,
    seeds: int,
    configs: str | None,
    engine: str | None,
    tracker: str | None,
    storage: str | None,
    fresh: bool,
    fmt: str,
) -> None:
    """Re-run the best configurations of spec FILE's sweep over seeds and test every pair.

    Each pair: paired t-test and Wilcoxon signed-rank on the seeds both have, Holm's
    correction over the pairs, the 95% confidence interval of the mean difference, and one
    verdict line. Running it again resumes the comparison.
    """
    from .commands.compare import compare

    _exit(
        compare(
            file,
            top=top,
            seeds=seeds,
            configs=configs,
            engine=engine,
            tracker=tracker,
            storage=storage,
            fresh=fresh,
            fmt=fmt,
        )
    )


@cli.command("report")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default="report.html",
    show_default=True,
    help="The HTML file to write.",
)
@_storage_option()
@click.option(
    "--x",
    "x",
    metavar="step|wall|METRIC",
    default="step",
    show_default=True,
    help="The learning curves' x-axis: step (from the engine's storage), wall (seconds since "
    "the trial's first point) or a counter metric the trials log, e.g. tokens (both from "
    "MLflow, where the sweep must have been tracked).",
)
@click.option(
    "--importance",
    type=click.Choice(["fanova", "ped-anova", "mdi"]),
    default="fanova",
    show_default=True,
    help="Optuna's parameter-importance evaluator.",
)
def report_command(file: str, output: str, storage: str | None, x: str, importance: str) -> None:
    """Write spec FILE's sweep as one self-contained HTML page: summary, best configuration,
    plots (learning curves, optimisation history, parallel coordinates, importance), the
    comparison over seeds, cost, the decision and the trials."""
    from .commands.report import report

    _exit(report(file, output=output, storage=storage, x=x, importance=importance))


@cli.command("decide")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--trial", type=click.IntRange(min=0), default=None, help="The chosen trial.")
@click.option(
    "--config",
    "config",
    metavar="NAME",
    default=None,
    help="The chosen configuration of a comparison ('sweepspec compare'): trial-N, or a name "
    "from its --configs file that is also a finished trial of the sweep.",
)
@click.option("--why", required=True, help="Why it is chosen (recorded with the choice).")
@_storage_option()
@_tracker_option(
    "Where the runs were logged (default: the spec's 'tracking.tracker', else mlflow)."
)
def decide_command(
    file: str,
    trial: int | None,
    config: str | None,
    why: str,
    storage: str | None,
    tracker: str | None,
) -> None:
    """Record that a trial of spec FILE's sweep is the chosen one, and why: in the engine's
    storage and as tags on the trial's MLflow run (sweepspec.decision=chosen,
    sweepspec.decision_why); 'results' shows it."""
    from .commands.decide import decide

    _exit(decide(file, trial=trial, why=why, config=config, storage=storage, tracker=tracker))


@cli.command("sync")
@click.argument("file", type=click.Path(dir_okay=False))
@_storage_option()
def sync_command(file: str, storage: str | None) -> None:
    """Log to the tracker what earlier runs of spec FILE's sweep could not (the tracker was
    down); each trial once. 'sweepspec run' does the same when it starts."""
    from .commands.sync import sync

    _exit(sync(file, storage=storage))


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: see :func:`sweepspec.main.main`."""
    from .main import main as _main

    return _main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
