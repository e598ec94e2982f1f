"""One module per subcommand, each exposing one plain function."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..spec import Spec


def load_spec(path: str) -> Spec | None:
    """The valid spec at ``path``; else None, after printing its errors as ``validate`` does."""
    from ..redact import redact
    from ..spec import check

    checked = check(path)
    if checked.spec is None:
        for finding in checked.findings:
            if finding.level == "error":
                sys.stderr.write(redact(finding.format()) + "\n")
    return checked.spec


EXTRAS: dict[str, tuple[str, str]] = {
    "optuna": ("Optuna", "optuna"),
    "mlflow": ("MLflow", "mlflow"),
    "wandb": ("W&B", "wandb"),
    "sweeps": ("W&B's sweeps", "wandb"),
    "scipy": ("SciPy", "analysis"),
    "matplotlib": ("matplotlib", "analysis"),
    "sklearn": ("scikit-learn", "analysis"),
}
"""Module -> (what it is, the extra that installs it): ``pip install sweepspec`` installs only
the core, which validates and compiles for W&B."""


def needs_extra(module: str, what: str) -> str:
    """The one line that says ``what`` needs ``module``, and how to install it."""
    name, extra = EXTRAS[module]
    return f"{what} needs {name}: pip install 'sweepspec[{extra}]'"


def require(module: str, what: str) -> None:
    """Refuse ``what`` in one line when ``module`` (an extra's) is not installed."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        from ..cli import SweepspecError

        raise SweepspecError(needs_extra(module, what))


def emit(text: str) -> None:
    """Write ``text`` to stdout now; a stdout that cannot take it (a full disk, ``> /dev/full``,
    a closed pipe) is one error line, exit 1, instead of a traceback at exit."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        _discard_stdout()
        from ..cli import SweepspecError

        raise SweepspecError(f"cannot write to stdout: {exc.strerror or exc}") from None


def _discard_stdout() -> None:
    """Point stdout's file descriptor at the null device, so that the interpreter's last
    flush of what could not be written does not fail again at exit."""
    import os

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (captured output): nothing is flushed at exit
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)
