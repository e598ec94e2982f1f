"""Each rule of sweepspec.spec.rules on its documented example, with the exact message."""

from __future__ import annotations

import textwrap

import pytest

from sweepspec.spec import check_text
from sweepspec.spec.rules import RULES


def lines(text: str) -> list[str]:
    checked = check_text(textwrap.dedent(text).lstrip("\n"), "s.yaml")
    return [f.format() for f in checked.findings]


def test_parameters_required() -> None:
    assert lines("method: random\n") == [
        "s.yaml:1:1: error: 'parameters' is required unless 'scheduler.search_space' is set"
    ]


def test_metric_or_metrics() -> None:
    assert lines("""
        method: random
        metric: {name: loss}
        metrics: [{name: loss}, {name: latency}]
        parameters: {x: {values: [1]}}
    """) == [
        "s.yaml:3:1: error: metrics: 'metric' and 'metrics' cannot both be set: use "
        "'metric' for one objective, 'metrics' for several"
    ]


def test_scheduler() -> None:
    assert lines("""
        method: bayes
        metric: {name: loss}
        scheduler: {engine: optuna}
        parameters: {x: {values: [1]}}
    """) == [
        "s.yaml:1:9: error: method: 'scheduler.engine: optuna' needs method custom, but got 'bayes'"
    ]


def test_scheduler_functions_need_source() -> None:
    """W&B's schema: 'optimizer' and 'search_space' depend on 'source'."""
    assert lines("""
        method: custom
        scheduler: {engine: optuna, optimizer: make_study, search_space: space}
    """) == [
        "s.yaml:2:29: error: scheduler.optimizer: 'scheduler.optimizer' names a function in "
        "'scheduler.source', which is not set: add 'source: FILE.py' (W&B refuses the file "
        "without it)",
        "s.yaml:2:52: error: scheduler.search_space: 'scheduler.search_space' names a function "
        "in 'scheduler.source', which is not set: add 'source: FILE.py' (W&B refuses the file "
        "without it)",
    ]
    assert (
        lines("""
        method: custom
        scheduler: {engine: optuna, source: opt.py, optimizer: make_study, search_space: space}
    """)
        == []
    )


def test_hyperband_form() -> None:
    assert lines("""
        method: random
        metric: {name: loss}
        parameters: {x: {values: [1]}}
        early_terminate: {type: hyperband, max_iter: 27}
    """) == [
        "s.yaml:4:18: error: early_terminate: hyperband with 'max_iter' needs 's' (the "
        "number of bands below max_iter): W&B reads 's' whenever 'max_iter' is set, even "
        "next to 'min_iter'"
    ]
    assert lines("""
        method: random
        metric: {name: loss}
        parameters: {x: {values: [1]}}
        early_terminate: {type: hyperband, max_iter: 27, min_iter: 1, s: 2.0}
    """) == [
        "s.yaml:4:66: warning: early_terminate.s: write 's: 2': W&B crashes on the float 2.0 "
        "(it is passed to range())"
    ]
    assert lines("""
        method: random
        metric: {name: loss}
        parameters: {x: {values: [1]}}
        early_terminate: {type: hyperband, max_iter: 27, min_iter: 1}
    """) == [
        "s.yaml:4:18: warning: early_terminate: hyperband with 'max_iter' needs 's' (the "
        "number of bands below max_iter): W&B reads 's' whenever 'max_iter' is set, even "
        "next to 'min_iter'"
    ]


def test_function_or_program() -> None:
    assert lines("""
        method: random
        function: train:objective
        program: train.py
        parameters: {x: {values: [1]}}
    """) == [
        "s.yaml:3:1: error: program: 'function' and 'program' cannot both be set: a trial "
        "is either a Python function or a command"
    ]


def test_condition() -> None:
    assert lines("""
        method: random
        parameters:
          optimizer: {values: [adam, sgd]}
          momentum: {min: 0.0, max: 0.99, when: {optimizer: sdg}}
          beta: {min: 0.0, max: 0.99, when: {optimiser: adam}}
    """) == [
        "s.yaml:4:53: error: parameters.momentum.when.optimizer: 'optimizer' never takes the "
        "value 'sdg'; it takes one of ['adam', 'sgd']",
        "s.yaml:5:38: error: parameters.beta.when.optimiser: 'when' names 'optimiser', which is "
        "not a parameter beside 'beta'; did you mean 'optimizer'?",
    ]


def test_metric_required() -> None:
    assert lines("""
        method: bayes
        parameters: {lr: {min: 0.0001, max: 0.1}}
        early_terminate: {type: median}
    """) == [
        "s.yaml:1:9: warning: method: 'metric' is required for method 'bayes': W&B accepts the "
        "file, then stops with 'Bayesian search requires \"metric\" section' at the first run",
        "s.yaml:3:1: error: early_terminate: 'metric' is required for early termination "
        "(median): runs are stopped on the metric",
    ]


def test_log_uniform_values() -> None:
    assert lines("""
        method: random
        parameters:
          lr: {distribution: log_uniform, min: 0.000001, max: 0.001}
    """) == [
        "s.yaml:3:22: warning: parameters.lr.distribution: log_uniform takes natural-log "
        "exponents: min=1e-06, max=0.001 samples between 1.000001 and 1.001001. For values "
        "between 1e-06 and 0.001 write 'distribution: log_uniform_values'"
    ]
    assert (
        lines("""
        method: random
        parameters:
          lr: {distribution: log_uniform, min: -9.2, max: -2.3}
    """)
        == []
    )


def test_grid_continuous() -> None:
    assert lines("""
        method: grid
        parameters:
          lr: {min: 0.001, max: 0.1}
          bs: {values: [8, 16]}
    """) == [
        "s.yaml:3:3: warning: parameters.lr: W&B's grid search cannot enumerate 'uniform'; "
        "give 'values', or use int_uniform or q_uniform"
    ]


def test_command_macros() -> None:
    assert lines("""
        method: random
        parameters: {x: {values: [1]}}
        command:
          - ${env}
          - ${interpeter}
          - ${program}
          - --cfg=${args_json}
          - ${envvar:HOME}/x
          - ${envvar:home}
          - ${args}
    """) == [
        "s.yaml:5:5: error: command[1]: unknown macro '${interpeter}'; did you mean "
        "'${interpreter}'?",
        "s.yaml:7:5: warning: command[3]: '${args_json}' is expanded only when it is a whole "
        "item of 'command'; '--cfg=${args_json}' is passed as written",
        "s.yaml:9:5: error: command[5]: '${envvar:home}' is not expanded: W&B's '${envvar:NAME}' "
        "takes upper-case letters, digits and '_'",
    ]


def test_command_without_args() -> None:
    assert lines("""
        method: random
        parameters: {x: {values: [1]}}
        command: [python, train.py]
    """) == [
        "s.yaml:3:1: warning: command: no '${args...}' macro: the program gets no "
        "parameters on its command line and must read them from wandb.config"
    ]


def test_q_range() -> None:
    assert lines("""
        method: random
        parameters:
          batch: {distribution: q_uniform, min: 1, max: 10, q: 3}
          ok: {distribution: q_uniform, min: 0, max: 1, q: 0.25}
    """) == [
        "s.yaml:3:56: warning: parameters.batch.q: min and max should be multiples of q=3: "
        "W&B rounds to multiples of q from 0, so values run from 0 to 9, not 1 to 10"
    ]


def test_categorical_optuna() -> None:
    assert lines("""
        method: random
        parameters:
          layers: {values: [[64, 64], [128]]}
    """) == [
        "s.yaml:3:3: warning: parameters.layers: Optuna cannot store list values natively;"
        " on Optuna this parameter is chosen by index and the real value is passed to the "
        "trial"
    ]
    # the compiler indexes these too: Optuna would merge choices that compare equal
    assert lines("""
        method: random
        parameters:
          x: {values: [1, true, 1.0]}
          y: {values: [0, false]}
          ok: {values: [1, 2.5, a, null]}
    """) == [
        f"s.yaml:{n}:3: warning: parameters.{name}: Optuna cannot tell apart {a} and {b} "
        "(they compare equal); on Optuna this parameter is chosen by index and the real "
        "value is passed to the trial"
        for n, name, a, b in [(3, "x", 1, "true"), (4, "y", 0, "false")]
    ]


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_is_documented_with_an_example(name: str) -> None:
    doc = RULES[name].__doc__ or ""
    assert "Example::" in doc, name


def test_seeds_are_bounded() -> None:
    """`seeds: N` means N full runs of every configuration; a huge N is a typo, and must not
    hang the validator."""
    assert lines("""
        method: random
        parameters: {x: {values: [1]}}
        seeds: 100000000
    """) == ["s.yaml:3:8: error: seeds: '1 <= seeds <= 1000' must hold, but got 100000000"]
    assert lines("""
        method: random
        parameters: {x: {values: [1]}}
        seeds: [1, 2, 1]
    """) == ["s.yaml:3:8: error: seeds: seeds must be distinct, but got 1 more than once"]


def test_macro_findings_once_when_other_keys_have_errors() -> None:
    """With an error elsewhere the rules still run on the rest, and the macro rule (which also
    runs on the raw data) reports each macro once."""
    assert lines("""
        method: random
        run_cap: "x"
        command: [python, train.py, "--x=${args}"]
        parameters:
          lr: {min: 0.001, max: 0.1}
    """) == [
        "s.yaml:2:10: error: run_cap: must be an integer, but got 'x'; run_cap is the number "
        "of runs the sweep starts at most, a whole number > 0 (e.g. 'run_cap: 10')",
        "s.yaml:3:1: warning: command: no '${args...}' macro: the program gets no parameters on "
        "its command line and must read them from wandb.config",
        "s.yaml:3:29: warning: command[2]: '${args}' is expanded only when it is a whole item of "
        "'command'; '--x=${args}' is passed as written",
    ]
    assert lines("""
        method: random
        run_cap: "x"
        command: [python, "${interpeter}", "--x=${args}"]
        parameters:
          lr: {min: 0.001, max: 0.1}
    """) == [
        "s.yaml:2:10: error: run_cap: must be an integer, but got 'x'; run_cap is the number "
        "of runs the sweep starts at most, a whole number > 0 (e.g. 'run_cap: 10')",
        "s.yaml:3:1: warning: command: no '${args...}' macro: the program gets no parameters on "
        "its command line and must read them from wandb.config",
        "s.yaml:3:19: error: command[1]: unknown macro '${interpeter}'; did you mean "
        "'${interpreter}'?",
        "s.yaml:3:36: warning: command[2]: '${args}' is expanded only when it is a whole item of "
        "'command'; '--x=${args}' is passed as written",
    ]


def test_a_file_that_is_not_a_mapping() -> None:
    for text, kind in (("null\n", "null"), ("~\n", "null"), ("[1]\n", "a list"), ("3\n", "3")):
        assert lines(text) == [
            "s.yaml:1:1: error: a spec is a mapping of keys (method, "
            f"parameters, ...), but the file holds {kind}"
        ], text
    assert lines("# nothing\n") == [
        "s.yaml:1:1: error: the file is empty; a spec is a mapping "
        "with at least 'method' and 'parameters'"
    ]


def test_finite_numbers() -> None:
    assert lines("""
        method: random
        parameters:
          a: {min: 0.0, max: .inf}
          b: {distribution: normal, mu: 0, sigma: .inf}
          c: {distribution: log_uniform_values, min: 1.0, max: .nan}
          d: {distribution: q_uniform, min: 0, max: .inf, q: 2}
          e: {min: -.inf, max: 1.0}
          ok: {min: 0.0, max: 1.0}
    """) == [
        f"s.yaml:{line}:{col}: error: parameters.{where}: {name}={value} is not a finite "
        "number: W&B would sample infinite or undefined (nan) values from this parameter, and "
        "Optuna cannot"
        for line, col, where, name, value in [
            (3, 22, "a.max", "max", "inf"),
            (4, 43, "b.sigma", "sigma", "inf"),
            (5, 56, "c.max", "max", "nan"),
            (6, 45, "d.max", "max", "inf"),
            (7, 12, "e.min", "min", "-inf"),
        ]
    ]


def test_finite_numbers_overflow() -> None:
    """Finite bounds whose width or exponential is not finite: what a sampler would compute."""
    assert lines("""
        method: random
        parameters:
          wide: {min: -1.0e+308, max: 1.0e+308}
          exp: {distribution: log_uniform, min: 1, max: 1000}
          inv: {distribution: inv_log_uniform, min: -710, max: 1}
          fine: {distribution: log_uniform_values, min: 1.0e-300, max: 1.0e+308}
          edge: {distribution: q_log_uniform, min: 0, max: 709}
    """) == [
        "s.yaml:3:31: error: parameters.wide.max: 'max - min' must be a finite number, but "
        "got min=-1e+308, max=1e+308: their difference overflows, and the samples would be inf",
        "s.yaml:4:49: error: parameters.exp.max: log_uniform samples e^max, which overflows "
        "for max=1000 ('max <= 709.78' must hold): its bounds are natural-log exponents; for "
        "values write 'distribution: log_uniform_values'",
        "s.yaml:5:45: error: parameters.inv.min: inv_log_uniform samples e^-min, which "
        "overflows for min=-710 ('-min <= 709.78' must hold): its bounds are natural-log "
        "exponents; for values write 'distribution: inv_log_uniform_values'",
    ]


def test_flat_names() -> None:
    assert lines("""
        method: random
        parameters:
          optimizer:
            parameters:
              lr: {values: [0.1]}
              parameters: {values: [1]}
          optimizer.lr: {values: [0.01]}
          optimizer.parameters: {value: 2}
          other.lr: {values: [3]}
    """) == [
        "s.yaml:7:3: error: parameters.optimizer.lr: 'optimizer.lr' is also the flat name of "
        "parameters.optimizer.parameters.lr (line 5); one of them would be lost: rename one "
        "(nested parameters are named by their dotted path)",
        "s.yaml:8:3: error: parameters.optimizer.parameters: 'optimizer.parameters' is also "
        "the flat name of parameters.optimizer.parameters.parameters (line 6); one of them "
        "would be lost: rename one (nested parameters are named by their dotted path)",
    ]


def test_metrics_method() -> None:
    text = """
        method: {method}
        metrics: [{{name: loss}}, {{name: latency, goal: minimize}}]
        parameters: {{x: {{values: [1]}}}}
    """
    assert lines(text.format(method="bayes")) == [
        "s.yaml:2:1: warning: metrics: W&B refuses 'metrics' with 'method: bayes' (it needs "
        "'method: custom' and a custom scheduler); Optuna optimises every metric, W&B only "
        "the first"
    ]
    assert lines(text.format(method="custom")) == []
