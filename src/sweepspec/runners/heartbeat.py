"""A running trial's heartbeat: proof, written to the sweep's state, that its worker lives.

A worker killed outright (SIGKILL, a lost machine) cannot mark its trial failed; the trial
would stay RUNNING and hold its place in the budget for ever. So while a trial runs, a thread
of its worker records a heartbeat every ``budget.heartbeat_interval`` seconds (each engine
says where: Optuna's own heartbeat table on a database, a trial attribute in a journal, an
event in the W&B engine's log), and every worker fails, before it counts the budget, the
running trials whose last heartbeat is older than ``budget.grace_period``. Their places are
then run again by the workers still alive.

This module is engine-neutral: it only calls what an engine gives it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Heartbeat"]


class Heartbeat:
    """Call ``beat`` now and then every ``interval`` seconds, in a thread, until
    :meth:`stop`. A beat that fails (a database that is briefly away) is tried again at the
    next one: the trial goes on either way, and only a worker that stays silent for the
    grace period loses its trial."""

    def __init__(self, beat: Callable[[], None] | None, interval: float) -> None:
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweepspec-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def follow(self, beat: Callable[[], None] | None) -> None:
        """Beat ``beat`` from now on, ``None``: no beat until the next :meth:`follow`. One
        thread serves a worker's trials one after another (starting a thread per trial
        costs more than a trivial trial). A beat under way is not waited for (see
        :meth:`stop`)."""
        self._beat = beat

    def stop(self) -> None:
        """No new beat starts after this. It does not wait for a beat under way (which may
        wait for a lock the caller holds): the engines make a late beat harmless."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            beat = self._beat
            if beat is None:
                continue
            try:
                beat()
            except Exception:  # noqa: BLE001 - the next beat tries again
                continue
