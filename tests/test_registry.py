"""The central table: one registry shape, every family reachable by its Gymnasium id, every verifier kind known."""

from __future__ import annotations

import inspect
import json
import random

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolgym
from toolgym.envs.rollout import ProgramPolicy, run_episode
from toolgym.envs.runtime import Runtime
from toolgym.envs.sources import MemorySource, TaskSource, make_source
from toolgym.envs.toolenv import EnvConfig, make_env
from toolgym.envs.tools import Toolset
from toolgym.errors import ConfigError, DuplicateRegistrationError, UnknownNameError
from toolgym.registry import Registry, load
from toolgym.synth import get_family
from toolgym.synth.candidate import build_task
from toolgym.synth.family import Family

SHIPPED = [f for f, entry in toolgym.FAMILIES.items() if isinstance(entry, str)]
ALL = list(toolgym.FAMILIES)  # the shipped ones and the test families of conftest.py (ledger, inventory)


def test_registry_is_lazy_refuses_duplicates_and_names_the_closest():
    reg: Registry[object] = Registry("widget")
    reg.register("alpha", "json:dumps", note="x")
    assert "alpha" in reg and list(reg) == ["alpha"] and len(reg) == 1 and reg.meta("alpha") == {"note": "x"}
    assert reg.entry("alpha") == "json:dumps" and reg.get("alpha") is load("json:dumps")
    with pytest.raises(DuplicateRegistrationError, match="widget 'alpha'"):
        reg.register("alpha", object())
    with pytest.raises(UnknownNameError, match="did you mean alpha"):
        reg.get("alpah")
    reg.register("broken", "toolgym.no_such_module:x")  # a broken entry breaks only its own id, on use
    with pytest.raises(ImportError):
        reg.get("broken")
    reg.unregister("broken")
    assert "broken" not in reg
    with pytest.raises(ValueError, match="module:attr"):
        load("json.dumps")


@pytest.mark.parametrize("family_id", ALL)
def test_every_family_has_its_gymnasium_id_registered(family_id):
    env_id = toolgym.FAMILIES.meta(family_id)["env_id"]
    assert get_family(family_id).env_id == env_id  # the table and the class agree
    assert toolgym.env_ids()[env_id] == family_id and env_id in gym.registry
    if family_id in SHIPPED:
        assert toolgym.ENV_IDS[env_id] == family_id
    env = gym.make(env_id)  # one registration call is enough to make it
    try:
        obs, info = env.reset(seed=0)
        assert obs.endswith("<|assistant|>") and info["task_id"].startswith(family_id)
    finally:
        env.close()


def test_register_family_is_one_call_for_table_and_gymnasium():
    from toolgym.synth import register_family, unregister_family

    ledger = type(get_family("ledger"))

    class Ledger2(ledger):  # type: ignore[misc, valid-type]
        id = "ledger2"
        env_name = "LedgerTwo"

    register_family("ledger2", Ledger2)
    try:
        assert toolgym.FAMILIES.meta("ledger2")["env_id"] == "toolgym/LedgerTwo-v0" in gym.registry
        Ledger3 = type("Ledger3", (Ledger2,), {"id": "ledger3"})
        with pytest.raises(DuplicateRegistrationError):  # the same Gymnasium id twice
            register_family("ledger3", Ledger3)
        assert "ledger3" not in toolgym.FAMILIES  # nothing half-registered
    finally:
        unregister_family("ledger2")
    assert "ledger2" not in toolgym.FAMILIES and "toolgym/LedgerTwo-v0" not in gym.registry
    with pytest.raises(ConfigError, match="env_id"):  # a lazy entry cannot name its own id
        register_family("lazy", "tests.nowhere:Family")
    assert "lazy" not in toolgym.FAMILIES


@pytest.mark.parametrize("family_id", SHIPPED)
def test_every_verifier_kind_a_family_emits_is_registered(family_id):
    fam = get_family(family_id)
    kinds: set[str] = set()

    def walk(spec):
        kinds.add(spec["kind"])
        for sub in spec.get("checks", ()):
            walk(sub)

    for d in range(1, 6):
        for seed in range(4 if d <= 3 else 1):  # a d5 search world is 100k documents (~2 s)
            world = fam.make_world(seed, d)
            draft = fam.make_task(world, d, random.Random(seed))
            if draft is not None:
                walk(draft.verifier_spec)
    assert kinds and all(k in toolgym.VERIFIERS for k in kinds), kinds
    for k in toolgym.VERIFIERS:
        assert callable(toolgym.VERIFIERS.get(k))  # every line of the table resolves


def test_one_family_cache_follows_the_table():
    # synth's get_family and the face's family() share one instance per id ...
    assert toolgym.family("trip") is get_family("trip") is toolgym.family("trip")

    class Probe(type(get_family("trip"))):  # type: ignore[misc]
        id = "probe"

    # ... and an id registered again with another class gets a new instance, no cache to clear.
    toolgym.FAMILIES.register("probe", Probe)
    try:
        first = toolgym.family("probe")
        assert type(first) is Probe and get_family("probe") is first
        toolgym.FAMILIES.unregister("probe")

        class Probe2(Probe):
            pass

        toolgym.FAMILIES.register("probe", Probe2)
        assert type(get_family("probe")) is Probe2
    finally:
        toolgym.FAMILIES.unregister("probe")
    with pytest.raises(UnknownNameError, match="did you mean trip"):
        toolgym.family("tirp")


def _as_runtime(family: Family) -> Runtime:
    return family  # mypy: every Family satisfies the env side's Runtime protocol


@pytest.mark.parametrize("family_id", list(toolgym.FAMILIES))
def test_every_family_serves_the_runtime_protocol(family_id):
    fam = _as_runtime(get_family(family_id))
    assert isinstance(fam.id, str) and fam.id == family_id
    for name, member in vars(Runtime).items():
        if name.startswith("_") or not callable(member):
            continue
        wanted = list(inspect.signature(member).parameters)
        assert list(inspect.signature(getattr(type(fam), name)).parameters) == wanted, name


@pytest.mark.parametrize("source_id", list(toolgym.SOURCES))
def test_every_task_source_is_a_task_source(source_id):
    assert issubclass(toolgym.SOURCES.get(source_id), TaskSource)


def test_make_source_picks_from_the_table(tmp_path):
    fam = get_family("trip")
    src = make_source(fam, EnvConfig(family="trip", split="test"))
    assert type(src) is toolgym.SOURCES.get("synth") and src.split == "test" and src.family is fam
    with pytest.raises(ConfigError):  # an unknown split fails in make_source, before any source is built
        make_source(fam, EnvConfig(family="trip", split="nope", dataset=tmp_path / "x.duckdb"))


def test_every_sandbox_backend_of_the_table_resolves_and_unknown_names_list_them():
    from toolgym.sandbox import get_backend

    for name in toolgym.BACKENDS:
        assert callable(toolgym.BACKENDS.get(name))
    with pytest.raises(UnknownNameError, match="known: local, docker"):
        get_backend("firecracker")


@pytest.mark.parametrize("family_id", list(toolgym.FAMILIES))
def test_every_family_with_a_write_tool_isolates_episodes(family_id):
    """Two reference episodes in one env see the same start and leave the shared world unwritten;
    a read-only toolset shares the world itself (no copy on the hot path), unless the family has
    a context of its own (the code family's sandbox)."""
    fam = get_family(family_id)
    own_context = type(fam).episode_context is not Family.episode_context
    checked = 0
    for seed in range(8):
        world = fam.make_world(seed, 2)
        draft = fam.make_task(world, 2, random.Random(seed))
        if draft is None:
            continue
        task = build_task(fam, "w", "t", 2, "train", draft)
        env = make_env(family_id, source=MemorySource([(task, world)]), messages=False)
        before = json.dumps(world.to_json(), sort_keys=True, default=str)
        runs, contexts = [], []
        for _ in range(2 if Toolset(fam.tools(task.tool_config)).has_write_tools else 0):
            env.reset(options={"task_id": "t"})
            contexts.append(env._ctx)
            agent = ProgramPolicy(fam.reference(task.params, task.tool_config))
            runs.append(run_episode(env, agent, options={"task_id": "t"}))
        if not runs:  # read-only: the world itself
            env.reset(options={"task_id": "t"})
            assert own_context or env._ctx is world
        env.close()
        assert all(c is not world for c in contexts) and len({id(c) for c in contexts}) == len(contexts)
        assert all(r.observations == runs[0].observations for r in runs)  # the same start every episode
        assert json.dumps(world.to_json(), sort_keys=True, default=str) == before  # the shared world unwritten
        checked += 1
    assert checked


def _fresh(family_id: str = "fresh", env_name: str = "Fresh", version: int = 0) -> type[Family]:
    """A concrete family class (the ledger's code) with its own id and Gymnasium id."""
    base = type(get_family("ledger"))
    return type(f"{env_name}Family", (base,), {"id": family_id, "env_name": env_name, "version": version})


class _Half(Family):
    id = "half"
    env_name = "Half"
    version = 0
    summary = "abstract: no hooks"


#: Every refusal of register_family: (id, entry point, env_id) -> (error, what the message says).
REFUSALS = [
    ("vault", _fresh(), None, ConfigError, "FreshFamily.id is 'fresh'; register it as 'fresh' or set id = 'vault'"),
    ("fresh", _fresh(), "toolgym/Vault-v3", ConfigError, "not FreshFamily's own 'toolgym/Fresh-v0'"),
    ("", _fresh(""), None, ConfigError, r"family id '' must match \[a-z\]\[a-z0-9_\]\*.*write 'my_family'"),
    ("my-bank", _fresh("my-bank"), None, ConfigError, "write 'my_bank'"),
    ("Bank", _fresh("Bank"), None, ConfigError, "write 'bank'"),
    ("my-bank", "bank_plugin:BankFamily", "toolgym/MyBank-v0", ConfigError, "write 'my_bank'"),
    ("notfam", dict, "toolgym/NotFam-v0", ConfigError, "'dict' is not a subclass of toolgym.synth.family.Family"),
    ("fresh", _fresh()(), None, ConfigError, "is not a subclass of toolgym.synth.family.Family"),
    ("half", _Half, None, ConfigError, "_Half does not define bluff_answer, load_world"),
    ("fresh", _fresh(env_name="Bad-Name"), None, ConfigError, "must look like 'toolgym/<Name>-v<N>'"),
    ("ghost", "nosuch.mod:X", "Ghost-v0", ConfigError, "must look like 'toolgym/<Name>-v<N>'"),
    ("ghost", "nosuch.mod.X", "toolgym/Ghost-v0", ConfigError, "must look like 'package.module:Class'"),
    ("ghost", "nosuch.mod:X", None, ConfigError, "needs env_id="),
    ("trip", _fresh("trip", "Trip2"), None, DuplicateRegistrationError, "family 'trip' is already registered"),
    ("fresh", _fresh(env_name="TripPlanning", version=1), None, DuplicateRegistrationError, "TripPlanning-v1"),
]


@pytest.mark.parametrize(("family_id", "entry", "env_id", "error", "message"), REFUSALS)
def test_register_family_refuses_what_cannot_serve_the_id_and_registers_nothing(
    family_id, entry, env_id, error, message
):
    from toolgym.synth import register_family

    families, envs = list(toolgym.FAMILIES), set(gym.registry)
    with pytest.raises(error, match=message):
        register_family(family_id, entry, env_id=env_id)
    assert list(toolgym.FAMILIES) == families and set(gym.registry) == envs  # nothing half-registered


def test_register_family_takes_what_it_refused_once_written_as_the_message_says():
    from toolgym.synth import register_family, unregister_family

    register_family("fresh", _fresh(), env_id="toolgym/Fresh-v0")  # the class's own env id, given explicitly
    try:
        env = gym.make("toolgym/Fresh-v0")
        assert env.reset(seed=0)[1]["task_id"].startswith("fresh")
        env.close()
    finally:
        unregister_family("fresh")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet="abzAZ09_-.é ", max_size=8))
def test_an_id_is_accepted_exactly_when_on_the_fly_task_ids_can_carry_it(family_id):
    from toolgym.synth import register_family, unregister_family
    from toolgym.synth.fly import _FLY_ID

    families = list(toolgym.FAMILIES)
    fits = _FLY_ID.fullmatch(f"{family_id}-fly-s0-d1") is not None and family_id not in families
    try:
        register_family(family_id, _fresh(family_id, "PropFamily"))
    except ConfigError as exc:
        assert not fits and "must match [a-z][a-z0-9_]*" in str(exc)
        assert list(toolgym.FAMILIES) == families and "toolgym/PropFamily-v0" not in gym.registry
    except DuplicateRegistrationError:
        assert family_id in families
    else:
        assert fits
        unregister_family(family_id)


def test_a_lazy_entry_that_cannot_serve_its_id_is_refused_on_first_use():
    from toolgym.synth import register_family, unregister_family

    register_family("vault", "toolgym.synth.trip.family:TripPlanning", env_id="toolgym/Vault-v0")  # imports nothing
    try:
        with pytest.raises(ConfigError, match="TripPlanning.id is 'trip'; register it as 'trip' or set id = 'vault'"):
            toolgym.family("vault")
        with pytest.raises(ConfigError, match="TripPlanning.id is 'trip'"):  # gym.make serves no other family's tasks
            gym.make("toolgym/Vault-v0")
    finally:
        unregister_family("vault")
    toolgym.FAMILIES.register("decoder", "json:JSONDecoder")
    try:
        with pytest.raises(ConfigError, match="JSONDecoder is not a family class .*lacks id, env_name"):
            toolgym.family("decoder")
    finally:
        toolgym.FAMILIES.unregister("decoder")
    trip = type(get_family("trip"))
    with pytest.raises(ConfigError, match="env_id 'toolgym/Trip-v9' is not TripPlanning's own"):
        toolgym.check_family_class("trip", trip, "toolgym/Trip-v9")
