"""The mapping between the engines, as data: the compilers' documentation and the README's.

Each row says what the spec feature becomes on W&B and on Optuna, whether that is exact, and
why not when it is not. :func:`markdown_table` renders the README section "How the engines
differ" (``docs/engines.md``); tests check the rows against the compilers (a distribution
marked exact compiles natively; every unsupported kind a compiler emits has a row here, and
every row here is emitted by some golden case).

Imports nothing heavy: ``compile --engine wandb`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DISTRIBUTIONS",
    "EARLY_TERMINATE",
    "METHODS",
    "OTHER_KEYS",
    "SAMPLERS",
    "UNSUPPORTED",
    "DistributionRow",
    "EarlyTerminateRow",
    "MethodRow",
    "UnsupportedRow",
    "markdown_table",
]

_QUANTILE = "quantile `FloatDistribution(0, 1)` + W&B's inverse CDF"


@dataclass(frozen=True)
class DistributionRow:
    kind: str
    wandb: str
    optuna: str
    exact: bool
    note: str


@dataclass(frozen=True)
class MethodRow:
    method: str
    sampler: str
    exact: bool
    note: str


@dataclass(frozen=True)
class EarlyTerminateRow:
    type: str
    wandb: str
    pruner: str
    prune_on: str
    note: str


@dataclass(frozen=True)
class UnsupportedRow:
    target: str
    kind: str
    feature: str
    instead: str


DISTRIBUTIONS: tuple[DistributionRow, ...] = (
    DistributionRow(
        "constant",
        "as written",
        "`CategoricalDistribution([value])`",
        True,
        "a single choice: Optuna records it without asking the sampler, as W&B "
        "removes constants from its search space",
    ),
    DistributionRow(
        "categorical",
        "as written",
        "`CategoricalDistribution(values)`",
        True,
        "values Optuna cannot store (lists, mappings) or cannot tell apart (`1`, "
        "`1.0`, `true`) become the string indices `'0'`, `'1'`, ... and are mapped "
        "back to the values",
    ),
    DistributionRow(
        "categorical_w_probabilities",
        "as written",
        _QUANTILE,
        False,
        "Optuna has no weighted categorical; sampled values follow the "
        "probabilities exactly, model-based samplers see the values ordered by "
        "cumulative probability",
    ),
    DistributionRow(
        "int_uniform",
        "as written",
        "`IntDistribution(min, max)`",
        True,
        "both ends included, as in W&B",
    ),
    DistributionRow("uniform", "as written", "`FloatDistribution(min, max)`", True, ""),
    DistributionRow(
        "q_uniform",
        "as written",
        _QUANTILE,
        False,
        "Optuna's `step` grid starts at `min` and weights every point equally; "
        "W&B rounds to multiples of `q` counted from 0 with half weight at both "
        "ends. Under `method: grid`: `np.arange(min, max, q)`, as W&B enumerates "
        "it",
    ),
    DistributionRow(
        "log_uniform",
        "rewritten to `log_uniform_values` with `min: e^min`, `max: e^max`",
        "`FloatDistribution(e^min, e^max, log=True)`",
        True,
        "W&B's current validator refuses this exponent form; the rewrite has the same quantiles",
    ),
    DistributionRow(
        "log_uniform_values", "as written", "`FloatDistribution(min, max, log=True)`", True, ""
    ),
    DistributionRow(
        "inv_log_uniform",
        "rewritten to `inv_log_uniform_values` with `min: e^-max`, `max: e^-min`",
        "`FloatDistribution(e^-max, e^-min, log=True)`",
        True,
        "W&B's current validator refuses this exponent form; `e^-U(min, max)` is log-uniform",
    ),
    DistributionRow(
        "inv_log_uniform_values",
        "as written",
        "`FloatDistribution(min, max, log=True)`",
        True,
        "W&B's inverse CDF is algebraically the log-uniform one",
    ),
    DistributionRow(
        "q_log_uniform",
        "rewritten to `q_log_uniform_values` with `min: e^min`, `max: e^max`",
        _QUANTILE,
        False,
        "Optuna cannot combine `log=True` with a step",
    ),
    DistributionRow(
        "q_log_uniform_values",
        "as written",
        _QUANTILE,
        False,
        "Optuna cannot combine `log=True` with a step",
    ),
    DistributionRow(
        "normal", "as written", _QUANTILE, False, "Optuna's distributions are all bounded"
    ),
    DistributionRow(
        "q_normal", "as written", _QUANTILE, False, "Optuna's distributions are all bounded"
    ),
    DistributionRow(
        "log_normal", "as written", _QUANTILE, False, "Optuna's distributions are all bounded"
    ),
    DistributionRow(
        "q_log_normal", "as written", _QUANTILE, False, "Optuna's distributions are all bounded"
    ),
    DistributionRow("beta", "as written", _QUANTILE, False, "Optuna has no beta distribution"),
    DistributionRow("q_beta", "as written", _QUANTILE, False, "Optuna has no beta distribution"),
)

METHODS: tuple[MethodRow, ...] = (
    MethodRow(
        "grid",
        "`GridSampler` over W&B's grid",
        True,
        "the same points (`int_uniform` as `range(min, max + 1)`, `q_uniform` as "
        "`np.arange(min, max, q)`, repeated values once); Optuna visits them in a "
        "shuffled order",
    ),
    MethodRow("random", "`RandomSampler`", True, "every distribution samples as W&B's does"),
    MethodRow(
        "bayes",
        "`TPESampler()` with Optuna 5's defaults",
        False,
        "W&B's bayes is a Gaussian process (scikit-learn, Matern nu=1.5, on the "
        "CDF-normalised cube, expected improvement over 1000 random candidates). "
        "Optuna's `GPSampler` is the closest twin but needs torch, which sweepspec does "
        "not install; TPE (multivariate for one objective, constant liar for parallel "
        "workers) is Optuna's default and handles conditional spaces. Ask for "
        "`optuna: {sampler: gp}` to get the GP",
    ),
    MethodRow(
        "custom",
        "`TPESampler()`",
        False,
        "W&B's `custom` needs its own scheduler; "
        "sweepspec samples with TPE (NSGA-II for several metrics)",
    ),
    MethodRow(
        "`metrics` (several objectives)",
        "`NSGAIISampler()` unless the method is grid or random",
        False,
        "W&B accepts `metrics` only with `method: custom`",
    ),
)

SAMPLERS: dict[str, str] = {
    "tpe": "TPESampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
    "nsgaii": "NSGAIISampler",
    "nsgaiii": "NSGAIIISampler",
    "random": "RandomSampler",
    "grid": "GridSampler",
    "bruteforce": "BruteForceSampler",
}
"""``optuna: {sampler: NAME}`` -> the Optuna sampler class; ``options`` are its kwargs."""

EARLY_TERMINATE: tuple[EarlyTerminateRow, ...] = (
    EarlyTerminateRow(
        "(none)", "(none)", "`NopPruner()`", "step", "never Optuna's default `MedianPruner`"
    ),
    EarlyTerminateRow(
        "hyperband",
        "as written",
        "`WandbHyperbandPruner(min_iter | max_iter and s, eta, strict)` (sweepspec's)",
        "count",
        "W&B's own rule, decision for decision (tested against `sweeps.stop_runs`): "
        "its iteration is the count of logged metric values, so the step reported to "
        "Optuna is that 1-based count; at each of W&B's bands a trial is stopped when "
        "its value (`strict`) or its best so far (`strict: false`) is worse than "
        "rank `int(n/eta)` among the `n` trials that reached the band, in any state; "
        "re-checked at every report. No Optuna pruner does this: "
        "`SuccessiveHalvingPruner` keeps one trial fewer per rung, never re-checks "
        "and adds rungs past `max_iter`",
    ),
    EarlyTerminateRow(
        "hyperband with `brackets` > 1",
        "one bracket (unsupported)",
        "`HyperbandPruner(min_resource=first band, max_resource=max_iter or "
        "first band * eta^(brackets - 1), reduction_factor=round(eta))`",
        "count",
        "sweepspec extension",
    ),
    EarlyTerminateRow("median", "removed (unsupported)", "`MedianPruner(...)`", "step", ""),
    EarlyTerminateRow("percentile", "removed (unsupported)", "`PercentilePruner(...)`", "step", ""),
    EarlyTerminateRow(
        "successive_halving", "removed (unsupported)", "`SuccessiveHalvingPruner(...)`", "step", ""
    ),
    EarlyTerminateRow("threshold", "removed (unsupported)", "`ThresholdPruner(...)`", "step", ""),
    EarlyTerminateRow(
        "patient",
        "removed (unsupported)",
        "`PatientPruner(wrapped, ...)`",
        "step",
        "`wrapped` compiles by the same table",
    ),
    EarlyTerminateRow("wilcoxon", "removed (unsupported)", "`WilcoxonPruner(...)`", "step", ""),
)

OTHER_KEYS: tuple[tuple[str, str, str], ...] = (
    (
        "`metric.target`",
        "as written (W&B never reads it)",
        "`targets` in the plan: the runner stops the study when it is reached (not a pruner)",
    ),
    (
        "`metric` absent",
        "as written",
        "`directions: [minimize]`: the number the trial returns is minimised",
    ),
    (
        "`run_cap`, `budget.trials`",
        "`run_cap` (from `budget.trials` when `run_cap` is absent)",
        "`n_trials` (`run_cap` first)",
    ),
    ("`seeds`, `budget`", "removed (unsupported)", "`budget` in the plan, for the runner"),
    (
        "`engine`, `tracking`, `optuna`, `wandb`",
        "removed (a note each)",
        "`optuna.storage` and `optuna.study_name` are the study's defaults",
    ),
    ("`function`", "removed (unsupported)", "called by the runner or by `--format python`"),
    (
        "nested `parameters`",
        "as written",
        "flat dotted names (`optimizer.lr`); the trial gets nested dicts",
    ),
)
"""Keys beyond parameters, methods and early termination: (key, on W&B, on Optuna)."""

UNSUPPORTED: tuple[UnsupportedRow, ...] = (
    UnsupportedRow(
        "wandb",
        "condition",
        "`when:` (conditional parameters)",
        "removed: W&B samples the parameter in every run",
    ),
    UnsupportedRow(
        "wandb",
        "pruner",
        "`early_terminate` other than hyperband",
        "removed: W&B runs every trial to its end",
    ),
    UnsupportedRow(
        "wandb", "hyperband-brackets", "hyperband `brackets` > 1", "removed: W&B runs one bracket"
    ),
    UnsupportedRow(
        "wandb",
        "multi-objective",
        "`metrics` without `method: custom`",
        "W&B optimises the first metric alone",
    ),
    UnsupportedRow(
        "wandb",
        "function",
        "`function`",
        "removed: `wandb agent` runs a `program` or `command`; pass the function to "
        "`wandb.agent(sweep_id, function=...)` yourself",
    ),
    UnsupportedRow("wandb", "seeds", "`seeds`", "removed: W&B runs each configuration once"),
    UnsupportedRow(
        "wandb",
        "objective-last",
        "`objective: last`",
        "removed: W&B's controller scores a run by the best value of its metric",
    ),
    UnsupportedRow(
        "wandb",
        "budget",
        "`budget` beyond `trials`",
        "removed: W&B has no wall-clock, cost or failure limits; start as many agents as workers",
    ),
    UnsupportedRow(
        "optuna",
        "multi-objective-pruning",
        "`metrics` with `early_terminate`",
        "`NopPruner`: Optuna's pruners take one objective",
    ),
    UnsupportedRow(
        "optuna",
        "pruning-without-metric",
        "`early_terminate` without `metric`",
        "`NopPruner`: there is no metric to compare runs on (W&B stops the sweep with an error)",
    ),
    UnsupportedRow(
        "optuna",
        "hyperband-bands",
        "hyperband with `brackets` > 1 and a non-integer `eta`",
        "`HyperbandPruner` with `reduction_factor=round(eta)`",
    ),
    UnsupportedRow(
        "optuna",
        "hyperband-strict",
        "hyperband with `brackets` > 1 and `strict: false`",
        "`HyperbandPruner` compares the value at the rung, not the best value so far",
    ),
    UnsupportedRow(
        "optuna",
        "hyperband-brackets",
        "`brackets` that Optuna's `HyperbandPruner` cannot make from `max_iter`",
        "Optuna's own bracket count",
    ),
    UnsupportedRow(
        "optuna",
        "scheduler",
        "`scheduler` (a W&B custom scheduler)",
        "ignored: sweepspec's sampler is used",
    ),
)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _distribution_lines() -> list[str]:
    rows = [
        [f"`{r.kind}`", r.wandb, r.optuna, "yes" if r.exact else "no", r.note]
        for r in DISTRIBUTIONS
    ]
    return _table(["W&B distribution", "on W&B", "on Optuna", "native", "note"], rows)


def _method_lines() -> list[str]:
    rows = [
        [
            f"`{r.method}`" if " " not in r.method else r.method,
            r.sampler,
            "yes" if r.exact else "no",
            r.note,
        ]
        for r in METHODS
    ]
    samplers = ", ".join(f"`{k}` ({v})" for k, v in SAMPLERS.items())
    return [
        *_table(["method", "Optuna sampler", "same as W&B", "note"], rows),
        "",
        f"`optuna: {{sampler: NAME, options: {{...}}}}` picks any of {samplers}; "
        "`options` are its keyword arguments.",
    ]


def _early_terminate_lines() -> list[str]:
    rows = [
        [
            f"`{r.type}`" if " " not in r.type and r.type != "(none)" else r.type,
            r.wandb,
            r.pruner,
            f"`{r.prune_on}`",
            r.note,
        ]
        for r in EARLY_TERMINATE
    ]
    return [
        *_table(["early_terminate", "on W&B", "Optuna pruner", "step reported", "note"], rows),
        "",
        "`count`: the step passed to `trial.report` is the 1-based count of objective "
        "values reported so far (W&B's hyperband iteration); `step`: the trial's own "
        "step.",
    ]


def _other_lines() -> list[str]:
    return _table(["spec", "on W&B", "on Optuna"], [list(row) for row in OTHER_KEYS])


def _unsupported_lines() -> list[str]:
    rows = [[r.target, f"`{r.kind}`", r.feature, r.instead] for r in UNSUPPORTED]
    return _table(["target", "kind", "spec feature", "what the artifact does instead"], rows)


def markdown_table() -> str:
    """The README section "How the engines differ", generated from the tables above."""
    lines = [
        "## How the engines differ",
        "",
        "<!-- generated by sweepspec.compiler.table.markdown_table(); do not edit by hand -->",
        "",
        "`sweepspec compile FILE --engine wandb|optuna` translates one spec for each engine. "
        "Where the target can say the same thing, it does; where it cannot, the compiler names "
        "the feature (`FILE: warning: unsupported on ENGINE: FEATURE: MESSAGE`), records it in "
        "the artifact, and `--strict` turns it into an error.",
        "",
        "### Distributions",
        "",
        "A *native* distribution is Optuna's own and equal in law to W&B's. The others are "
        "declared to Optuna as a quantile `u` in [0, 1] and turned into the value by W&B's "
        "own inverse CDF, so that sampled values follow W&B's distribution exactly; the real "
        "value is what trials, trackers and tables show.",
        "",
        *_distribution_lines(),
        "",
        "### Methods",
        "",
        *_method_lines(),
        "",
        "### Early termination",
        "",
        *_early_terminate_lines(),
        "",
        "### Other keys",
        "",
        *_other_lines(),
        "",
        "### What a target cannot express",
        "",
        *_unsupported_lines(),
        "",
        "### Adding an engine",
        "",
        "An engine is one module under `src/sweepspec/runners/` whose `open_engine(spec, path, "
        "options)` returns an object with the `Engine` protocol of "
        "`src/sweepspec/runners/base.py` (ask for the next trial, report an intermediate value "
        "and learn whether to stop, tell the outcome, list the trials, resume), plus one line "
        "in `ENGINES` there, and its compiler `src/sweepspec/compiler/<engine>.py`. The "
        "engine-neutral loop (`src/sweepspec/runners/sweep.py`) does everything else: workers, "
        "budgets, seeds, trial execution, progress, trackers, Ctrl-C and resume. A tracker is "
        "one module under `src/sweepspec/trackers/` and one line in `TRACKERS`. Step by step, "
        "with the protocol member by member: [engines-how-to-add.md](engines-how-to-add.md).",
        "",
    ]
    return "\n".join(lines)
