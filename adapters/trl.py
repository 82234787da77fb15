"""TRL adapter: toolgym tasks as ``GRPOTrainer(environment_factory=…)`` environments (extra ``toolgym[trl]``).

TRL's contract (``trl.GRPOTrainer``, TRL >= 1.x, experimental there): ``environment_factory`` is
a zero-argument callable returning an environment object, or a dict of them by name (then each
training row carries an ``environment`` column naming one, and only its tools are shown). TRL
lists the environment **class**'s public functions as tools (their schema comes from the type
hints and the Google docstring, through ``transformers.utils.get_json_schema``), calls
``reset(**row)`` before each rollout and appends the string it returns to the last user message,
calls a tool as ``method(**arguments)`` and puts ``str(result)`` in a tool message, and scores a
finished rollout with ``get_reward()`` when the class defines it. Instances are pooled and reset
between rollouts.

So each task gets its own class (:func:`environment_class`): one method per tool of the task,
whose signature is derived from the toolgym tool's JSON schema (itself derived from the tool's
typed signature), ``reset`` giving the task prompt, ``get_reward`` the verifier's score.
:func:`trl_environments` builds the classes for a set of tasks and the matching training rows,
for TRL's dict form.

Decisions:

* **Annotations from the schema.** ``get_json_schema`` understands plain types, ``Literal``,
  unions and lists/dicts of them, not pydantic models; a parameter's annotation is therefore
  rebuilt from its JSON schema (an object becomes ``dict``), and where that loses structure
  (nested objects, bounds) the schema itself is appended to the parameter's description, so the
  model still sees it.
* **Validation stays toolgym's.** A method takes ``**arguments`` behind its typed signature and
  hands them to the task's toolset (:class:`~toolgym.adapters.episode.ToolEpisode`): missing,
  unknown or mistyped arguments are an error result naming the fix, never an exception in the
  trainer; a tool name the model invents is answered by TRL itself ("Tool … not found").
* **Results** are the env's JSON payloads (``{"name", "content"}`` / ``{"name", "error"}``).
"""

from __future__ import annotations

import inspect
import keyword
import re
from typing import Any, ClassVar, Literal

from toolgym.adapters.episode import ToolEpisode, load_tasks
from toolgym.envs import markup as mk
from toolgym.errors import ConfigError
from toolgym.spec import TaskSpec

__all__ = ["ToolgymEnvironment", "annotation_of", "environment_class", "trl_environments"]

_RESERVED = {"reset", "get_reward"}
_SIMPLE = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}


class ToolgymEnvironment:
    """Base of the per-task classes :func:`environment_class` makes (TRL instantiates them).

    A subclass sets :attr:`task` and :attr:`world` and has one public method per tool.
    """

    task: ClassVar[TaskSpec]
    world: ClassVar[Any]

    def __init__(self) -> None:
        self._episode = ToolEpisode(self.task, self.world)

    def reset(self, **row: Any) -> str:
        """Start an episode; returns the task's user turn (TRL appends it to the prompt).

        Args:
            **row: The training row TRL passes (ignored: the class is the task).
        """
        return self._episode.reset()

    def get_reward(self) -> float:
        """The verifier's score in [0, 1] of the submitted answer; 0 without a valid submit."""
        return self._episode.reward

    @property
    def verdict(self) -> dict[str, Any] | None:
        """The last episode's verdict (``score``, ``passed``, ``reason``), or None before submit."""
        v = self._episode.verdict
        return None if v is None else v.model_dump()

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        return self._episode.call(name, arguments)

    def __del__(self) -> None:
        episode = getattr(self, "_episode", None)
        if episode is not None:
            episode.close()


def annotation_of(schema: dict[str, Any]) -> Any:
    """The Python annotation ``transformers.utils.get_json_schema`` turns back into ``schema`` (or near it).

    Args:
        schema: A JSON schema of one parameter (pydantic's, refs inlined).

    Returns:
        ``str``/``int``/``float``/``bool``, ``Literal[…]`` for an enum, ``list[X]``, ``dict`` for
        an object, a union for ``anyOf``/``oneOf`` and type lists, ``Any`` for anything else.
    """
    if "enum" in schema and all(isinstance(v, str | int | float | bool) for v in schema["enum"]):
        return Literal[tuple(schema["enum"])]
    if "const" in schema and isinstance(schema["const"], str | int | float | bool):
        return Literal[schema["const"]]
    branches = schema.get("anyOf") or schema.get("oneOf")
    kind = schema.get("type")
    if branches or isinstance(kind, list):
        options = [annotation_of(b) for b in branches] if branches else [annotation_of({"type": k}) for k in kind or []]
        if Any in options:
            return Any
        out = options[0]
        for o in options[1:]:
            out = out | o
        return out
    if kind == "array":
        items = schema.get("items")
        return list[annotation_of(items)] if isinstance(items, dict) else list  # type: ignore[misc]
    if kind == "object":
        return dict
    return _SIMPLE.get(kind, Any) if isinstance(kind, str) else Any


def _loses_structure(schema: dict[str, Any]) -> bool:
    """Whether :func:`annotation_of` drops part of ``schema`` (nested objects, bounds, formats)."""
    text = mk.dumps(schema)
    return any(k in text for k in ('"properties"', '"minimum"', '"maximum"', '"minItems"', '"maxItems"', '"pattern"'))


def _method(tool: Any) -> Any:
    """A function with ``tool``'s name, typed signature and Google docstring, calling it through the episode."""
    params = tool.schema["function"]["parameters"]
    props: dict[str, Any] = params.get("properties", {})
    required = set(params.get("required", []))
    sig_params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    lines = []
    for arg, schema in props.items():
        if not arg.isidentifier() or keyword.iskeyword(arg):
            raise ConfigError(f"tool {tool.name}: argument {arg!r} is not a Python identifier; TRL cannot call it")
        ann = annotation_of(schema)
        default = inspect.Parameter.empty if arg in required else schema.get("default")
        if arg not in required and default is None:
            ann = ann | None if ann is not Any else Any
        sig_params.append(inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann))
        annotations[arg] = ann
        desc = re.sub(r"\s+", " ", schema.get("description") or f"The {arg} argument.")
        if _loses_structure(schema):
            shown = {k: v for k, v in schema.items() if k != "description"}
            desc += f" JSON schema: {mk.dumps(shown)}"
        lines.append(f"    {arg}: {desc}")
    name = tool.name

    def method(self: ToolgymEnvironment, **arguments: Any) -> str:
        return self._call(name, arguments)

    doc = (tool.description or f"The {name} tool.").strip()
    doc += "\n\nArgs:\n" + "\n".join(lines) if lines else ""
    method.__name__ = method.__qualname__ = name
    method.__doc__ = doc + '\n\nReturns:\n    The result as JSON: {"name", "content"} or {"name", "error"}.\n'
    method.__signature__ = inspect.Signature(sig_params, return_annotation=str)  # type: ignore[attr-defined]
    method.__annotations__ = {**annotations, "return": str}
    return method


def environment_class(task: TaskSpec, world: Any) -> type[ToolgymEnvironment]:
    """A TRL environment class for one task: ``GRPOTrainer(environment_factory=environment_class(task, world))``.

    Args:
        task: The task (its tool config gives the tools).
        world: Its world object (from the task source or dataset).

    Returns:
        A subclass of :class:`ToolgymEnvironment` named after the task, one method per tool.

    Raises:
        ConfigError: A tool whose name or argument cannot be a Python method (a name starting with
            ``_``, ``reset``, ``get_reward``, or an argument that is not an identifier).
    """
    episode = ToolEpisode(task, world)
    methods: dict[str, Any] = {}
    for tool in episode.tools:
        if tool.name in _RESERVED or tool.name.startswith("_") or not tool.name.isidentifier():
            raise ConfigError(f"task {task.task_id}: tool name {tool.name!r} cannot be a TRL environment method")
        methods[tool.name] = _method(tool)
    name = "Toolgym_" + re.sub(r"\W", "_", task.task_id)
    return type(name, (ToolgymEnvironment,), {"task": task, "world": world, "__doc__": task.prompt, **methods})


def trl_environments(
    family: str,
    n: int = 8,
    dataset: str | None = None,
    split: str | None = "train",
    difficulty: int | list[int] | None = None,
    seed: int = 0,
) -> tuple[dict[str, type[ToolgymEnvironment]], list[dict[str, Any]]]:
    """Environment classes for ``n`` tasks of a family and the training rows that select them.

    Use as ``GRPOTrainer(environment_factory=envs, train_dataset=datasets.Dataset.from_list(rows), …)``.

    Args:
        family: Family id.
        n: Number of tasks (see :func:`toolgym.adapters.episode.load_tasks`).
        dataset: DuckDB dataset path; None synthesizes tasks on the fly.
        split: train/val/test, or None for any.
        difficulty: A difficulty 1-5 or a list; None for any.
        seed: Seeds the task draws.

    Returns:
        ``({task_id: class}, rows)``, one row per task: ``{"prompt": [{"role": "user", "content": ""}],
        "environment": task_id}`` (TRL appends the task's text from ``reset``).
    """
    envs = {t.task_id: environment_class(t, w) for t, w in load_tasks(family, n, dataset, split, difficulty, seed)}
    rows = [{"prompt": [{"role": "user", "content": ""}], "environment": tid} for tid in envs]
    return envs, rows
