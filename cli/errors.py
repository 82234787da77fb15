"""How the ``toolgym`` command reports what a user got wrong: one ``error:`` line, exit code 2.

Three routes lead there, and this module holds all three (and Ctrl-C, below):

* Click's own usage errors (a bad option value, an option out of range, a missing or unknown
  option, an unknown command): :class:`OneLineErrors`, the root group, catches them in ``main``.
* toolgym's own errors and config validation errors raised inside a command: the
  :func:`cli_errors` decorator. A pydantic field that is also a parameter of the command is
  named as the option (``--tasks-per-world``), never as the Python keyword.
* A path the user gave that cannot be read or written: :func:`cli_errors` turns an ``OSError``
  that carries a file name into ``error: <the option's path>: <the OS reason>``, and
  :func:`check_writable` refuses an output path before any work is done (a training run or a
  synthesis must not fail at its end for a typo in ``--out``), leaving nothing behind.

Ctrl-C (SIGINT) during any command is one line too, ``error: interrupted`` (plus what a command
said with :func:`interrupt_hint`, e.g. that ``synth`` resumes), and exit code 130 (128 + SIGINT,
the shell's convention). :class:`OneLineErrors` installs the handler for the command's run: in
the command's process it raises ``KeyboardInterrupt`` and records the hit, so whatever the
interrupt turns into on its way out (Typer's exit 130, DuckDB's "Query interrupted", a failed
rollback) ends as that line; in processes forked from it (the synthesis pool's workers, which a
terminal's Ctrl-C reaches too, since it signals the whole foreground process group) it does
nothing, so no worker prints a traceback: the parent stops them when it unwinds. A command that
handles the interrupt itself and returns (``play`` at its prompt, ``serve``, whose normal stop
is Ctrl-C) exits as it chooses.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import typer
import typer.core
from pydantic import ValidationError

from toolgym.errors import ConfigError, ToolgymError, one_line

# Newer Typer vendors Click as ``typer._click``, older Typer uses Click itself: take the exception
# classes from the module that defines the public ``typer.BadParameter``, so both work.
_click_errors: Any = importlib.import_module(typer.BadParameter.__module__)
_click_globals: Any = importlib.import_module(typer.BadParameter.__module__.rpartition(".")[0] + ".globals")
_ABORTS = (typer.Abort, getattr(_click_errors, "Abort", typer.Abort))
_NO_ARGS_IS_HELP = getattr(_click_errors, "NoArgsIsHelpError", ())


class OneLineErrors(typer.core.TyperGroup):
    """The root command group: Click's usage errors become one ``error:`` line on stderr.

    Typer would print them as a multi-line box. Every command and sub-command is parsed under
    this group's ``main``, so one override covers the whole command tree (and ``CliRunner``).
    Without arguments a group still prints its help.
    """

    def main(  # noqa: D102
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        run = functools.partial(
            super().main, args, prog_name, complete_var, windows_expand_args=windows_expand_args, **extra
        )
        if not standalone_mode:
            return run(standalone_mode=False)
        with _Interrupts() as interrupts:
            try:
                rv = run(standalone_mode=False)
            except _NO_ARGS_IS_HELP as exc:
                typer.echo(exc.format_message())  # the group's help text
                sys.exit(exc.exit_code)
            except _click_errors.ClickException as exc:
                typer.echo(f"error: {usage_line(exc)}", err=True)
                sys.exit(exc.exit_code)
            except _ABORTS:
                interrupts.exit_if_hit()
                typer.echo("error: aborted", err=True)
                sys.exit(1)
            except KeyboardInterrupt:
                interrupts.exit()
            except Exception:
                interrupts.exit_if_hit()  # what a Ctrl-C turned into on its way out
                raise
            if rv == _INTERRUPTED:  # Typer's answer to a KeyboardInterrupt
                interrupts.exit()
        sys.exit(rv if isinstance(rv, int) else 0)


_INTERRUPTED = 130  # 128 + SIGINT: the shell's exit code for a command stopped by Ctrl-C
_hint: list[str] = []  # what the running command adds to "error: interrupted"


def interrupt_hint(text: str) -> None:
    """Say what an interrupted run of the current command leaves behind (one clause, no period).

    Printed after ``error: interrupted; `` if Ctrl-C stops the command after this call.
    """
    _hint[:] = [text]


class _Interrupts:
    """The SIGINT handler of one command run (see the module docstring); restores the old one."""

    def __init__(self) -> None:
        self.hit = False
        self._pid = os.getpid()
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _Interrupts:
        _hint.clear()
        if threading.current_thread() is threading.main_thread():  # signal.signal works only there
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked worker: its parent stops it
            return
        self.hit = True
        raise KeyboardInterrupt

    def exit(self) -> None:
        """Print ``error: interrupted`` (and the command's hint) and exit with code 130."""
        typer.echo("error: interrupted" + "".join(f"; {h}" for h in _hint), err=True)
        sys.exit(_INTERRUPTED)

    def exit_if_hit(self) -> None:
        """:meth:`exit` if Ctrl-C was pressed during the run."""
        if self.hit:
            self.exit()


def usage_line(exc: Any) -> str:
    """A Click error (``ClickException``) as one line: the message, then where the command's help is."""
    text = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    return f"{text} (see '{ctx.command_path} --help')" if ctx is not None else text


F = TypeVar("F", bound=Callable[..., Any])
_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def parse_range(text: str) -> tuple[int, int]:
    """``"3"`` or ``"1-5"`` as an inclusive (lo, hi).

    Exactly one number or two joined by one ``-``, ASCII digits, nothing else (no spaces, signs
    or a missing end: ``"3-"`` is refused, not read as 3).

    Raises:
        ConfigError: Any other text, or bounds outside ``1 <= lo <= hi <= 5``.
    """
    match = _RANGE.fullmatch(text)
    if match is None:
        raise ConfigError(f"difficulty must look like 3 or 1-5, got {text!r}")
    a = int(match[1])
    b = int(match[2]) if match[2] is not None else a
    if not 1 <= a <= b <= 5:
        raise ConfigError(f"difficulty range must satisfy 1 <= lo <= hi <= 5, got {text!r}")
    return a, b


def option_name(param: str) -> str:
    """How the running command spells a parameter: ``json_out`` -> ``--json``, ``dataset`` -> ``DATASET``.

    Read from the current Click context; outside one, ``tasks_per_world`` -> ``--tasks-per-world``.
    """
    ctx = _click_globals.get_current_context(silent=True)
    for p in ctx.command.params if ctx is not None else ():
        if p.name == param:
            if p.param_type_name == "argument":
                return str(p.human_readable_name)
            return max(p.opts, key=lambda o: (o.startswith("--"), len(o)))
    return "--" + param.replace("_", "-")


def _validation_line(exc: ValidationError, params: dict[str, Any]) -> str:
    """A config validation error as one line, naming fields that are options as options."""
    parts = []
    for e in exc.errors()[:3]:
        loc = [str(x) for x in e["loc"]]
        if loc and loc[0] in params:
            loc[0] = option_name(loc[0])
        where = ".".join(loc)
        msg = e["msg"].removeprefix("Value error, ")  # pydantic's wrapper of a validator's ValueError
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or one_line(exc)


def _os_error_line(exc: OSError, params: dict[str, Any]) -> str | None:
    """``<path the user gave>: <OS reason>`` for an OSError about one of the command's paths.

    The error may name the path itself or a directory on its way (``mkdir /proc/nope`` for
    ``--out /proc/nope/x.duckdb``); the line names the user's path and, when they differ, the
    one the OS refused. ``None`` when the error concerns no path of the command (a bug: re-raise).
    """
    if exc.filename is None:
        return None
    failed = os.path.abspath(os.fsdecode(exc.filename))
    reason = exc.strerror or type(exc).__name__
    for name, value in params.items():
        if not isinstance(value, Path):
            continue
        given = os.path.abspath(value)
        if failed == given:
            return f"{option_name(name)} {value}: {reason}"
        if given.startswith(failed + os.sep) or failed.startswith(given + os.sep):
            return f"{option_name(name)} {value}: {reason} ({failed})"
    return None


def cli_errors(fn: F) -> F:
    """Turn toolgym's errors, config validation errors and path errors into one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            typer.echo(f"error: {_validation_line(exc, kwargs)}", err=True)
            raise typer.Exit(2) from None
        except ToolgymError as exc:
            typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            line = _os_error_line(exc, kwargs)
            if line is None:
                raise
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def check_writable(path: Path, option: str) -> None:
    """Refuse an output path that cannot be created, before any work; create nothing.

    The nearest existing ancestor must be a directory in which a file can be created (probed
    with a temporary file, so root on a read-only or virtual file system such as ``/proc`` is
    refused too); an existing ``path`` must be writable.

    Args:
        path: The output file or directory the command will create or replace.
        option: The option it came from, e.g. ``--out`` (named in the error).

    Raises:
        ConfigError: With the path and the OS reason.
    """
    target = Path(os.path.abspath(path))
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{option} {path}: {ancestor} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as exc:
        missing = "" if ancestor == target.parent else f"; {target.parent} does not exist and cannot be made"
        raise ConfigError(
            f"{option} {path}: cannot create files in {ancestor}: {exc.strerror or exc}{missing}"
        ) from None
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(f"{option} {path}: not writable")
