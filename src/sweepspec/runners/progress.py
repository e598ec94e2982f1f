"""Progress on stderr: a tqdm bar on a terminal, one plain line per trial otherwise.

Both show the finished trials against the trial budget, how many were stopped early or
failed, and the best value so far.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from ..redact import redact
from .budget import Tally

__all__ = ["Progress"]


def _format(value: float) -> str:
    return f"{value:.6g}"


class Progress:
    """``total`` is the trial budget (None when unbounded); ``metric`` names the objective
    in the best-value text. ``tty`` defaults to whether ``stream`` is a terminal."""

    def __init__(
        self,
        name: str,
        total: int | None,
        metric: str | None,
        stream: IO[str] | None = None,
        tty: bool | None = None,
    ) -> None:
        self.name = name
        self.stream = stream or sys.stderr
        self.total = total
        self.metric = metric or "value"
        self.tty = tty if tty is not None else _isatty(self.stream)
        self.bar: Any = None

    def trial(
        self,
        number: int,
        state: str,
        metrics: dict[str, float],
        tally: Tally,
        error: str | None = None,
    ) -> None:
        """One trial finished; ``tally`` counts the storage after it."""
        if self.bar is None:
            self.write(
                f"trial {number} {state}{self._detail(state, metrics, error)} | "
                f"{self._summary(tally)}"
            )
        self.update(tally)

    def _detail(self, state: str, metrics: dict[str, float], error: str | None) -> str:
        if state == "FAIL":
            return f": {error}" if error else ""
        value = metrics.get(self.metric)
        return f" {self.metric}={_format(value)}" if value is not None else ""

    def _summary(self, tally: Tally) -> str:
        done = f"{tally.finished}/{self.total}" if self.total else f"{tally.finished}"
        text = f"{done} finished, {tally.pruned} stopped early, {tally.failed} failed"
        return text + self._best(tally)

    def _best(self, tally: Tally) -> str:
        if tally.best is None or tally.best.values is None:
            return ""
        return f", best {self.metric}={_format(tally.best.values[0])} (trial {tally.best.number})"

    def update(self, tally: Tally) -> None:
        """Show ``tally``; the bar starts at the first update (at the trials already done)."""
        if self.bar is None and self.tty:
            self.bar = _tqdm(self.name, self.total, tally.finished, self.stream)
            self.tty = self.bar is not None
        if self.bar is None:
            return
        self.bar.n = tally.finished
        best = tally.best.values[0] if tally.best and tally.best.values else None
        self.bar.set_postfix_str(
            f"stopped early {tally.pruned}, failed {tally.failed}"
            + (f", best {self.metric}={best:.4g}" if best is not None else ""),
            refresh=False,
        )
        self.bar.refresh()

    def write(self, line: str) -> None:
        """A line on stderr that does not break the bar."""
        self.echo(line, "err")

    def echo(self, line: str, stream: str) -> None:
        """A line of a trial's output (``out`` or ``err``), credentials redacted."""
        line = redact(line)
        target = sys.stdout if stream == "out" else self.stream
        if self.bar is not None:
            self.bar.write(line, file=target)
        else:
            target.write(line + "\n")
            target.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.tty = False


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _tqdm(name: str, total: int | None, initial: int, stream: IO[str]) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # plain lines, then
        return None
    return tqdm(
        total=total,
        initial=initial,
        desc=name,
        unit="trial",
        file=stream,
        dynamic_ncols=True,
        leave=True,
    )
