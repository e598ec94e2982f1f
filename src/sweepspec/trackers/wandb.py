"""W&B: one W&B run per trial, grouped by the sweep, offline unless the user is logged in.

The layout (read a run back from its ``.wandb`` file with :mod:`sweepspec.wandb_log`):

* project: ``tracking.project``, else the spec's ``project``, else the MLflow experiment's
  name (``tracking.experiment``, else ``name``, else the spec file's stem); entity:
  ``tracking.entity``, else the spec's ``entity``, else W&B's default.
* one run per trial, named ``<sweep>-<trial number>``, in the group ``<sweep>`` (the sweep's
  name); its config is the real parameter values, nested W&B parameters as nested dicts (as
  ``wandb.config`` is under a W&B sweep); its history is every reported value through
  ``run.log(row, step=step)`` at the trial's own steps (values reported at one step are one
  row; with ``seeds:`` keys are ``seed_<s>/<metric>``) and the time they were reported
  (``_timestamp``); its summary is the final metrics (with seeds: the aggregate by name and
  ``seed_<s>/<name>`` per seed) and ``sweepspec_state`` (``COMPLETE`` | ``PRUNED`` |
  ``FAIL``), ``sweepspec_trial`` (the number), ``sweepspec_sweep_id``, for a finished trial
  ``sweepspec_values`` (the objective values told to the engine), ``sweepspec_times`` (the
  trial's start and end, milliseconds since the epoch), and for a failure
  ``sweepspec_error``. A failed trial ends with exit code 1 (W&B shows it as failed); a
  trial stopped early ends with 0 and the tag ``early-stopped``: W&B's "killed" is a state
  only its server sets when it stops a run, and "failed" would say something else.
* mode: ``WANDB_MODE`` when set (``online`` without credentials is an error); otherwise
  online when W&B has credentials (``WANDB_API_KEY``, ``wandb login``'s netrc), else
  offline. Offline runs are written where W&B writes them, ``$WANDB_DIR/wandb`` or
  ``./wandb``: ``wandb sync --dry-run`` lists them and ``wandb sync`` uploads them.

The runs are written by a logger process of our own (``python -m sweepspec.trackers.wandb``)
fed one JSON line per trial: ``wandb.init`` costs a few tenths of a second, which then
overlaps the next trial, and the trials' own process never holds a W&B run, so a trial that
calls ``wandb.init()`` itself gets its own run, not ours (``wandb.init`` returns the active
run of its process). Each worker process of ``--workers N`` has its own logger. A trial
that W&B fails to log is a warning; the sweep goes on, and the engine's storage keeps it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from typing import IO, TYPE_CHECKING, Any

from . import Echo, SweepInfo, Tracker, TrialRecord

if TYPE_CHECKING:
    from ..analysis.table import KnownSweep, Table
    from ..spec import Spec

__all__ = [
    "LABEL",
    "SYNC_NOTE",
    "WandbSetupError",
    "WandbTracker",
    "history_rows",
    "make",
    "record_decision",
    "summary_of",
]

LABEL = "W&B"
SYNC_NOTE = "W&B's offline runs are uploaded with 'wandb sync'"
"""Why ``sweepspec sync`` has nothing to do: W&B keeps its offline runs itself."""

EXIT_CODE = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 1}
"""The exit code a trial's W&B run finishes with, by trial state."""
EARLY_STOPPED = "early-stopped"
"""The tag of a trial stopped early."""
_MAX_ERROR = 2000
_MODES = ("online", "offline", "shared", "disabled", "dryrun", "run")  # W&B's own


class WandbSetupError(Exception):
    """W&B cannot be used as set up (``WANDB_MODE=online`` without credentials, ...)."""


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, project: str | None = None, echo: Echo | None = None) -> None:
        self.project = project
        self.uri = None  # W&B's own settings say where runs go
        self._echo = echo or _stderr
        self.settings: dict[str, Any] = {}
        self._logger: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0
        self.logged = 0
        self.failures = 0
        self.mode = ""  # as the logger process found it: online, offline, disabled...
        self.folder = ""  # where W&B writes runs: $WANDB_DIR/wandb, else ./wandb
        self.dirs: list[str] = []

    # ---- set-up

    def start(self, sweep: SweepInfo) -> None:
        if importlib.util.find_spec("wandb") is None:
            raise ModuleNotFoundError("No module named 'wandb'", name="wandb")
        from ..spec import load
        from ..spec.paths import leaf_paths

        spec = load(sweep.spec_path)
        tracking = spec.tracking
        self.settings = {
            "project": (tracking.project if tracking else None)
            or spec.project
            or self.project
            or sweep.name,
            "entity": (tracking.entity if tracking else None) or spec.entity,
            "group": sweep.name,
            "sweep_id": sweep.sweep_id,
            "paths": {name: list(p) for name, p in leaf_paths(spec.parameters).items()},
        }
        self._start_logger(strict=True)

    def attach(self, settings: dict[str, Any]) -> None:
        self.settings = dict(settings)
        self._start_logger(strict=False)

    def worker_settings(self) -> dict[str, Any]:
        return dict(self.settings)

    def _start_logger(self, strict: bool) -> None:
        """Start the logger process and wait until W&B is set up there (or say why not)."""
        argv = [sys.executable, "-m", "sweepspec.trackers.wandb", json.dumps(self.settings)]
        self._logger = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C stops the sweep, not the logging of its trials
        )
        assert self._logger.stdout is not None
        first = self._logger.stdout.readline()
        reply = json.loads(first) if first.startswith("{") else {}
        if "ready" not in reply:
            self._logger.wait()
            self._logger = None
            why = reply.get("error") or "the W&B logger process stopped before it started"
            if strict:
                raise WandbSetupError(why)
            self._echo(f"sweepspec: warning: W&B logs nothing in this worker: {why}")
            return
        self.mode, self.folder = reply["mode"], reply["folder"]
        self._reader = threading.Thread(target=self._read, name="sweepspec-wandb", daemon=True)
        self._reader.start()

    # ---- trials

    def log_trial(self, record: TrialRecord) -> None:
        if self._logger is None:
            return
        assert self._logger.stdin is not None
        line = json.dumps(self._encode(record), default=repr)
        try:
            self._logger.stdin.write(line + "\n")
            self._logger.stdin.flush()
            self.sent += 1
        except OSError as exc:
            self._failed(record.number, f"the W&B logger process has stopped ({exc})")

    def _encode(self, record: TrialRecord) -> dict[str, Any]:
        return {
            "number": record.number,
            "params": record.params,
            "state": record.state,
            "rows": history_rows(record),
            "summary": summary_of(record, self.settings["sweep_id"]),
            "start": record.start_ms / 1000 if record.start_ms else None,
        }

    def _read(self) -> None:
        assert self._logger is not None and self._logger.stdout is not None
        for line in self._logger.stdout:
            if not line.startswith("{"):
                continue
            reply = json.loads(line)
            if "error" in reply:
                self._failed(reply["number"], reply["error"])
            else:
                with self._lock:
                    self.logged += 1
                    self.dirs.append(reply["dir"])

    def _failed(self, number: int, why: str) -> None:
        with self._lock:
            self.failures += 1
            first = self.failures == 1
        if first:
            self._echo(f"sweepspec: warning: W&B could not log trial {number}: {why}")

    # ---- the end

    def close(self, status: str = "FINISHED") -> None:
        logger, self._logger = self._logger, None
        if logger is None:
            return
        assert logger.stdin is not None
        try:
            logger.stdin.close()  # the logger writes what it was given, then stops
        except OSError:
            pass
        code = logger.wait()
        if self._reader is not None:
            self._reader.join()
            self._reader = None
        lost = self.sent - self.logged - self.failures
        if lost > 0:
            self._echo(
                f"sweepspec: warning: W&B did not log the last {lost} trials: its logger "
                f"process stopped with exit code {code} (they are in the engine's storage: "
                "sweepspec results)"
            )
        if self.failures > 1:
            self._echo(
                f"sweepspec: warning: W&B could not log {self.failures} trials "
                "(they are in the engine's storage: sweepspec results)"
            )

    def where(self) -> str | None:
        if self.mode in ("offline", "dryrun"):
            return (
                f"sweepspec: W&B runs are saved offline in {self.folder} (group "
                f"{self.settings['group']!r}); list them with 'wandb sync --dry-run', upload "
                "them with 'wandb sync' after 'wandb login'"
            )
        if self.mode in ("", "disabled"):
            return None
        return (
            f"sweepspec: runs are in W&B, project {self.settings['project']!r}, group "
            f"{self.settings['group']!r}"
        )


# --------------------------------------------------------------------------- what is logged


def history_rows(record: TrialRecord) -> list[tuple[int, dict[str, float]]]:
    """The trial's reported values as W&B history rows, by increasing step: every value
    reported at one step is one row (a key reported twice at a step keeps the later value),
    with ``_timestamp`` the time (seconds) of the row's last report."""
    rows: dict[int, dict[str, float]] = {}
    for point in sorted(record.history, key=lambda p: p.step):
        row = rows.setdefault(point.step, {})
        row[point.key] = point.value
        row["_timestamp"] = max(row.get("_timestamp", 0.0), point.timestamp_ms / 1000)
    return sorted(rows.items())


def summary_of(record: TrialRecord, sweep_id: str) -> dict[str, Any]:
    """The final metrics (with seeds: the aggregate by name and ``seed_<s>/<name>``), and
    the trial's state, number, sweep and, for a failure, error."""
    summary: dict[str, Any] = dict(record.metrics)
    for run in record.seeds or []:
        summary.update({f"seed_{run['seed']}/{k}": v for k, v in run["metrics"].items()})
    summary["sweepspec_state"] = record.state
    summary["sweepspec_trial"] = record.number
    summary["sweepspec_sweep_id"] = sweep_id
    if record.values is not None and record.state == "COMPLETE":
        summary["sweepspec_values"] = list(record.values)
    if record.start_ms:
        summary["sweepspec_times"] = [record.start_ms, record.end_ms]
    if record.error:
        summary["sweepspec_error"] = record.error[:_MAX_ERROR]
    return summary


# --------------------------------------------------------------------------- the logger


def serve(settings: dict[str, Any], lines: IO[str], out: IO[str]) -> int:
    """The logger process: set W&B up, say so on ``out``, then log one trial per line of
    ``lines`` until they end, answering each with its run's folder or the error."""
    try:
        mode = choose_mode()
        import wandb
        from wandb.sdk import wandb_setup

        found = wandb_setup.singleton().settings
    except WandbSetupError as exc:
        _answer(out, {"error": str(exc)})
        return 1
    except Exception as exc:
        _answer(out, {"error": _one_line(exc)})
        return 1
    _answer(out, {"ready": True, "mode": mode or found.mode, "folder": found.wandb_dir})
    for line in lines:
        trial = json.loads(line)
        try:
            folder = _log(wandb, settings, trial, mode)
        except Exception as exc:
            _answer(out, {"number": trial["number"], "error": _one_line(exc)})
        else:
            _answer(out, {"number": trial["number"], "dir": folder})
    return 0


def choose_mode() -> str | None:
    """W&B's mode for the trials' runs: ``WANDB_MODE`` when set, else online when W&B has
    credentials (None: W&B's own default), else ``offline``."""
    mode = os.environ.get("WANDB_MODE", "").strip()
    if mode and mode not in _MODES:
        raise WandbSetupError(
            f"'WANDB_MODE in {_MODES}' must hold, but got {mode!r} (unset it to log offline "
            "without credentials, online with them)"
        )
    if mode in ("offline", "dryrun", "disabled"):
        return mode
    if _has_credentials():
        return mode or None
    if mode:
        raise WandbSetupError(
            f"WANDB_MODE={mode} but W&B has no credentials: run 'wandb login' (or set "
            "WANDB_API_KEY), or unset WANDB_MODE to log offline"
        )
    return "offline"


def _has_credentials() -> bool:
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib import wbauth

    settings = wandb_setup.singleton().settings
    found = wbauth.authenticate_session(
        host=settings.base_url, source="sweepspec", prompt=False, update_session=False
    )
    return found is not None


def _log(wandb: Any, settings: dict[str, Any], trial: dict[str, Any], mode: str | None) -> str:
    from ..spec.paths import nest

    run = wandb.init(
        project=settings["project"],
        entity=settings["entity"],
        group=settings["group"],
        name=f"{settings['group']}-{trial['number']}",
        config=nest(trial["params"], settings["paths"]),
        tags=[EARLY_STOPPED] if trial["state"] == "PRUNED" else [],
        mode=mode,
        reinit="create_new",
        settings=wandb.Settings(
            console="off",
            silent=True,
            save_code=False,
            disable_git=True,
            x_disable_stats=True,
            x_disable_meta=True,
            x_save_requirements=False,
            x_start_time=trial["start"],
        ),
    )
    code = EXIT_CODE[trial["state"]]
    try:
        for step, row in trial["rows"]:
            run.log(row, step=step, commit=True)  # commit: before the summary below
        run.summary.update(trial["summary"])
    except BaseException:
        code = 1
        raise
    finally:
        run.finish(exit_code=code)
    return str(run.settings.sync_dir)


def _answer(out: IO[str], reply: dict[str, Any]) -> None:
    out.write(json.dumps(reply) + "\n")
    out.flush()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")


def _main(argv: list[str]) -> int:
    # wandb prints to stdout; the answers go on the real one
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return serve(json.loads(argv[0]), sys.stdin, out)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


def make(
    uri: str | None = None, experiment: str | None = None, echo: Echo | None = None
) -> WandbTracker:
    """The W&B tracker (``make_tracker``'s entry): the experiment is W&B's project; W&B
    takes no URI here (its own settings and ``WANDB_*`` variables say where)."""
    return WandbTracker(project=experiment, echo=echo)


def read_results(table: Table, spec: Spec, path: str, known: KnownSweep | None) -> None:
    """``sweepspec results --from wandb``: fill ``table`` with the sweep's runs from W&B's
    offline run files (:func:`sweepspec.analysis.wandb.read`)."""
    from ..analysis.wandb import read

    read(table, spec, path, known)


def record_decision(
    spec: Any, path: str, sweep_id: str, decision: dict[str, Any], echo: Echo
) -> None:
    """``sweepspec decide``: a run logged offline cannot be changed once it has finished, so
    say which run it is, and how to tag it once it is uploaded."""
    from ..analysis.wandb import find_run

    number = int(decision["trial"])
    found = find_run(sweep_id, number)
    if found is None:
        echo(
            f"sweepspec: W&B: no run of trial {number} under the W&B folder here; the "
            "decision is in the engine's storage ('sweepspec results' shows it)"
        )
        return
    folder, project, run_id = found
    echo(
        f"sweepspec: W&B: trial {number}'s run {run_id} is in {folder}; a run logged "
        "offline cannot be changed once it has finished, so the decision is in the engine's "
        "storage ('sweepspec results' shows it). Once 'wandb sync' has uploaded the run, "
        f"tag it with: run = wandb.Api().run('{project}/{run_id}'); "
        "run.tags.append('sweepspec-chosen'); run.notes = WHY; run.update()"
    )
