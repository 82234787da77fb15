"""The code-interpreter toolset: a stateful sandboxed Python, file listing and paged reading, submit.

**The sandbox opens lazily.** An episode's :class:`CodeContext` holds the world's rendered files
and nothing else until the first ``run_python`` call, which opens one local sandbox session
(bubblewrap; see :mod:`toolgym.sandbox`) with those files in its workspace and starts one
warm Python kernel in it. Gate episodes that never run code (null, bluff, perturbed) therefore
cost nothing, and every episode that does gets its own sandbox: episodes never share variables
or files. The one exception is synthesis (:func:`toolgym.synth.family.episodes_trusted`, set by
``Family.synthesis_scope`` around a world's candidates): the reference and the gate
agents run the generator's own code, so their episodes take turns in one warm sandbox per worker
process, renewed between episodes (:class:`WarmSandbox`: a fresh interpreter forked in it, the
workspace emptied and refilled), which shows each episode what a new sandbox would. The
process's backend keeps one spare sandbox launched ahead (``LocalConfig.spare_kernels``), so
the first ``run_python`` of an episode mostly finds its kernel already started: a fresh,
never-used sandbox that receives this episode's files. The env calls :meth:`CodeContext.close`
at episode end, reset and close; it kills the kernel and removes the workspace.

**Errors are results, not tool errors.** An exception in the policy's code, a timeout (more
CPU time than the call's budget, or a sleep past the wall-clock backstop: :func:`call_limits`), an
output flood or a memory error is what the code *did*, so ``run_python`` returns it as a normal
result: ``status`` (``ok``, ``error``, ``timeout``, ``output_limit``, ``oom``, ``killed``,
``sandbox_error``), ``stdout``, ``stderr`` (the traceback) and a ``note`` when the interpreter
was restarted and its variables lost. :class:`~toolgym.envs.tools.ToolError` is kept for calls
the tool cannot serve at all (empty code, a missing file, a page that does not exist, no
sandbox on this machine), so an error observation always means "fix your call".

**Files.** Before the sandbox opens, ``list_files``/``read_file`` serve the world's files; once
it is open they read the workspace itself, so files the policy's code wrote are visible too.
A file name follows the one name rule of :mod:`toolgym.envs.naming` (NFC, surrounding
whitespace trimmed, case-sensitive; a miss names the closest file). ``read_file`` pages like
every list tool: a page past the end is an error saying how many pages the file has.

**Answers are strictly typed** (:mod:`toolgym.envs.strict`): one ``submit`` per answer type,
whose schema rejects a boolean where a number is asked (``true`` is not ``1``), a string where
a number is asked, and ``3.0`` where an integer is asked ("write 3, not 3.0"); the rejection is
an error observation and the episode goes on.

**Pickling** (vector envs, checkpoints): a context pickles without its sandbox. A copy made
before the first ``run_python`` is exactly equivalent; a copy made after it starts with no
sandbox, and its next ``run_python`` opens a fresh one from the original files: variables and
files written by earlier cells are not carried over (the original keeps its own session).

``run_python`` is marked ``read``: it never changes the world the verifier sees. The workspace is
the episode's scratch copy, and code tasks are verified by their answer only.
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs import naming
from toolgym.envs.strict import Integer, Number, Page, Text
from toolgym.envs.tools import Tool, ToolError, as_tool, make_tool, tool
from toolgym.errors import ConfigError, SandboxError
from toolgym.sandbox import Backend, Limits, PythonKernel, Session, get_backend, pylibs
from toolgym.sandbox.base import clean_relpath
from toolgym.synth.family import episodes_trusted

PAGE_LINES = 50
MAX_LINE_CHARS = 1000
OUTPUT_CHARS = 4000  # per stream: the head and the tail are kept, the middle is cut
DEFAULT_TIMEOUT_S = 10.0  # a run_python call's CPU budget, seconds (tool_config "timeout_s")
WALL_FACTOR = 4.0  # the wall-clock backstop is WALL_FACTOR × the CPU budget + WALL_SLACK_S
WALL_SLACK_S = 5.0


def call_limits(cpu_budget_s: float) -> Limits:
    """The sandbox limits of a ``run_python`` call with a CPU budget of ``cpu_budget_s`` seconds.

    What decides a call is its **CPU time**, measured inside the sandbox by the kernel
    (:mod:`toolgym.sandbox.kernel`): a cell that needs 0.6 s of CPU fits a 1 s budget however
    loaded the host is, so the reward an RL loop sees does not change with load. The wall
    clock is only a backstop for calls that sleep or block, which use no CPU: ``4 × budget +
    5 s`` (45 s for the default 10 s). Decision: a factor of 4 lets a call that spends its
    whole budget keep its outcome while it gets at least a quarter of a core (2-core hosts
    running training beside synthesis were seen at load ~4); cells that use a fraction of
    the budget, as analysis cells do, survive proportionally heavier load. The 5 s cover the
    sandbox's start, which the same clock counts. A larger factor would hold every sleeping
    call that much longer: an RL episode that calls ``time.sleep`` waits out the backstop.

    Args:
        cpu_budget_s: CPU seconds per call (at least 0.1).

    Returns:
        ``Limits`` with ``cpu_s`` the budget and ``wall_s`` the backstop; the rest default.
    """
    return Limits(cpu_s=cpu_budget_s, wall_s=WALL_FACTOR * cpu_budget_s + WALL_SLACK_S)


_BACKENDS: dict[int, Backend] = {}  # one backend per process (it owns slot locks and a subreaper)


def backend() -> Backend:
    """This process's local sandbox backend (a forked child builds its own)."""
    pid = os.getpid()
    if pid not in _BACKENDS:
        _BACKENDS.clear()
        # One spare sandbox launched ahead: an episode's first run_python finds its kernel
        # (nearly) started, because it was launched during the episode before (LocalConfig).
        # numpy and pandas come from the project's dedicated, read-only library directory
        # (sandbox/pylibs.py; installed by `python -m toolgym.sandbox.pylibs`, which .ci/run runs).
        _BACKENDS[pid] = get_backend("local", spare_kernels=1, libs=pylibs.find())
    return _BACKENDS[pid]


class WarmSandbox:
    """One sandbox kept open across synthesis episodes: a forking kernel, renewed per episode.

    :meth:`take` hands it to an episode as if it were new: the interpreter is renewed (a fresh
    fork of the kernel's zygote, :mod:`toolgym.sandbox.kernel`: no variable, import, process or
    ``/tmp`` file of an earlier episode survives) and the workspace is emptied and given the
    episode's files. So an episode sees exactly what a fresh sandbox shows it (the same
    observations, hence the same trajectory and the same gate verdicts: the test compares whole
    synthesis runs), for about a millisecond instead of a sandbox's start and teardown (~40 ms
    of namespaces, a tmpfs mount and an interpreter). Trusted code only (:func:`toolgym.synth.family.episodes_trusted`).
    """

    def __init__(self, timeout_s: float) -> None:
        self.session: Session = backend().open(limits=call_limits(timeout_s))
        self.kernel = self.session.python(forks=True)
        self.busy = False

    def take(self, files: dict[str, str]) -> tuple[Session, PythonKernel]:
        """The sandbox, renewed and holding ``files`` only, marked busy until :meth:`release`."""
        self.kernel.restart()
        self.session.clear()
        for name, content in files.items():
            self.session.put(name, content)
        self.busy = True
        return self.session, self.kernel

    def release(self) -> None:
        """The episode is over; the next :meth:`take` renews the sandbox."""
        self.busy = False

    def close(self) -> None:
        """Kill the sandbox and remove its workspace."""
        self.session.close()


#: This process's warm sandboxes by episode timeout (``pid`` first: a forked child opens its own).
_WARM: dict[int, dict[float, WarmSandbox]] = {}


def _close_warm() -> None:
    for warm in _WARM.pop(os.getpid(), {}).values():
        warm.close()


def warm_sandbox(timeout_s: float) -> WarmSandbox | None:
    """This process's idle warm sandbox for ``timeout_s`` (opened on first use); None if it is busy."""
    pid = os.getpid()
    if pid not in _WARM:
        _WARM.clear()  # a forked child's inherited entries belong to its parent
        _WARM[pid] = {}
        atexit.register(_close_warm)
        # A multiprocessing worker (synthesis's process pool) ends with os._exit, after its
        # finalizers but without atexit: close it there too, so its workspace is not left behind.
        multiprocessing.util.Finalize(None, _close_warm, exitpriority=10)
    pool = _WARM[pid]
    warm = pool.get(timeout_s)
    if warm is None or warm.session.closed:
        warm = pool[timeout_s] = WarmSandbox(timeout_s)
    return None if warm.busy else warm


COPY_NOTE = (
    "this episode was copied or unpickled after its sandbox opened, so the sandbox started again from the "
    "original data files: variables and files written before the copy are gone"
)


class CodeContext:
    """One episode's state: the workspace files, and the sandbox once code has run.

    Args:
        files: The world's files, ``{name: text}``.
        timeout_s: The CPU budget of each ``run_python`` call in seconds (:func:`call_limits`).
    """

    def __init__(self, files: dict[str, str], timeout_s: float = DEFAULT_TIMEOUT_S):
        self.files = files
        self.timeout_s = timeout_s
        self.session: Session | None = None
        self.kernel: PythonKernel | None = None
        self.copied_live = False  # copied or unpickled while its sandbox was open (see __getstate__)
        self.warm: WarmSandbox | None = None  # the sandbox is this process's warm one (released, not closed)

    def copy_note(self) -> dict[str, str]:
        """``{"note": …}`` once after a copy lost the live sandbox, else ``{}`` (never silent)."""
        if not self.copied_live:
            return {}
        self.copied_live = False
        return {"note": COPY_NOTE}

    def python(self) -> PythonKernel:
        """The episode's kernel, opening the sandbox on first use."""
        if self.kernel is None:
            try:
                warm = warm_sandbox(self.timeout_s) if episodes_trusted() else None
                if warm is not None:
                    self.warm = warm
                    self.session, self.kernel = warm.take(self.files)
                    return self.kernel
                self.session = backend().open(self.files, limits=call_limits(self.timeout_s))
                self.kernel = self.session.python()
            except SandboxError as exc:
                self.close()
                raise ToolError(f"the Python sandbox is unavailable here: {exc}") from exc
        return self.kernel

    def text(self, path: str) -> str:
        """A workspace file's text (the sandbox's copy once it is open)."""
        try:
            rel = clean_relpath(naming.canon(path))
        except ConfigError as exc:
            raise ToolError(str(exc)) from None
        if self.session is None:
            if rel not in self.files:
                files = sorted(self.files)
                hint = naming.did_you_mean(rel, files)
                raise ToolError(f"no file named {path!r}{hint} The files are {', '.join(files)}.")
            return self.files[rel]
        text = self._read(rel)
        if text is not None:
            return text
        self._refuse_special(path, rel)
        # A file the policy's code wrote may be stored non-canonically (NFD bytes on disk).
        entries = self.names()
        names = [n for n in entries if not n.endswith("/")]
        twin = next((n for n in names if n != rel and naming.canon(n) == rel), None)
        text = self._read(twin) if twin is not None else None
        if text is not None:
            return text
        if twin is not None:
            self._refuse_special(path, twin)
        if rel + "/" in entries:
            raise ToolError(f"{path!r} is a directory; read_file reads files (run_python can list it)")
        raise ToolError(f"no file named {path!r}{naming.did_you_mean(rel, names)}")

    def _refuse_special(self, path: str, rel: str) -> None:
        """Raise a ToolError saying what stands at ``rel`` when it exists but is no regular file."""
        target = self.link(rel)
        if target is not None:
            raise ToolError(
                f"{path!r} is a symbolic link to {target!r}, and read_file does not follow links; "
                "read the file it points to by its own name, or open the link in run_python"
            )
        if rel in (self.names() if "/" not in rel else ()):
            raise ToolError(f"{path!r} is not a regular file (a pipe, socket or device); read_file reads files")

    def _read(self, rel: str) -> str | None:
        """The text of the workspace's regular file ``rel``; ``None`` when there is none.

        Raises:
            ToolError: The file exists but cannot be read (too large, no permission).
        """
        assert self.session is not None
        try:
            return self.session.get(rel, max_bytes=16 << 20).decode("utf-8", "replace")
        except FileNotFoundError:
            return None
        except SandboxError as exc:
            raise ToolError(str(exc)) from None
        except OSError as exc:  # e.g. a directory on the way the policy made unreadable
            raise ToolError(f"cannot read {rel!r}: {exc.strerror or exc}") from None

    def link(self, name: str) -> str | None:
        """The target text of the workspace symlink ``name`` (never followed), else ``None``."""
        if self.session is None:
            return None
        try:
            return self.session.readlink(name)
        except (ConfigError, OSError):
            return None

    def names(self) -> list[str]:
        """The top-level workspace entries (directories end with ``/``)."""
        return self.session.listdir(".") if self.session is not None else sorted(self.files)

    def close(self) -> None:
        """Stop the kernel and remove the sandbox (idempotent)."""
        session, self.session, self.kernel, warm = self.session, None, None, self.warm
        self.warm = None
        if warm is not None:
            warm.release()
        elif session is not None:
            session.close()

    def __getstate__(self) -> dict[str, Any]:
        # A live sandbox (processes, a workspace) cannot be copied: the copy starts again from the
        # world's files, and its next tool result says so (copy_note), so a policy is never misled.
        live = self.session is not None or self.copied_live
        state = {"files": self.files, "timeout_s": self.timeout_s, "session": None, "kernel": None}
        return {**state, "copied_live": live, "warm": None}


def _clip(text: str) -> str:
    if len(text) <= OUTPUT_CHARS:
        return text
    head, tail = text[: OUTPUT_CHARS * 5 // 8], text[-(OUTPUT_CHARS * 3 // 8) :]
    return f"{head}\n… [{len(text) - len(head) - len(tail)} characters cut] …\n{tail}"


@tool("read")
def run_python(ctx: CodeContext, code: str) -> dict[str, Any]:
    """Run Python 3 code in a stateful sandboxed interpreter, like a Jupyter cell.

    The working directory holds the data files. Variables, imports and functions persist
    between calls, and the value of a last bare expression is printed. numpy and pandas are
    installed besides the standard library; there is no network. A call may use 10 s of CPU
    time unless the task says otherwise (a call that sleeps or waits is stopped later by a
    wall-clock limit); passing a limit or printing a flood of output restarts the interpreter
    and loses its variables (files stay). Output past 4000 characters is cut in the middle.
    Exceptions come back with status "error" and the traceback in stderr.

    Args:
        code: The Python source to run.
    """
    if not code.strip():
        raise ToolError("code is empty; pass the Python source to run")
    result = ctx.python().run(code)  # the CPU budget and the wall backstop are the session's
    status = result.status.value
    if status == "ok" and result.exit_code not in (0, None):
        status = "error"
    out: dict[str, Any] = {"status": status, "stdout": _clip(result.text)}
    if result.stderr:
        out["stderr"] = _clip(result.stderr.decode("utf-8", "replace"))
    if result.state_lost:
        out["note"] = f"{result.detail}; the interpreter restarted and its variables are gone (files remain)"
    elif result.detail:
        out["note"] = result.detail
    out.update(ctx.copy_note())
    return out


@tool("read")
def list_files(ctx: CodeContext) -> dict[str, Any]:
    """List the files in the workspace with their sizes in lines and bytes.

    A symbolic link is listed with its target (``{"name": "l.csv", "link": "trips.csv"}``) and no
    sizes: links are never followed, so one pointing outside the workspace leaks nothing.
    """
    entries: list[dict[str, Any]] = []
    for name in ctx.names():
        if name.endswith("/"):
            entries.append({"name": name})
            continue
        try:
            text = ctx.text(name)
        except ToolError:
            target = ctx.link(name)
            entries.append({"name": name} if target is None else {"name": name, "link": target})
            continue
        entries.append({"name": name, "lines": len(text.splitlines()), "bytes": len(text.encode())})
    return {"files": entries, **ctx.copy_note()}


@tool("read")
def read_file(ctx: CodeContext, path: str, page: Page = 1) -> dict[str, Any]:
    """Read a workspace file, 50 lines per page.

    Args:
        path: File name, e.g. "orders.csv".
        page: Page number, from 1.
    """
    lines = ctx.text(path).splitlines()
    pages = max(1, -(-len(lines) // PAGE_LINES))
    if page > pages:
        noun = "page" if pages == 1 else "pages"
        raise ToolError(f"page {page} does not exist; {path!r} has {pages} {noun} of {PAGE_LINES} lines")
    first = (page - 1) * PAGE_LINES
    chunk = [
        ln if len(ln) <= MAX_LINE_CHARS else ln[:MAX_LINE_CHARS] + " …" for ln in lines[first : first + PAGE_LINES]
    ]
    return {
        "path": naming.canon(path),
        "page": page,
        "pages": pages,
        "lines": f"{first + 1}-{first + len(chunk)} of {len(lines)}",
        "text": "\n".join(chunk),
        **ctx.copy_note(),
    }


class GroupValue(BaseModel):
    """A group and its aggregate."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(description="the group, spelled exactly as in the files")
    value: Number = Field(description="its aggregate, rounded to 2 decimals")


class CountTotal(BaseModel):
    """A number of rows and the total of a measure over them."""

    model_config = ConfigDict(extra="forbid")

    count: Integer = Field(description="how many rows")
    total: Number = Field(description="their total, rounded to 2 decimals")


class NameCount(BaseModel):
    """A name and a count."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(description="the name, spelled exactly as in the files")
    count: Integer = Field(description="the count")


def submit_number(ctx: CodeContext, answer: Number) -> str:
    """Submit the answer; this ends the episode.

    Args:
        answer: The number, rounded as the task says.
    """
    return "submitted"


def submit_integer(ctx: CodeContext, answer: Integer) -> str:
    """Submit the answer; this ends the episode.

    Args:
        answer: The exact integer.
    """
    return "submitted"


def submit_string(ctx: CodeContext, answer: Text) -> str:
    """Submit the answer; this ends the episode.

    Args:
        answer: The value, exactly as written in the files.
    """
    return "submitted"


def submit_names(ctx: CodeContext, answer: list[Text]) -> str:
    """Submit the answer; this ends the episode.

    Args:
        answer: Every name that qualifies, in any order, each once.
    """
    return "submitted"


def submit_group_value(ctx: CodeContext, answer: GroupValue) -> str:
    """Submit the answer; this ends the episode.

    Args:
        answer: The group and its aggregate.
    """
    return "submitted"


def submit_count_total(ctx: CodeContext, answer: CountTotal) -> str:
    """Submit the answer; this ends the episode.

    Args:
        answer: The count and the total.
    """
    return "submitted"


def submit_name_count(ctx: CodeContext, answer: NameCount) -> str:
    """Submit the answer; this ends the episode.

    Args:
        answer: The name and its count.
    """
    return "submitted"


#: One ``submit`` per answer type, so the schema says exactly what to submit.
SUBMITS: dict[str, Tool] = {
    kind: make_tool(fn, "read", name="submit")
    for kind, fn in {
        "number": submit_number,
        "integer": submit_integer,
        "string": submit_string,
        "names": submit_names,
        "group_value": submit_group_value,
        "name_count": submit_name_count,
        "count_total": submit_count_total,
    }.items()
}


def toolset(tool_config: dict[str, Any]) -> list[Tool]:
    """The tools of a task: the interpreter, the two file tools, and the typed submit."""
    if tool_config.get("answer") not in SUBMITS:
        raise ConfigError(f"unknown answer type {tool_config.get('answer')!r}; known: {', '.join(SUBMITS)}")
    return [as_tool(run_python), as_tool(list_files), as_tool(read_file), SUBMITS[tool_config["answer"]]]
