"""W&B's hyperband early termination (``sweeps/hyperband_stopping.py``, sweeps 0.3.0) as an
Optuna pruner, so that a spec saying W&B hyperband gets W&B's decisions on Optuna.

This module imports only the standard library and optuna: its source can be copied verbatim
into generated stand-alone Optuna scripts. The rule itself, :func:`wandb_stops`, and the
bands, :func:`hyperband_bands`, are engine-free (standard library only): every engine's W&B
hyperband calls them.

W&B's rule, which :class:`WandbHyperbandPruner` applies at every report:

* The iteration is the position of a value in the run's list of finite values of the metric
  (1-based), not the step it was logged at. The pruner reads a trial's intermediate values
  in step order, non-finite ones left out; sweepspec reports them at ``step = count``.
* Bands: :func:`hyperband_bands`, from ``max_iter`` down by ``eta`` (``s`` times, while
  ``>= 1``; ``max_iter`` itself is never a band) or from ``min_iter`` up (100 bands).
* At band ``b`` the threshold is ``sorted(values)[int((1 / eta) * n)]`` over the ``b``-th
  value of every trial of the study that has at least ``b`` values, in any state (running,
  finished, pruned, failed), the trial being decided included. Values are negated when the
  study maximises.
* A trial is stopped when its value exceeds the threshold of the highest band it has
  reached: with ``strict`` its value at that band, else its best value so far. This is
  recomputed at every report, so a trial that passed a band can be stopped later at the
  same band when the threshold there has tightened.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["WandbHyperbandPruner", "hyperband_bands", "wandb_stops"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def hyperband_bands(
    *,
    min_iter: int | None = None,
    max_iter: int | None = None,
    s: float | None = None,
    eta: float = 3,
) -> list[int]:
    """The iterations at which W&B's hyperband stops runs: from ``max_iter`` (which wins when
    ``max_iter`` and ``s`` are given) down by ``eta``, else from ``min_iter`` (default 1) up.

    The ``min_iter`` form has W&B's 100 bands, fewer when ``min_iter * eta**k`` leaves the
    floats (W&B raises there; no run reaches such a band).
    """
    bands: list[int] = []
    if max_iter is not None and s is not None:
        band: float = max_iter
        for _ in range(int(s)):
            band /= eta
            if band < 1:
                break
            bands.append(int(band))
        return sorted(bands)
    band = min_iter or 1
    for _ in range(100):
        if math.isinf(band):
            break
        bands.append(int(band))
        band *= eta
    return bands


def wandb_stops(
    own: Sequence[float],
    histories: Sequence[Sequence[float]],
    bands: Sequence[int],
    eta: float,
    strict: bool,
) -> bool:
    """W&B's decision for one run, engine-free: whether ``stop_runs`` stops the run whose
    finite values of the metric are ``own`` (in order, negated when the goal is maximize),
    given ``histories``, the same for every run of the sweep in any state, ``own`` included.
    ``bands`` sorted. Every engine's early termination for W&B hyperband calls this."""
    band = max((b for b in bands if b <= len(own)), default=None)
    if band is None:
        return False
    values = [h[band - 1] for h in histories if len(h) >= band]
    threshold = sorted(values)[int(1.0 / eta * len(values))]
    value = own[band - 1] if strict else min(own)
    return value > threshold


class WandbHyperbandPruner(optuna.pruners.BasePruner):
    """Stop a trial where W&B's hyperband (``early_terminate: {type: hyperband}``) stops a run.

    Give the bands as W&B does, ``min_iter`` or ``max_iter`` and ``s``, or as a list of
    ``bands``. Report the metric at ``step`` = the 1-based count of values reported so far.

    Args:
        min_iter: the first band; later bands are ``int(min_iter * eta**k)``.
        max_iter: with ``s``: the bands are ``max_iter / eta**k`` for k in 1..s, while >= 1.
        s: the number of bands below ``max_iter``.
        eta: the factor between bands, > 1; W&B keeps runs up to rank ``int(n / eta)``.
        strict: compare a trial's value at the band (W&B's default) rather than its best
            value so far.
        bands: the bands themselves (instead of ``min_iter`` / ``max_iter``).
    """

    def __init__(
        self,
        *,
        min_iter: int | None = None,
        max_iter: int | None = None,
        s: float | None = None,
        eta: float = 3,
        strict: bool = True,
        bands: Sequence[int] | None = None,
    ) -> None:
        if not eta > 1:
            raise ValueError(f"`eta > 1` must hold, but got eta={eta}.")
        forms = [bands is not None, min_iter is not None, max_iter is not None or s is not None]
        if sum(forms) != 1:
            raise ValueError(
                "Give exactly one of `bands`, `min_iter`, or `max_iter` with `s`, but got "
                f"bands={bands}, min_iter={min_iter}, max_iter={max_iter}, s={s}."
            )
        if (max_iter is None) != (s is None):
            raise ValueError(f"`max_iter` and `s` go together, but got max_iter={max_iter}, s={s}.")
        if min_iter is not None and min_iter < 1:
            raise ValueError(f"`min_iter >= 1` must hold, but got min_iter={min_iter}.")
        if bands is None:
            bands = hyperband_bands(min_iter=min_iter, max_iter=max_iter, s=s, eta=eta)
        if not bands or min(bands) < 1:
            raise ValueError(
                f"There must be at least one band, each >= 1, but got bands={list(bands)} "
                f"(max_iter={max_iter}, s={s}, eta={eta}): increase max_iter or s, or "
                "lower eta."
            )
        self.bands = sorted(int(b) for b in bands)
        self.eta = eta
        self.strict = strict
        self._finished: dict[tuple[str, int], list[float]] = {}

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether W&B's ``stop_runs`` would stop ``trial`` now, given every trial of
        ``study``."""
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        own = _history(trial, sign)
        if not any(b <= len(own) for b in self.bands):
            return False  # below the first band: no need to read the other trials
        histories = self._histories(study, trial.number, own)
        return wandb_stops(own, histories, self.bands, self.eta, self.strict)

    def _histories(self, study: optuna.Study, number: int, own: list[float]) -> list[list[float]]:
        """Every trial's finite values in step order (``own`` for the trial being decided);
        a finished trial's are read once."""
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        out = [own]
        for other in study.get_trials(deepcopy=False):
            if other.number == number:
                continue
            key = (study.study_name, other.number)
            history = self._finished.get(key)
            if history is None:
                history = _history(other, sign)
                if other.state in _FINISHED:
                    self._finished[key] = history
            out.append(history)
        return out


def _history(trial: FrozenTrial, sign: float) -> list[float]:
    """The trial's finite intermediate values in step order, times ``sign``."""
    values = trial.intermediate_values
    return [sign * values[step] for step in sorted(values) if math.isfinite(values[step])]
