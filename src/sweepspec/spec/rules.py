"""Checks beyond the shape of each key: W&B's cross-key rules, and lint for W&B's traps.

Every rule is a function ``(spec, doc) -> Iterator[Finding]`` registered in ``RULES``; its
docstring is its documentation (``docs/lint-rules.md`` is generated from them and a test keeps
it in sync). Errors are what W&B refuses, or what goes wrong at run time without a word;
warnings are traps where W&B does something other than what the file seems to say.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from . import models
from .findings import Finding, Level, Path, format_path
from .loader import Document
from .messages import did_you_mean

Rule = Callable[[models.Spec, Document], Iterator[Finding]]
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return register


def _params(spec: models.Spec) -> Iterator[tuple[Path, Any]]:
    """Every parameter with its path in the file, nested ones included."""

    def walk(params: dict[str, Any], prefix: Path) -> Iterator[tuple[Path, Any]]:
        for name, param in params.items():
            path = prefix + (name,)
            yield path, param
            if isinstance(param, models.NestedParam):
                yield from walk(param.parameters, path + ("parameters",))

    yield from walk(spec.parameters or {}, ("parameters",))


# ----------------------------------------------------------------------------- W&B's rules


@rule("parameters-required")
def parameters_required(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """``parameters`` is required unless ``scheduler.search_space`` is set (W&B).

    Example::

        method: random      # error: 'parameters' is required
    """
    if spec.parameters is None and not (spec.scheduler and spec.scheduler.search_space):
        yield doc.finding(
            "error",
            (),
            "'parameters' is required unless 'scheduler.search_space' is set",
            rule="parameters-required",
        )


@rule("metric-or-metrics")
def metric_or_metrics(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """``metric`` (one objective) and ``metrics`` (several) cannot both be set (W&B).

    Example::

        metric: {name: loss}
        metrics: [{name: loss}, {name: latency}]   # error
    """
    if spec.metric is not None and spec.metrics is not None:
        yield doc.finding(
            "error",
            ("metrics",),
            "'metric' and 'metrics' cannot both be set: use "
            "'metric' for one objective, 'metrics' for several",
            rule="metric-or-metrics",
            key=True,
        )


@rule("metrics-method")
def metrics_method(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """W&B takes ``metrics`` (several objectives) only with ``method: custom`` and a custom
    scheduler: it refuses the file otherwise. sweepspec runs it on Optuna (multi-objective);
    ``compile --engine wandb`` keeps the first metric.

    Example::

        method: bayes
        metrics: [{name: loss}, {name: latency}]   # warning: W&B refuses it
    """
    if spec.metrics is not None and spec.metric is None and spec.method != "custom":
        yield doc.finding(
            "warning",
            ("metrics",),
            f"W&B refuses 'metrics' with 'method: {spec.method}' (it needs 'method: custom' "
            "and a custom scheduler); Optuna optimises every metric, W&B only the first",
            rule="metrics-method",
            key=True,
        )


@rule("scheduler")
def scheduler_rules(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """W&B's ``scheduler`` rules: no local ``controller`` and no ``early_terminate`` with it;
    ``engine: wandb`` needs grid, random or bayes; ``optuna`` and ``ax`` need ``method: custom``;
    ``optimizer`` and ``search_space`` name functions in ``source``, which they need.

    Example::

        method: bayes
        scheduler: {engine: optuna}   # error: needs 'method: custom'
    """
    if spec.scheduler is None:
        return
    if spec.controller is not None and spec.controller.type == "local":
        yield doc.finding(
            "error",
            ("controller",),
            "'controller: {type: local}' cannot be used together with 'scheduler'",
            rule="scheduler",
            key=True,
        )
    if spec.early_terminate is not None:
        yield doc.finding(
            "error",
            ("early_terminate",),
            "'early_terminate' cannot be used "
            "together with 'scheduler': the scheduler must stop runs itself",
            rule="scheduler",
            key=True,
        )
    for key in ("optimizer", "search_space"):
        if getattr(spec.scheduler, key) is not None and spec.scheduler.source is None:
            yield doc.finding(
                "error",
                ("scheduler", key),
                f"'scheduler.{key}' names a function in 'scheduler.source', which is not "
                "set: add 'source: FILE.py' (W&B refuses the file without it)",
                rule="scheduler",
                key=True,
            )
    allowed = {"wandb": ("grid", "random", "bayes"), "optuna": ("custom",), "ax": ("custom",)}
    methods = allowed[spec.scheduler.engine]
    if spec.method not in methods:
        yield doc.finding(
            "error",
            ("method",),
            f"'scheduler.engine: {spec.scheduler.engine}' "
            f"needs method {' or '.join(methods)}, but got {spec.method!r}",
            rule="scheduler",
        )


@rule("hyperband-form")
def hyperband_form(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """W&B's hyperband needs ``min_iter``, or ``max_iter`` together with ``s`` (an error
    otherwise, as in W&B). With ``max_iter`` and no ``s`` next to ``min_iter``, W&B's validator
    passes and the sweep crashes at the first stop check (``KeyError: 's'``): a warning.

    Example::

        early_terminate: {type: hyperband, max_iter: 27}   # error: 's' is required
    """
    et = spec.early_terminate
    if not isinstance(et, models.HyperbandStopping):
        return
    where = ("early_terminate",)
    if et.max_iter is not None and et.s is None:
        level: Level = "warning" if et.min_iter is not None else "error"
        yield doc.finding(
            level,
            where,
            "hyperband with 'max_iter' needs 's' (the number of "
            "bands below max_iter): W&B reads 's' whenever 'max_iter' is set, "
            "even next to 'min_iter'",
            rule="hyperband-form",
        )
    elif et.max_iter is None and et.min_iter is None:
        yield doc.finding(
            "error",
            where,
            "hyperband needs 'min_iter', or 'max_iter' and 's'",
            rule="hyperband-form",
        )
    if et.s is not None and not float(et.s).is_integer():
        yield doc.finding(
            "error",
            where + ("s",),
            f"'s' must be a whole number, but got {et.s}: W&B passes it to range() and crashes",
            rule="hyperband-form",
        )
    elif isinstance(et.s, float):
        yield doc.finding(
            "warning",
            where + ("s",),
            f"write 's: {int(et.s)}': W&B crashes on the float {et.s} (it is passed to range())",
            rule="hyperband-form",
        )


# ----------------------------------------------------------------------------- sweepspec rules


@rule("flat-names")
def flat_names(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """Nested parameters are named by their dotted path (``optimizer.lr``) wherever one flat
    name is needed (Optuna, MLflow, tables): a literal dotted name must not be the path of a
    nested one, or one of the two would be lost.

    Example::

        parameters:
          optimizer: {parameters: {lr: {values: [0.1]}}}
          optimizer.lr: {values: [0.01]}   # error: same flat name as optimizer.parameters.lr
    """
    first: dict[str, Path] = {}
    for path, param in _params(spec):
        if isinstance(param, models.NestedParam):
            continue
        flat = ".".join(str(name) for name in path[1::2])  # (parameters, a, parameters, b)
        if flat in first:
            other = first[flat]
            yield doc.finding(
                "error",
                path,
                f"{flat!r} is also the flat name of {format_path(other)} (line "
                f"{doc.mark(other, key=True).line}); one of them would be lost: rename one "
                "(nested parameters are named by their dotted path)",
                rule="flat-names",
                key=True,
            )
        else:
            first[flat] = path


@rule("function-or-program")
def function_or_program(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """A trial is a Python ``function`` or a ``program``/``command``, not both.

    Example::

        function: train:objective
        program: train.py          # error
    """
    if spec.function is not None and (spec.program is not None or spec.command is not None):
        other = "program" if spec.program is not None else "command"
        yield doc.finding(
            "error",
            (other,),
            f"'function' and '{other}' cannot both be set: a "
            "trial is either a Python function or a command",
            rule="function-or-program",
            key=True,
        )


@rule("condition")
def condition(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """A conditional parameter (``when:``) names another parameter of the same level, and a
    value that parameter can take.

    Example::

        parameters:
          optimizer: {values: [adam, sgd]}
          momentum: {min: 0.0, max: 0.99, when: {optimizer: sdg}}   # error: not a value
    """
    for path, param in _params(spec):
        if not param.when:
            continue
        siblings = _siblings(spec, path)
        for other, wanted in param.when.items():
            where = path + ("when", other)
            if other == path[-1] or other not in siblings:
                names = [n for n in siblings if n != path[-1]]
                yield doc.finding(
                    "error",
                    where,
                    f"'when' names {other!r}, which is not a "
                    f"parameter beside {path[-1]!r}{did_you_mean(other, names)}",
                    rule="condition",
                    key=True,
                )
                continue
            choices = _choices(siblings[other])
            for value in wanted if isinstance(wanted, list) else [wanted]:
                if choices is not None and value not in choices:
                    yield doc.finding(
                        "error",
                        where,
                        f"{other!r} never takes the value {value!r}; it takes one of {choices!r}",
                        rule="condition",
                    )


def _siblings(spec: models.Spec, path: Path) -> dict[str, Any]:
    params: dict[str, Any] = spec.parameters or {}
    for part in path[1:-1]:
        if part != "parameters":
            params = params[str(part)].parameters
    return params


def _choices(param: Any) -> list[Any] | None:
    if isinstance(param, (models.CategoricalParam, models.CategoricalWProbabilitiesParam)):
        return list(param.values)
    if isinstance(param, models.ConstantParam):
        return [param.value]
    if isinstance(param, models.IntUniformParam) and param.max - param.min <= 1000:
        return list(range(param.min, param.max + 1))
    return None


@rule("metric-required")
def metric_required(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """``bayes`` and every early termination compare runs on a metric. W&B's validator lets a
    file without ``metric`` through and the sweep then fails at its first run
    (``ValueError: Bayesian search requires "metric" section``): a warning, since W&B accepts
    the file; an error for sweepspec's own early-termination types.

    Example::

        method: bayes        # warning: 'metric' is required for method 'bayes'
        parameters: {lr: {min: 0.0001, max: 0.1}}
    """
    if spec.objectives:
        return
    if spec.method == "bayes":
        yield doc.finding(
            "warning",
            ("method",),
            "'metric' is required for method 'bayes': "
            "W&B accepts the file, then stops with 'Bayesian search requires "
            '"metric" section\' at the first run',
            rule="metric-required",
        )
    et = spec.early_terminate
    if et is not None:
        level: Level = "warning" if isinstance(et, models.HyperbandStopping) else "error"
        yield doc.finding(
            level,
            ("early_terminate",),
            f"'metric' is required for early "
            f"termination ({et.type}): runs are stopped on the metric",
            rule="metric-required",
            key=True,
        )


# ----------------------------------------------------------------------------- lint: W&B traps


@rule("log-uniform-values")
def log_uniform_values(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """W&B's most common trap: ``log_uniform`` takes natural-log *exponents*. Bounds between 0
    and 1 look like the values the author meant.

    Example::

        lr: {distribution: log_uniform, min: 0.000001, max: 0.001}
        # warning: samples e^0.000001..e^0.001, i.e. 1.000001..1.0010005
    """
    for path, param in _params(spec):
        dist = getattr(param, "distribution", None)
        if dist in models.EXPONENT_FORMS and 0 < param.min < param.max <= 1:
            lo, hi = sorted((math.exp(param.min), math.exp(param.max)))
            if dist == "inv_log_uniform":
                lo, hi = math.exp(-param.max), math.exp(-param.min)
            yield doc.finding(
                "warning",
                path + ("distribution",),
                f"{dist} takes natural-log exponents: min={param.min:g}, max={param.max:g} "
                f"samples between {lo:.7g} and {hi:.7g}. For values between {param.min:g} and "
                f"{param.max:g} write 'distribution: {models.EXPONENT_FORMS[dist]}'",
                rule="log-uniform-values",
            )


@rule("grid-continuous")
def grid_continuous(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """W&B's grid search enumerates only ``values``, ``value``, ``int_uniform`` and
    ``q_uniform``; its local grid raises on anything else.

    Example::

        method: grid
        parameters:
          lr: {min: 0.001, max: 0.1}   # warning: W&B cannot grid over 'uniform'
    """
    if spec.method != "grid":
        return
    for path, param in _params(spec):
        dist = getattr(param, "distribution", None)
        if dist is not None and dist not in models.GRID_DISTRIBUTIONS:
            yield doc.finding(
                "warning",
                path,
                f"W&B's grid search cannot enumerate {dist!r}; "
                "give 'values', or use int_uniform or q_uniform",
                rule="grid-continuous",
                key=True,
            )


_WHOLE_TOKEN_MACROS = (
    "env",
    "interpreter",
    "program",
    "args",
    "args_no_hyphens",
    "args_no_boolean_flags",
    "args_no_equals",
    "args_json",
    "args_json_file",
    "args_append_hydra",
    "args_override_hydra",
)
_MACRO = re.compile(r"\$\{([^}]*)\}")
_ENVVAR = re.compile(r"^envvar:[A-Z0-9_]*$")


@rule("command-macros")
def command_macros(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """W&B's agent expands an unknown macro to nothing and leaves a macro inside a longer item
    as literal text; ``${envvar:NAME}`` works anywhere but only for ``[A-Z0-9_]`` names.

    Example::

        command: ["${env}", "${interpeter}", "${program}", "${args}"]
        # error: unknown macro '${interpeter}'; did you mean '${interpreter}'?
    """
    yield from macro_findings(spec.command, doc)


def macro_findings(command: Any, doc: Document) -> Iterator[Finding]:
    """The command-macros rule on raw data: it also runs when other keys have errors."""
    for i, item in enumerate(command if isinstance(command, list) else []):
        path: Path = ("command", i)
        if not isinstance(item, str):
            continue
        for match in _MACRO.finditer(item):
            name = match.group(1)
            if _ENVVAR.match(name):
                continue
            if name.startswith("envvar:"):
                yield doc.finding(
                    "error",
                    path,
                    f"'${{{name}}}' is not expanded: W&B's "
                    "'${envvar:NAME}' takes upper-case letters, digits and '_'",
                    rule="command-macros",
                )
            elif name not in _WHOLE_TOKEN_MACROS:
                hint = did_you_mean(name, _WHOLE_TOKEN_MACROS + ("envvar:NAME",))
                hint = (
                    hint.replace("'", "'${", 1).replace("'?", "}'?")
                    if hint
                    else ("; known: " + ", ".join(f"${{{m}}}" for m in _WHOLE_TOKEN_MACROS))
                )
                yield doc.finding(
                    "error", path, f"unknown macro '${{{name}}}'{hint}", rule="command-macros"
                )
            elif item != match.group(0):
                yield doc.finding(
                    "warning",
                    path,
                    f"'${{{name}}}' is expanded only when it is "
                    f"a whole item of 'command'; {item!r} is passed as written",
                    rule="command-macros",
                )


@rule("command-without-args")
def command_without_args(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """A ``command`` without any ``${args...}`` macro passes no parameter on the command line;
    the program must read them from ``wandb.config``.

    Example::

        command: [python, train.py]   # warning
    """
    if not spec.command or not spec.parameters:
        return
    if any(isinstance(c, str) and c.startswith("${args") for c in spec.command):
        return
    yield doc.finding(
        "warning",
        ("command",),
        "no '${args...}' macro: the program gets no "
        "parameters on its command line and must read them from wandb.config",
        rule="command-without-args",
        key=True,
    )


@rule("q-range")
def q_range(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """W&B rounds ``q_uniform`` to multiples of ``q`` counted from 0: when ``min`` and ``max``
    are not multiples of ``q``, values fall outside ``[min, max]`` and differ from Optuna's
    ``step`` grid (counted from ``min``).

    Example::

        batch: {distribution: q_uniform, min: 1, max: 10, q: 3}   # warning: can give 0
    """
    for path, param in _params(spec):
        if getattr(param, "distribution", None) not in ("q_uniform", "q_log_uniform_values"):
            continue
        if not all(map(math.isfinite, (param.min, param.max, param.q))):
            continue  # the finite-numbers rule says so
        bad = [name for name in ("min", "max") if not _multiple(getattr(param, name), param.q)]
        if bad:
            lo = round(param.min / param.q) * param.q
            hi = round(param.max / param.q) * param.q
            yield doc.finding(
                "warning",
                path + ("q",),
                f"min and max should be multiples of "
                f"q={param.q:g}: W&B rounds to multiples of q from 0, so values "
                f"run from {lo:g} to {hi:g}, not {param.min:g} to {param.max:g}",
                rule="q-range",
            )


_NUMBERS = ("min", "max", "mu", "sigma", "q", "a", "b")
_MAX_EXPONENT = math.log(sys.float_info.max)  # e^709.78...: the largest float


@rule("finite-numbers")
def finite_numbers(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """Every number of a distribution must be finite, and so must what is computed from it:
    ``max - min`` (a uniform's width) and ``e^max`` (the exponent forms' largest value). W&B
    accepts ``.inf``, ``.nan`` and ``1e308`` there and then samples infinite or undefined
    values; Optuna cannot sample them at all. An error, so that no run starts with them.

    Example::

        lr: {min: 0.0, max: .inf}   # error: inf is not a finite number
    """
    for path, param in _params(spec):
        bad = False
        for name in _NUMBERS:
            value = getattr(param, name, None)
            if isinstance(value, float) and not math.isfinite(value):
                bad = True
                yield doc.finding(
                    "error",
                    path + (name,),
                    f"{name}={value!r} is not a finite number: W&B would sample infinite or "
                    "undefined (nan) values from this parameter, and Optuna cannot",
                    rule="finite-numbers",
                )
        if not bad:
            yield from _overflow(param, path, doc)


def _overflow(param: Any, path: Path, doc: Document) -> Iterator[Finding]:
    dist = getattr(param, "distribution", None)
    if dist in ("uniform", "q_uniform") and not math.isfinite(param.max - param.min):
        yield doc.finding(
            "error",
            path + ("max",),
            f"'max - min' must be a finite number, but got min={param.min!r}, "
            f"max={param.max!r}: their difference overflows, and the samples would be inf",
            rule="finite-numbers",
        )
    if dist in models.EXPONENT_FORMS:
        name, exponent = ("min", -param.min) if dist == "inv_log_uniform" else ("max", param.max)
        if exponent > _MAX_EXPONENT:
            yield doc.finding(
                "error",
                path + (name,),
                f"{dist} samples e^{'-' if name == 'min' else ''}{name}, which overflows for "
                f"{name}={getattr(param, name)!r} ('{'-' if name == 'min' else ''}{name} <= "
                f"{_MAX_EXPONENT:.2f}' must hold): its bounds are natural-log exponents; for "
                f"values write 'distribution: {models.EXPONENT_FORMS[dist]}'",
                rule="finite-numbers",
            )


def _multiple(value: float, q: float) -> bool:
    ratio = value / q
    return math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-9)


@rule("categorical-optuna")
def categorical_optuna(spec: models.Spec, doc: Document) -> Iterator[Finding]:
    """Optuna stores only None, bool, int, float and str choices, and merges choices that
    compare equal (``1``, ``true``, ``1.0``); lists, mappings (which W&B allows) and such mixes
    run on Optuna through their index.

    Example::

        layers: {values: [[64, 64], [128]]}   # warning
    """
    for path, param in _params(spec):
        values = getattr(param, "values", None)
        if values is None and isinstance(param, models.ConstantParam):
            values = [param.value]
        clash = models.optuna_choice_clash(values or [])
        if clash is None:
            continue
        value, other = clash
        what = (
            f"store {_show_type(value)} values natively"
            if other is None
            else f"tell apart {_show_value(value)} and {_show_value(other)} (they compare equal)"
        )
        yield doc.finding(
            "warning",
            path,
            f"Optuna cannot {what}; on Optuna this parameter is "
            "chosen by index and the real value is passed to the trial",
            rule="categorical-optuna",
            key=True,
        )


def _show_value(value: Any) -> str:
    """A value as the YAML file spells it (true, not True)."""
    return "true" if value is True else "false" if value is False else repr(value)


def _show_type(value: Any) -> str:
    return (
        "list"
        if isinstance(value, list)
        else "mapping"
        if isinstance(value, dict)
        else type(value).__name__
    )


def run_rules(spec: models.Spec, doc: Document) -> list[Finding]:
    out: list[Finding] = []
    for fn in RULES.values():
        out.extend(fn(spec, doc))
    return out


def markdown() -> str:
    """``docs/lint-rules.md``: every rule with its documentation and example."""
    import inspect

    out = [
        "# sweepspec validate: the rules\n",
        "Beyond the shape of each key (W&B's schema, exactly), `sweepspec validate` runs these "
        "checks. Errors exit 1; warnings are printed and exit 0 unless `--strict`. This page "
        "is generated from `src/sweepspec/spec/rules.py` (a test keeps it in sync).\n",
        "Two more come from the YAML loader: `duplicate-key` (error: PyYAML keeps the last "
        "value silently) and `yaml12-float` (warning: `1e-5` is a string to PyYAML, so "
        "sweepspec reads it as the number and says so). The loader also refuses, as errors, "
        "values that are not numbers, strings, booleans or null (a date such as `2024-01-01`, "
        "`!!binary`), strings with a NUL character, a file over 1 MiB and a list of more than "
        "100,000 items, and it says to quote a `${...}` macro inside `[...]`.\n",
    ]
    for name, fn in RULES.items():
        text = inspect.cleandoc(fn.__doc__ or "").replace("``", "`")
        prose, _, example = text.partition("Example::")
        code = "\n".join(line[4:] for line in example.strip("\n").splitlines())
        out.append(f"## `{name}`\n\n{prose.strip()}\n\n```yaml\n{code}\n```\n")
    return "\n".join(out)
