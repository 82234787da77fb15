"""toolgym: synthesized, verified, sandboxed tool-use environments for RL of language models.

The package's face. Importing it registers every environment id with Gymnasium from one
central list of string entry points (nothing heavy is imported until ``gymnasium.make``), so
``import toolgym; gymnasium.make("toolgym/TripPlanning-v1")`` works, and so does
``gymnasium.make("toolgym:toolgym/TripPlanning-v1")`` without the explicit import.

Parts (see DESIGN.md): ``toolgym.envs`` (Gymnasium side), ``toolgym.synth`` (families and the
synthesis pipeline: one candidate, the resumable run, its executors), ``toolgym.data`` (the dataset),
``toolgym.verifiers`` (verdicts and checks), ``toolgym.policy`` (the in-repo model, training and
evaluation), ``toolgym.cli`` (the ``toolgym`` command).
"""

from __future__ import annotations

import re
from typing import Any

from toolgym.errors import ConfigError, UnknownNameError
from toolgym.registry import Registry

__version__ = "0.1.0"

#: The central table: every family (with its Gymnasium id), verifier kind, task source, sandbox backend,
#: executor and policy, as lazy "module:attr" entry points. Adding one is a module plus one line here
#: (a family from outside the package: ``toolgym.synth.register_family``, or a plugin entry point).
FAMILIES: Registry[Any] = Registry("family")
FAMILIES.register("trip", "toolgym.synth.trip.family:TripPlanning", env_id="toolgym/TripPlanning-v1")
FAMILIES.register("code", "toolgym.synth.code.family:CodeInterpreter", env_id="toolgym/CodeInterpreter-v1")
FAMILIES.register("domains", "toolgym.synth.domains.family:Domains", env_id="toolgym/Domains-v0")
FAMILIES.register("search", "toolgym.synth.search.family:Search", env_id="toolgym/SearchAgent-v0")
FAMILIES.register("sql", "toolgym.synth.sql.family:SQLAnalyst", env_id="toolgym/SQLAnalyst-v0")
FAMILIES.register("codeagent", "toolgym.synth.codeagent.family:CodeAgent", env_id="toolgym/CodeAgent-v0")

VERIFIERS: Registry[Any] = Registry("verifier kind")
VERIFIERS.register("all", "toolgym.verifiers.verdict:verify_all")
VERIFIERS.register("exact", "toolgym.verifiers.answers:verify_exact")
VERIFIERS.register("numeric", "toolgym.verifiers.answers:verify_numeric")
VERIFIERS.register("set", "toolgym.verifiers.answers:verify_set")
VERIFIERS.register("multiset", "toolgym.verifiers.answers:verify_multiset")
VERIFIERS.register("json", "toolgym.verifiers.answers:verify_json")
VERIFIERS.register("alias", "toolgym.verifiers.aliases:verify_alias")  # a name or one of its aliases, normalised
VERIFIERS.register("itinerary", "toolgym.verifiers.itinerary:verify_itinerary")
VERIFIERS.register("state", "toolgym.verifiers.state:verify_state")
VERIFIERS.register("table", "toolgym.verifiers.table:verify_table")
VERIFIERS.register("hidden_tests", "toolgym.verifiers.hidden_tests:verify_hidden_tests")  # in a judge sandbox

#: Where a ToolEnv's tasks come from (``toolgym.envs.sources.make_source`` picks by config):
#: each entry is a :class:`~toolgym.envs.sources.TaskSource` class next to what it wraps.
SOURCES: Registry[Any] = Registry("task source")
SOURCES.register("dataset", "toolgym.data.source:DatasetSource")  # (family, path, split, difficulties)
SOURCES.register("synth", "toolgym.synth.fly:SynthSource")  # (family, difficulties, split)

BACKENDS: Registry[Any] = Registry("sandbox backend")  # each entry: (**config) -> Backend
BACKENDS.register("local", "toolgym.sandbox.local:local_backend")
BACKENDS.register("docker", "toolgym.sandbox.container:docker_backend")

#: How a synthesis run computes its worlds (``toolgym.synth.run.synthesize`` picks by ``SynthConfig.executor``):
#: each entry is a factory ``(workers) -> Executor`` (:class:`toolgym.synth.executors.Executor`).
EXECUTORS: Registry[Any] = Registry("executor")
EXECUTORS.register("serial", "toolgym.synth.executors:SerialExecutor")  # this process, one world at a time
EXECUTORS.register("local", "toolgym.synth.executors:LocalExecutor")  # a fork process pool (one worker: serial)
EXECUTORS.register("ray", "toolgym.synth.rayexec:RayExecutor")  # Ray actors, one machine or many (toolgym[ray])

#: Each entry: ``(**options) -> PolicyFactory | BatchPolicy`` (``toolgym.policy.evaluate.make_policy``; options
#: validated by the entry's pydantic model, ``seed`` always given).
POLICIES: Registry[Any] = Registry("policy")
POLICIES.register("reference", "toolgym.policy.evaluate:reference_policy")
POLICIES.register("null", "toolgym.policy.evaluate:null_policy")
POLICIES.register("random", "toolgym.policy.evaluate:random_policy")
POLICIES.register("bluff", "toolgym.policy.evaluate:bluff_policy")
POLICIES.register("model", "toolgym.policy.model_policy:model_policy")
POLICIES.register("openai", "toolgym.policy.openai_policy:openai_policy")  # any OpenAI-compatible endpoint


#: What a family id looks like: task ids start with it (``<id>-fly-s<seed>-d<difficulty>``, see
#: :mod:`toolgym.synth.fly`), so no hyphen, no capitals, not empty.
FAMILY_ID = re.compile(r"[a-z][a-z0-9_]*", re.ASCII)

#: What every family class has (:class:`toolgym.synth.family.Family`), checked when its instance is built.
_FAMILY_SHAPE = ("id", "env_name", "version", "make_world", "load_world", "make_task", "tools", "reference")


def check_family_id(family_id: str) -> None:
    """Refuse an id that is not of the form ``[a-z][a-z0-9_]*`` (ConfigError naming a fixed one)."""
    if not (isinstance(family_id, str) and FAMILY_ID.fullmatch(family_id)):
        fix = re.sub(r"[^a-z0-9_]", "_", str(family_id).lower()).lstrip("0123456789_") or "my_family"
        raise ConfigError(f"family id {family_id!r} must match [a-z][a-z0-9_]* (task ids start with it); write {fix!r}")


def family_env_id(cls: Any) -> str:
    """A family class's own Gymnasium id, ``toolgym/<env_name>-v<version>`` (the one rule for it)."""
    return f"toolgym/{getattr(cls, 'env_name')}-v{getattr(cls, 'version')}"  # noqa: B009


def check_family_class(family_id: str, cls: Any, env_id: str | None = None) -> None:
    """Refuse a class that cannot serve ``family_id``: not Family-shaped, another id, another env id.

    The table takes any entry (lazy strings are imported on first use), so this runs when
    :func:`family` builds an instance, and in :func:`toolgym.synth.register_family` before
    anything is registered. Duck-typed (this is layer L0: it cannot import ``toolgym.synth.family``).

    Args:
        family_id: The id it is (to be) registered under.
        cls: The loaded entry point.
        env_id: The Gymnasium id it is (to be) registered under, if any.

    Raises:
        ConfigError: Saying what to write instead.
    """
    check_family_id(family_id)
    name = getattr(cls, "__name__", repr(cls))
    missing = [a for a in _FAMILY_SHAPE if not hasattr(cls, a)]
    if not isinstance(cls, type) or missing:
        raise ConfigError(
            f"family {family_id!r}: {name} is not a family class"
            + (f" (it lacks {', '.join(missing)})" if missing and isinstance(cls, type) else "")
            + "; register a subclass of toolgym.synth.family.Family"
        )
    own_id: Any = getattr(cls, "id")  # noqa: B009 - typed Any: cls is any class here
    if own_id != family_id:
        raise ConfigError(
            f"family {family_id!r}: {name}.id is {own_id!r}; register it as {own_id!r} "
            f"or set id = {family_id!r} in the class (task ids and datasets use the class's id)"
        )
    own = family_env_id(cls)
    if env_id is not None and env_id != own:
        raise ConfigError(
            f"family {family_id!r}: env_id {env_id!r} is not {name}'s own {own!r} (its env_name and version); "
            f"leave env_id out, or change env_name/version in the class"
        )


#: The entry-point group installed distributions list their families in (``[project.entry-points."toolgym.families"]``,
#: the entry's name is the family id): :func:`toolgym.synth.load_plugins` loads them all, :func:`family` one on demand.
PLUGIN_GROUP = "toolgym.families"


def _plugin_family(family_id: str) -> bool:
    """Register the installed plugin family ``family_id``, if there is one (see :func:`family`).

    Returns:
        Whether a plugin of that name was found and registered (table and Gymnasium id).

    Raises:
        ConfigError: The plugin is installed but fails to import or cannot serve the id.
    """
    from importlib.metadata import entry_points

    import gymnasium as gym

    from toolgym.envs.registration import register_env

    for ep in entry_points(group=PLUGIN_GROUP, name=family_id):
        try:
            cls = ep.load()
        except Exception as exc:  # a plugin's import may raise anything
            why = f"{type(exc).__name__}: {exc}"
            raise ConfigError(f"plugin family {family_id!r} ({ep.value}) failed to import: {why}") from exc
        check_family_class(family_id, cls)
        env_id = family_env_id(cls)
        FAMILIES.register(family_id, cls, env_id=env_id)
        if env_id not in gym.registry:
            register_env(env_id, family_id)
        return True
    return False


#: The one cache of family instances: id -> (the class it was built from, the instance).
_FAMILY_INSTANCES: dict[str, tuple[Any, Any]] = {}


def family(family_id: str) -> Any:
    """The family instance for an id: one per id and process, built on first use.

    This is how every layer gets a family (``toolgym.synth.get_family`` delegates here), so
    ``envs`` reaches a family's runtime (typed as :class:`toolgym.envs.runtime.Runtime`) without
    importing ``synth``. The cache follows the table: an id unregistered and registered again
    with another class gets a new instance, no cache to clear.

    A table entry that cannot serve the id (a lazy ``"module:Class"`` is only imported here) is
    refused when its instance is built: checked once per instance, not per call.

    An id not in the table but installed as a plugin (:data:`PLUGIN_GROUP`) is registered here on
    first use, so everything that reaches families through this function (unpickling an env in a
    fresh process, a spawned vector-env worker, ``make_env``) works without a
    :func:`toolgym.synth.load_plugins` call; ``import toolgym`` itself still imports no plugin.
    (``gymnasium.make`` by Gymnasium id needs the id registered first: that is what
    ``load_plugins`` is for, at the top level of a module that spawned workers import.)

    Raises:
        UnknownNameError: An unregistered id (the message names the closest ones).
        ConfigError: The entry is not a family class, or its ``id`` (or env id) is not the registered one.
    """
    try:
        cls = FAMILIES.get(family_id)
    except UnknownNameError:
        if not (isinstance(family_id, str) and FAMILY_ID.fullmatch(family_id) and _plugin_family(family_id)):
            raise
        cls = FAMILIES.get(family_id)
    hit = _FAMILY_INSTANCES.get(family_id)
    if hit is not None and hit[0] is cls:
        return hit[1]
    check_family_class(family_id, cls, FAMILIES.meta(family_id).get("env_id"))
    instance = cls()
    _FAMILY_INSTANCES[family_id] = (cls, instance)
    return instance


def env_ids() -> dict[str, str]:
    """Gymnasium id -> family id, derived from :data:`FAMILIES` (families registered later included)."""
    return {FAMILIES.meta(f)["env_id"]: f for f in FAMILIES if "env_id" in FAMILIES.meta(f)}


#: The env ids of the shipped families (``env_ids()`` also lists families registered later).
ENV_IDS: dict[str, str] = env_ids()


def _register_all() -> None:
    import gymnasium as gym

    from toolgym.envs.registration import register_env

    for env_id, family in ENV_IDS.items():
        if env_id not in gym.registry:  # importing the package twice (reload) must not fail
            register_env(env_id, family)


_register_all()

__all__ = [
    "BACKENDS",
    "ENV_IDS",
    "EXECUTORS",
    "FAMILIES",
    "POLICIES",
    "SOURCES",
    "VERIFIERS",
    "FAMILY_ID",
    "PLUGIN_GROUP",
    "__version__",
    "check_family_class",
    "family_env_id",
    "check_family_id",
    "env_ids",
    "family",
]
