from __future__ import annotations

import compileall
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import sweepspec

# Ray (the ray engine's tests) binds its local cluster to 127.0.0.1, not to this machine's
# network address: read when ray is first imported
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

RAY = "ray_cluster"  # the fixture below
# The test files whose tests ask for it: under xdist each is run whole by one worker, the two
# one after the other (the compiler's Ray tests come last in it, the engine's first), so that
# worker starts Ray once (pytest_xdist_make_scheduler below)
RAY_FILES = ("tests/compiler/test_ray.py", "tests/runners/test_ray.py")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as a terminal gives it, in this process and so in every process it starts
    (xdist's workers, the ``sweepspec run`` processes that the Ctrl-C tests interrupt). A
    shell without job control starts a background job (``pytest -n 2 ... &`` in a script or
    a tool's shell) with SIGINT ignored, as POSIX asks; Python then keeps it ignored instead
    of installing the handler that raises KeyboardInterrupt, and every process it starts
    inherits that. (The suite's clean-clone runs were started so: the first test of each
    worker found SIGINT ignored.)"""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not hasattr(config, "workerinput"):  # (pytest itself, or xdist's controller)
        compile_package()


def compile_package() -> None:
    """The package's bytecode written once, before any process of the suite imports it. An
    editable install has none from pip, and where PYTHONDONTWRITEBYTECODE is set (as on
    the machines this suite runs on), every `sweepspec` process a test starts compiled the
    package again: 0.2 s of each (compileall writes it whatever that variable says)."""
    compileall.compile_dir(Path(sweepspec.__file__).parent, quiet=1)


@pytest.fixture(autouse=True)
def _sigint_as_python_sets_it(request: pytest.FixtureRequest) -> Any:
    """Each test starts with Ctrl-C's handler as Python sets it, and leaves it so: a test,
    fixture or hook that changes it (a library's handler, or ``SIG_IGN``, which the
    processes started after it inherit) is an error of the test before or after which it
    is found; it is put back, so that the tests after it are not broken too."""
    _python_sigint(f"before {request.node.nodeid}")
    yield
    _python_sigint(f"after {request.node.nodeid}")


def _python_sigint(when: str) -> None:
    found = signal.getsignal(signal.SIGINT)
    if found is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pytest.fail(
            f"SIGINT's handler was {found!r} {when} (put back: the processes that the tests "
            "after it start would inherit it)",
            pytrace=False,
        )


@pytest.fixture
def ray_cluster() -> str:
    """A real local Ray (2 CPUs) in this process; its GCS address, for runs in other
    processes to join with ``--ray-address``. Started by the first test that asks for it and
    kept for the tests that ask for it right after (starting Ray takes seconds, more on a
    loaded machine); shut down after the last of them (:func:`pytest_runtest_teardown`), so
    no other test runs beside it."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    return str(ray.get_runtime_context().gcs_address)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest without xdist does not know it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``--dist loadgroup`` (pyproject's addopts): xdist's own scheduling of it, with
    the tests of :data:`RAY_FILES` as one group. (Not with ``xdist_group`` marks: xdist 3.8
    adds the group to a test's ``_nodeid``, which pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class RayTogether(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.split("::", 1)[0] in RAY_FILES:
                return RAY
            return str(super()._split_scope(nodeid))

    return RayTogether(config, log)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Shut the shared Ray down after the last test in a row that asks for it."""
    if RAY in getattr(item, "fixturenames", ()) and RAY not in getattr(
        nextitem, "fixturenames", ()
    ):
        ray: Any = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a (dedented) file into the test's folder, ``sweep.yaml`` unless named; return
    its path."""

    def write(text: str, name: str = "sweep.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def sweep_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (engine state goes to ./.sweepspec there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# Runs the code (argv[1]) and prints, as the last line of stdout, the top-level names of the
# modules it imported: those in sys.modules afterwards that were not there before it ran.
_LIST_IMPORTS = """
import json, sys
before = set(sys.modules)
exec(compile(sys.argv[1], "<code>", "exec"), {"__name__": "__main__"})
print()
print(json.dumps(sorted({name.split(".")[0] for name in set(sys.modules) - before})))
"""


@pytest.fixture
def imported_modules() -> Callable[..., set[str]]:
    """``imported_modules(code, cwd=None)``: run ``code`` in a fresh interpreter (in ``cwd``)
    and return the top-level names of the modules it imported. The code may assert; if it
    fails, so does the test, with its stderr."""

    def run(code: str, cwd: Path | None = None) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-c", _LIST_IMPORTS, code], cwd=cwd, capture_output=True, text=True
        )
        assert done.returncode == 0, f"the code failed:\n{done.stderr}"
        return set(json.loads(done.stdout.splitlines()[-1]))

    return run


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(extras: frozenset[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions that ``pip install 'sweepspec[EXTRAS]'`` pulls in: the
    core's requirements and those of each extra, followed with the extras they name (an
    extra naming another of sweepspec's, ``psycopg[binary]``)."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo, done = [("sweepspec", extras)], set()
    while todo:
        name, wanted = todo.pop()
        if (_key(name), wanted) in done:
            continue
        done.add((_key(name), wanted))
        dist = seen.setdefault(_key(name), importlib.metadata.distribution(name))
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in wanted or {""}
            ):
                todo.append((req.name, frozenset(req.extras)))
    return [dist for key, dist in seen.items() if key != "sweepspec"]


def _installed(root: Path, extras: frozenset[str]) -> Path:
    """A fresh virtual environment holding sweepspec and what its core and ``extras``
    require, nothing else: the same installed files as this environment's, linked (no index,
    no network, a few seconds). Its Python."""
    venv.create(root, with_pip=False, symlinks=True)
    site = next(root.glob("lib/python3*/site-packages"))
    for dist in _closure(extras):
        for top in {
            f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")
        }:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    (site / "sweepspec").symlink_to(Path(sweepspec.__file__).parent)
    return root / "bin" / "python"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``installed(*extras)``: the Python of an environment as ``pip install
    'sweepspec[EXTRAS]'`` makes it (``installed()``: the core only), made once per session."""
    made: dict[frozenset[str], Path] = {}

    def python(*extras: str) -> Path:
        key = frozenset(extras)
        if key not in made:
            name = "-".join(sorted(key)) or "core"
            made[key] = _installed(tmp_path_factory.mktemp(f"venv-{name}") / "venv", key)
        return made[key]

    return python


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], str]:
    """``mlflow_store(path)``: a real MLflow SQLite store at ``path``, empty as MLflow leaves
    a new one, and its URI. A copy of one that MLflow made once per session (creating its
    tables and running its migrations takes seconds each time, a quarter of a minute on a
    loaded machine); MLflow finds its schema current and uses it as it is."""
    made: list[Path] = []

    def store(path: Path) -> str:
        if not made:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            folder = tmp_path_factory.mktemp("mlflow-store")
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            SqlAlchemyStore(uri, str(folder)).engine.dispose()  # type: ignore[no-untyped-call]
            made.append(folder / "mlflow.db")
        shutil.copyfile(made[0], path)
        return f"sqlite:///{path}"

    return store
