"""``toolgym play``: a human plays a task; one typed line becomes an action, a help request or a local error.

Input forms, one per turn (``help`` prints this inside the game)::

    tool                     a call without arguments
    tool key=value …         shell-style words (``shlex``): quote a value with spaces,
                             name="Stawil Lodge" or name='Stawil Lodge'; a value is the text itself
                             for a string parameter, and JSON otherwise (page=2, answer='[…]')
    tool {json}              the arguments as one JSON object
    <tool_call>…             raw markup, sent as is: the env judges it exactly as it judges a policy
    help (or ?)              the tools with their arguments and these forms
    quit (or exit)           stop

Decision: a typing mistake the CLI can see by itself (bad quoting, a word that is not
``key=value``, malformed JSON, an unknown tool), an empty line and ``help`` never reach the
env, so they use no turn. Everything the env checks for a policy (argument names, types,
values) is left to the env, so the player sees the same messages a policy would.
"""

from __future__ import annotations

import difflib
import itertools
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from toolgym.cli.common import console as cli_console
from toolgym.cli.data import load_task
from toolgym.cli.errors import cli_errors

Kind = Literal["action", "help", "quit", "empty", "error"]
HELP_WORDS = ("help", "?")
QUIT_WORDS = ("quit", "exit")


@dataclass(frozen=True)
class Line:
    """What one typed line means.

    Attributes:
        kind: ``action`` (send ``text`` to the env), ``help``, ``quit``, ``empty`` or ``error``
            (``text`` says what is wrong; nothing is sent, no turn is used).
        text: The action's markup, or the error message; empty otherwise.
        calls: The parsed ``(tool, arguments)`` calls of a human-form action; empty for raw markup.
    """

    kind: Kind
    text: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _schemas(tools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Tool name -> its JSON-schema ``parameters``."""
    return {t["function"]["name"]: t["function"].get("parameters", {}) for t in tools}


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a parameter schema allows (``type``, a list of types, or ``anyOf``/``oneOf``)."""
    t = schema.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return set(t)
    out: set[str] = set()
    for sub in schema.get("anyOf", []) + schema.get("oneOf", []):
        out |= _types(sub)
    return out


def _value(text: str, schema: dict[str, Any] | None) -> Any:
    """A ``key=value`` value: the text itself for a string-only parameter, else JSON if it parses."""
    if schema is not None and _types(schema) and _types(schema) <= {"string", "null"}:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word: the env reports it if the parameter is not a string


def _kv_args(rest: str, params: dict[str, Any]) -> dict[str, Any] | str:
    """Arguments from shell-style ``key=value`` words, or an error message."""
    try:
        words = shlex.split(rest)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        return f'{exc} in {rest!r}: close the quote, e.g. name="Stawil Lodge"'
    args: dict[str, Any] = {}
    props = params.get("properties", {})
    for i, word in enumerate(words):
        key, eq, value = word.partition("=")
        if not eq:
            prev = words[i - 1] if i else ""
            if "=" in prev:
                k, _, v = prev.partition("=")
                full = " ".join([v, *itertools.takewhile(lambda w: "=" not in w, words[i:])])
                quoted = f'"{full}"' if not set(full) & set('"\\$`') else shlex.quote(full)
                return f"{word!r} is not key=value; quote a value with spaces: {k}={quoted}"
            return f"{word!r} is not key=value; write `tool key=value …` or `tool {{json}}` (`help` shows the forms)"
        if not key.isidentifier():
            return f"{key!r} is not an argument name (in {word!r})"
        if key in args:
            return f"argument {key!r} is given twice"
        args[key] = _value(value, props.get(key))
    return args


def _json_args(rest: str) -> dict[str, Any] | str:
    """Arguments from one JSON object, or an error message that quotes the JSON error."""
    try:
        args = json.loads(rest)
    except json.JSONDecodeError as exc:
        return f"the arguments are not valid JSON: {exc.msg} at column {exc.colno} of {rest!r}"
    if not isinstance(args, dict):
        return f"the arguments must be a JSON object {{…}}, got {type(args).__name__}"
    return args


def parse_line(line: str, tools: list[dict[str, Any]]) -> Line:
    """What a typed line means for an episode with these tools.

    Args:
        line: One line as typed (surrounding whitespace ignored).
        tools: The episode's OpenAI function schemas (``info["tools"]``).

    Returns:
        The meaning; ``Line.kind == "action"`` is the only one that uses a turn.
    """
    from toolgym.envs import markup as mk

    line = line.strip()
    if not line:
        return Line("empty")
    if line.lower() in HELP_WORDS:
        return Line("help")
    if line.lower() in QUIT_WORDS:
        return Line("quit")
    if line.startswith("<"):
        return Line("action", line)
    name, rest = (line.split(None, 1) + [""])[:2]
    schemas = _schemas(tools)
    if name not in schemas:
        close = difflib.get_close_matches(name, list(schemas), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}?" if close else "`help` lists the tools"
        return Line("error", f"unknown tool {name!r}; {hint}")
    args = _json_args(rest) if rest[:1] in ("{", "[") else _kv_args(rest, schemas[name])
    if isinstance(args, str):
        return Line("error", args)
    try:
        text = mk.render_action([(name, args)])
    except (TypeError, ValueError) as exc:  # e.g. an integer beyond 64 bits, which the renderer cannot encode
        return Line("error", f"the arguments cannot be encoded: {exc}")
    return Line("action", text, [(name, args)])


def _type_name(schema: dict[str, Any]) -> str:
    types = sorted(_types(schema))
    return "|".join(types) if types else "any"


def help_text(tools: list[dict[str, Any]]) -> str:
    """The in-game help: every tool with its arguments, the input forms, how to submit and quit."""
    lines = ["tools (arguments in [brackets] are optional):"]
    for t in tools:
        fn = t["function"]
        params = fn.get("parameters", {})
        required = set(params.get("required", []))
        args = []
        for key, schema in params.get("properties", {}).items():
            arg = f"{key}: {_type_name(schema)}"
            args.append(arg if key in required else f"[{arg}]")
        first = (fn.get("description") or "").splitlines()[:1]  # a tool may have no description
        lines.append(f"  {fn['name']}({', '.join(args)})  {''.join(first)}".rstrip())
    bare, named, key = _examples(tools)
    lines += [
        "input forms (one per turn):",
        f"  tool                   a call without arguments, e.g. {bare}",
        f"  tool key=value …       quote a value with spaces: {named} {key}=\"Two Words\" (or 'Two Words');",
        "                         string arguments are taken as typed, others as JSON: page=2, answer='[1, 2]'",
        f'  tool {{json}}            the arguments as one JSON object: {named} {{"{key}": "Two Words"}}',
        "  <tool_call>…<|end|>    raw markup, sent to the env as is (several calls in one turn)",
        "submit: call the submit tool with your answer (see its arguments above); that ends the episode",
        "help or ?: this text; quit or exit: stop. Empty lines, help and typing mistakes use no turn.",
    ]
    return "\n".join(lines)


def _examples(tools: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(a tool callable without arguments, a tool with a string argument, that argument) of this task's tools."""
    fns = [t["function"] for t in tools if t["function"]["name"] != "submit"] or [t["function"] for t in tools]
    bare = next((f["name"] for f in fns if not f.get("parameters", {}).get("required")), fns[0]["name"])
    for f in fns:
        for key, schema in f.get("parameters", {}).get("properties", {}).items():
            if schema.get("type") == "string":
                return bare, f["name"], key
    return bare, fns[0]["name"], "name"


def play_episode(task: Any, world: Any, console: Any) -> None:
    """Play one episode of ``task`` with lines typed on stdin, printing to ``console``.

    Args:
        task: The task (a ``TaskSpec``).
        world: Its loaded world.
        console: A ``rich.console.Console`` for the prompt, the tool results and the verdict.
    """
    from toolgym.envs import markup as mk
    from toolgym.envs.sources import MemorySource
    from toolgym.envs.toolenv import make_env

    env = make_env(task.family, source=MemorySource([(task, world)]))
    _, info = env.reset()
    tools = info["tools"]
    console.print(task.prompt, markup=False)
    console.print("tools: " + ", ".join(t["function"]["name"] for t in tools), markup=False)
    console.print("type `help` for the tools' arguments and the input forms, `quit` to stop", markup=False)
    while True:
        try:
            typed = console.input("action: ", markup=False)
        except (EOFError, KeyboardInterrupt):
            console.print("\nstopped (end of input)")
            return
        line = parse_line(typed, tools)
        if line.kind == "empty":
            continue
        if line.kind == "help":
            console.print(help_text(tools), markup=False)
            continue
        if line.kind == "quit":
            console.print("stopped")
            return
        if line.kind == "error":
            console.print(f"not sent (no turn used): {line.text}", markup=False)
            continue
        obs, reward, terminated, truncated, info = env.step(line.text)
        for r in mk.parse_tool_results(obs):
            console.print(json.dumps(r, ensure_ascii=False, indent=1), markup=False)
        if terminated or truncated:
            verdict = info.get("verdict", {"reason": "truncated"})
            console.print(f"episode over: reward {reward} ({verdict['reason']})", markup=False)
            return


@cli_errors
def play(
    task_id: Annotated[str, typer.Argument(help="task id")],
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="dataset file")] = None,
) -> None:
    """Play a task in the terminal: `tool key=value …` or `tool {json}` per turn, `help` for more, `quit` to stop.

    Lines are read from stdin, so a game can be scripted by piping them in. An empty line, `help`
    and typing mistakes use no turn; end of input stops the game.
    """
    task, world, _ = load_task(task_id, dataset)
    play_episode(task, world, cli_console)


__all__ = ["Line", "help_text", "parse_line", "play", "play_episode"]
