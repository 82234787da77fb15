"""The codeagent toolset: read, search and edit a package, run its visible tests, submit.

**The workspace is a file store on the host** (:class:`AgentContext.files`): ``list_files``,
``read_file``, ``search_code`` and ``edit_file`` work on it directly (no code runs for them), and
it is what the verifier judges. ``run_tests`` is the only tool that runs code: it opens the
episode's sandbox on its first call (bubblewrap, :mod:`toolgym.sandbox`), copies the files
edited since the last run into it, and runs the visible tests there with a small runner
(:data:`TEST_RUNNER`). Files that code writes inside the sandbox stay there: they are neither
listed nor judged, so nothing a test run does can reach the verdict, and a daemon it leaves dies
when the call ends (the sandbox kills every process of a call) or, at the latest, when the
verifier closes the sandbox before judging.

**Why a runner of our own, not pytest**: the sandbox binds only the host's ``/usr``, whose Python
has the standard library and no pytest (the project's virtual environment is not bound). The
visible tests are plain ``test_*`` functions with ``assert`` (they run under pytest unchanged);
the runner imports each ``tests/test_*.py``, calls its tests in order and reports each failure
with its assertion message or exception, and a module that fails to import as one error.

**Gate episodes reuse one sandbox** (:func:`gate_sessions`, entered by ``CodeAgent.gate_scope``):
the random gate's ``run_tests`` calls were the other half of synthesis's sandbox time (a
bubblewrap start and, above all, a teardown per episode). Inside the scope an episode's first
``run_tests`` takes this process's kept gate sandbox, empties its workspace with one call and
copies the episode's files in; closing the episode leaves the sandbox open for the next one (it
closes at exit). Its runs cannot change a verdict: the verdict comes from the file store, never
from the sandbox. Every other episode (the reference's, every policy's) opens its own.

``edit_file`` replaces one **unique** snippet; a snippet that is missing, ambiguous or a no-op is
an error saying why nothing was applied (and where the closest line is). With an empty ``old``
it creates a new file. Paths follow the one name rule (:mod:`toolgym.envs.naming`).
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import json
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from toolgym.envs import naming
from toolgym.envs.strict import Page, Text
from toolgym.envs.tools import Tool, ToolError, as_tool, tool
from toolgym.errors import ConfigError, SandboxError
from toolgym.sandbox import Backend, ExecStatus, Limits, Session, get_backend
from toolgym.sandbox.base import clean_relpath

PAGE_LINES = 80
MAX_MATCHES = 40
OUTPUT_CHARS = 3000
DEFAULT_TIMEOUT_S = 20.0
MARKER = "@@toolgym-visible-results "
_BACKENDS: dict[int, Backend] = {}
_IN_GATES: ContextVar[bool] = ContextVar("codeagent_gate_sessions", default=False)
#: This process's kept gate sandboxes by (pid, wall limit); a forked child keeps its own.
_GATE_SESSIONS: dict[tuple[int, float], Session] = {}
#: Empties a gate sandbox's workspace between episodes (run as ``python -I -S -c WIPE``).
WIPE = """
import os, shutil
for p in os.listdir("."):
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p)
    else:
        os.remove(p)
"""

#: Runs the visible tests inside the agent's sandbox (``python -I -S -c TEST_RUNNER <target>``).
TEST_RUNNER = r"""
import importlib.util, json, os, sys, traceback
sys.path.insert(0, os.getcwd())
target = sys.argv[1]
paths = [target] if target.endswith(".py") else sorted(
    os.path.join(d, f) for d, _, fs in os.walk(target) for f in fs if f.startswith("test_") and f.endswith(".py"))
results = []
for path in paths:
    name = "_visible_" + path.replace("/", "_")[:-3]
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except BaseException as exc:
        results.append([path, "error", "".join(traceback.format_exception_only(type(exc), exc)).strip()])
        continue
    for fname, fn in list(vars(mod).items()):
        if not (fname.startswith("test") and callable(fn)):
            continue
        test = path + "::" + fname
        try:
            fn()
            results.append([test, "passed", ""])
        except AssertionError as exc:
            results.append([test, "failed", "AssertionError: " + str(exc)])
        except BaseException as exc:
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            where = " (at %s:%s)" % (os.path.relpath(tb.filename), tb.lineno)
            results.append([test, "error", type(exc).__name__ + ": " + str(exc) + where])
sys.stdout.flush()
sys.stdout.write("\nMARKER" + json.dumps(results) + "\n")
""".replace("MARKER", MARKER)


def backend() -> Backend:
    """This process's local sandbox backend (a forked child builds its own)."""
    pid = os.getpid()
    if pid not in _BACKENDS:
        _BACKENDS.clear()
        _BACKENDS[pid] = get_backend("local")
    return _BACKENDS[pid]


@contextlib.contextmanager
def gate_sessions() -> Iterator[None]:
    """Let the episodes inside share this process's kept gate sandbox (synthesis gates only; see above)."""
    token = _IN_GATES.set(True)
    try:
        yield
    finally:
        _IN_GATES.reset(token)


def _close_gate_sessions() -> None:
    for (pid, _), session in list(_GATE_SESSIONS.items()):
        if pid == os.getpid():
            session.close()
    _GATE_SESSIONS.clear()


atexit.register(_close_gate_sessions)


def _gate_session(files: dict[str, str], timeout_s: float) -> Session:
    """The kept gate sandbox holding exactly ``files`` (opened, or emptied and refilled).

    Raises:
        SandboxError: The sandbox cannot be opened here.
    """
    key = (os.getpid(), timeout_s)
    if any(pid != key[0] for pid, _ in _GATE_SESSIONS):  # inherited from a parent: not ours to use
        _GATE_SESSIONS.clear()
    session = _GATE_SESSIONS.get(key)
    if session is not None and not session.closed:
        wiped = session.exec([session.python_path, "-I", "-S", "-c", WIPE], timeout=timeout_s)
        if wiped.status is ExecStatus.OK:
            for rel, text in sorted(files.items()):
                session.put(rel, text)
            return session
        session.close()
    _GATE_SESSIONS[key] = session = backend().open(files, Limits(wall_s=timeout_s))
    return session


class AgentContext:
    """One episode's workspace (a file store) and, once tests have run, its sandbox."""

    def __init__(self, files: dict[str, str], package: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.files = dict(files)
        self.package = package
        self.timeout_s = timeout_s
        self.session: Session | None = None
        self.shared = False  # the session is the kept gate sandbox (left open by close)
        self.dirty: set[str] = set()

    def path(self, path: str, must_exist: bool = True) -> str:
        """The canonical workspace path of ``path``; ToolError naming the closest file on a miss."""
        try:
            rel = clean_relpath(naming.canon(path))
        except ConfigError as exc:
            raise ToolError(str(exc)) from None
        if must_exist and rel not in self.files:
            raise ToolError(f"no file named {path!r}{naming.did_you_mean(rel, sorted(self.files))}")
        return rel

    def write(self, rel: str, text: str) -> None:
        """Store a file's new text (copied into the sandbox before the next test run)."""
        self.files[rel] = text
        self.dirty.add(rel)

    def sandbox(self) -> Session:
        """The episode's sandbox, opened on first use, with every edited file copied in."""
        try:
            if self.session is None or self.session.closed:
                self.shared = _IN_GATES.get()
                if self.shared:
                    self.session = _gate_session(self.files, self.timeout_s)
                else:
                    self.session = backend().open(self.files, Limits(wall_s=self.timeout_s))
            else:
                for rel in sorted(self.dirty):
                    self.session.put(rel, self.files[rel])
            self.dirty.clear()
            return self.session
        except SandboxError as exc:
            self.close()
            raise ToolError(f"the test sandbox is unavailable here: {exc}") from exc

    def judge_files(self) -> dict[str, str]:
        """Close the sandbox (every process in it dies), then hand over a copy of the files to judge."""
        self.close()
        return dict(self.files)

    def close(self) -> None:
        """Remove the sandbox (idempotent); the file store stays."""
        session, self.session = self.session, None
        self.dirty = set()  # a new sandbox starts from every file
        if session is not None and not self.shared:
            session.close()
        self.shared = False

    def __getstate__(self) -> dict[str, Any]:
        # A live sandbox cannot be copied; the copy opens its own from the same files when it runs tests.
        return {
            "files": self.files,
            "package": self.package,
            "timeout_s": self.timeout_s,
            "session": None,
            "shared": False,
            "dirty": set(),
        }


def _clip(text: str, limit: int = OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit * 2 // 3] + f"\n… [{len(text) - limit} characters cut] …\n" + text[-(limit // 3) :]


@tool("read")
def list_files(ctx: AgentContext) -> dict[str, Any]:
    """List every file of the repository with its size in lines."""
    return {"files": [{"path": p, "lines": len(t.splitlines())} for p, t in sorted(ctx.files.items())]}


@tool("read")
def read_file(ctx: AgentContext, path: Text, page: Page = 1) -> dict[str, Any]:
    """Read a file, 80 lines per page.

    Args:
        path: The file's path, e.g. "pkg/module.py".
        page: Page number, from 1.
    """
    rel = ctx.path(path)
    lines = ctx.files[rel].splitlines()
    pages = max(1, -(-len(lines) // PAGE_LINES))
    if page > pages:
        raise ToolError(f"page {page} does not exist; {rel!r} has {pages} page{'s' if pages > 1 else ''}")
    first = (page - 1) * PAGE_LINES
    chunk = lines[first : first + PAGE_LINES]
    return {
        "path": rel,
        "page": page,
        "pages": pages,
        "lines": f"{first + 1}-{first + len(chunk)} of {len(lines)}",
        "text": "\n".join(chunk),
    }


@tool("read")
def search_code(ctx: AgentContext, query: Text, regex: bool = False) -> dict[str, Any]:
    """Find the lines of every file that contain a text (or match a Python regular expression).

    Args:
        query: The text to look for (case-sensitive), or a pattern when regex is true.
        regex: Treat query as a regular expression.
    """
    if not query:
        raise ToolError("query is empty; pass the text to look for")
    try:
        pattern = re.compile(query if regex else re.escape(query))
    except re.error as exc:
        raise ToolError(f"bad regular expression: {exc}; pass regex=false to search for the plain text") from None
    matches = [
        {"path": p, "line": i, "text": ln[:300]}
        for p, t in sorted(ctx.files.items())
        for i, ln in enumerate(t.splitlines(), 1)
        if pattern.search(ln)
    ]
    out: dict[str, Any] = {"matches": matches[:MAX_MATCHES], "total": len(matches)}
    if len(matches) > MAX_MATCHES:
        out["note"] = f"only the first {MAX_MATCHES} matches are shown; search for something more specific"
    return out


def _closest_line(text: str, old: str) -> str:
    first = next((ln for ln in old.splitlines() if ln.strip()), old)
    close = difflib.get_close_matches(first, text.splitlines(), n=1, cutoff=0.6)
    return f"; the closest line is {close[0]!r} (check whitespace and indentation)" if close else ""


@tool("write")
def edit_file(ctx: AgentContext, path: Text, old: str, new: str) -> dict[str, Any]:
    """Replace one exact, unique snippet of a file with new text (or create a file when old is empty).

    The snippet must occur exactly once (include neighbouring lines to make it unique); whitespace
    and indentation count. Nothing is applied when it is missing, ambiguous or unchanged.

    Args:
        path: The file's path, e.g. "pkg/module.py".
        old: The exact text to replace; empty to create a new file.
        new: The replacement text.
    """
    if not old:
        rel = ctx.path(path, must_exist=False)
        if rel in ctx.files:
            raise ToolError(f"{rel!r} exists; to change it pass the exact text to replace as old (nothing applied)")
        ctx.write(rel, new)
        return {"path": rel, "created": True, "lines": len(new.splitlines())}
    rel = ctx.path(path)
    text = ctx.files[rel]
    count = text.count(old)
    if count == 0:
        raise ToolError(f"old text not found in {rel!r}{_closest_line(text, old)}; nothing applied")
    if count > 1:
        raise ToolError(
            f"old text occurs {count} times in {rel!r}; include neighbouring lines to make it unique (nothing applied)"
        )
    if old == new:
        raise ToolError("old and new are the same; nothing to apply")
    ctx.write(rel, text.replace(old, new))
    line = text[: text.index(old)].count("\n") + 1
    return {"path": rel, "replaced_at_line": line, "lines": len(ctx.files[rel].splitlines())}


@tool("read")
def run_tests(ctx: AgentContext, path: str = "tests") -> dict[str, Any]:
    """Run the visible tests (all of tests/, or one test file) in a sandbox and report failures.

    Args:
        path: "tests" for every test file, or one file such as "tests/test_module.py".
    """
    target = "tests" if path.strip() in ("", "tests", "tests/") else ctx.path(path)
    session = ctx.sandbox()
    result = session.exec([session.python_path, "-I", "-S", "-c", TEST_RUNNER, target], timeout=ctx.timeout_s)
    text = result.stdout.decode("utf-8", "replace")
    lines = [ln for ln in text.split("\n") if ln.startswith(MARKER)]
    if result.status is not ExecStatus.OK or not lines:
        why = result.detail or "the test run ended before reporting"
        return {
            "status": result.status.value,
            "note": why,
            "stdout": _clip(text),
            "stderr": _clip(result.stderr.decode("utf-8", "replace")),
        }
    rows = json.loads(lines[-1][len(MARKER) :])
    failures = [{"test": t, "error": _clip(e, 600)} for t, s, e in rows if s != "passed"]
    printed = text.split("\n" + lines[-1])[0].strip()
    out: dict[str, Any] = {"passed": len(rows) - len(failures), "failed": len(failures), "failures": failures[:20]}
    if printed:
        out["stdout"] = _clip(printed)
    return out


@tool("read")
def submit(ctx: AgentContext, answer: Text) -> str:
    """Submit your fix; this ends the episode and the hidden tests judge the package.

    Args:
        answer: A one-line summary of what you changed.
    """
    return "submitted"


def toolset(tool_config: dict[str, Any]) -> list[Tool]:
    """The six tools of every codeagent task."""
    return [as_tool(t) for t in (list_files, read_file, search_code, edit_file, run_tests, submit)]
