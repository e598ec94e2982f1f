"""The console script's entry point: one error policy, and a click-free path for validate.

Exit codes: 0 success, 1 invalid input or failed checks, 2 usage error, 130 interrupted
(Ctrl-C; 143 on SIGTERM, 129 on SIGHUP), 3 an unexpected error (a bug: the message says
where the details are).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn


def _fast_validate(argv: list[str]) -> int | None:
    """``validate`` without importing click (a sixth of its run time), for pre-commit.

    Only the plain forms are taken here: ``validate [--strict] [--format text|json] FILE...``.
    Anything else (``--help``, a typo, an option after ``--``) returns None and goes to click,
    which stays the one definition of the interface.
    """
    if not argv or argv[0] != "validate":
        return None
    strict, fmt, files = False, "text", []
    rest = iter(argv[1:])
    for arg in rest:
        if arg == "--strict":
            strict = True
        elif arg == "--format" or arg.startswith("--format="):
            fmt = arg.split("=", 1)[1] if "=" in arg else next(rest, "")
            if fmt not in ("text", "json"):
                return None
        elif arg.startswith("-"):
            return None
        else:
            files.append(arg)
    if not files:
        return None
    from .commands.validate import validate

    return validate(files, strict=strict, fmt=fmt)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (testable as a function)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        fast = _fast_validate(args)
        if fast is not None:
            return fast
        from .cli import cli

        rv = cli.main(args=args, prog_name="sweepspec", standalone_mode=False)
    except KeyboardInterrupt as exc:
        sys.stderr.write("Interrupted.\n")
        return _interrupted_code(exc)
    except Exception as exc:
        return _handle(exc, args)
    return rv if isinstance(rv, int) else 0


def entry() -> NoReturn:
    """The console script, and ``python -m sweepspec``: :func:`main`, then :func:`leave`
    when sweepspec is the program; when something else runs it and waits for it to return
    (a profiler, coverage, a debugger: ``python -m cProfile -m sweepspec``), the usual
    ``SystemExit``, after which that writes what it gathered."""
    code = main()
    if _the_program(sys._getframe(1)):
        leave(code)
    sys.exit(code)


def _the_program(caller: FrameType) -> bool:
    """Whether the interpreter itself runs ``caller`` (the console script, or ``python -m``
    through ``runpy``), with no tracer or profiler set."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return False
    frame = caller.f_back
    while frame is not None:
        if frame.f_globals.get("__name__") != "runpy":
            return False
        frame = frame.f_back
    return True


def leave(code: int) -> NoReturn:
    """Exit with ``code`` as the interpreter does (its threads waited for, its ``atexit``
    functions run: the trackers', the trial process's reaping, the logs' flushing; the
    standard streams flushed), without the interpreter's teardown of every module and object
    it holds, which cost a run 0.3 to 0.7 s after its work (SQLAlchemy, Optuna, pydantic,
    numpy), and nothing of what a run writes, which is closed or flushed before. A thread
    still running that is not a daemon (the interpreter would wait for it), or a standard
    stream that cannot be flushed (a closed pipe: the interpreter's message and exit code for
    it), gets the interpreter's own exit."""
    import atexit
    import threading

    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except Exception:
        sys.exit(code)
    os._exit(code)


def _handle(exc: Exception, args: list[str]) -> int:
    """Expected errors exit with one clear line; anything else is a bug (exit 3)."""
    import click

    from .compiler.base import CompileError

    if isinstance(exc, CompileError):  # the spec cannot be said on the target: bad input
        click.echo(f"Error: {exc}", err=True)
        return 1
    missing = _missing_extra(exc)
    if missing is not None:
        from .commands import needs_extra

        click.echo(f"Error: {needs_extra(missing, ' '.join(args[:1]) or 'sweepspec')}", err=True)
        return 1
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    if isinstance(exc, click.exceptions.Abort):
        click.echo("Aborted.", err=True)
        return _interrupted_code(exc.__cause__ or exc.__context__)
    if isinstance(exc, click.ClickException):
        exc.show()
        return exc.exit_code
    return _internal_error(exc)


def _interrupted_code(exc: BaseException | None) -> int:
    """130 for Ctrl-C; 128 + the signal for SIGTERM and SIGHUP, which stop a run as Ctrl-C
    does (they carry it as ``signum``)."""
    signum = getattr(exc, "signum", None)
    return 128 + signum if isinstance(signum, int) else 130


def _missing_extra(exc: Exception) -> str | None:
    """The extra's module whose absence ``exc`` is (a core-only install), else None."""
    from .commands import EXTRAS

    if isinstance(exc, ModuleNotFoundError) and exc.name is not None:
        top = exc.name.split(".")[0]
        return top if top in EXTRAS else None
    return None


def _internal_error(exc: BaseException) -> int:
    import tempfile
    import traceback

    from .redact import redact

    with tempfile.NamedTemporaryFile(
        "w", prefix="sweepspec-crash-", suffix=".log", delete=False
    ) as fh:
        fh.write(redact("".join(traceback.format_exception(exc))))
    sys.stderr.write(
        f"sweepspec: internal error: {type(exc).__name__}: {redact(str(exc))}\n"
        f"This is a bug in sweepspec; the details are in {fh.name}\n"
    )
    return 3


if __name__ == "__main__":  # pragma: no cover
    entry()
