"""One name rule for every family: NFC, trimmed surrounding whitespace, case-sensitive, a hint on a miss.

Trip worlds are ASCII, so the trip tests rename a real world (and its task) to accented names
in NFC; the NFD spelling of the same names then differs byte for byte and must still match.
"""

import random
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs import naming
from toolgym.envs.agents import SubmitAgent
from toolgym.envs.rollout import ProgramPolicy, run_episode
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.envs.tools import Toolset
from toolgym.errors import ConfigError
from toolgym.synth import get_family
from toolgym.synth.candidate import build_task
from toolgym.synth.code.tools import CodeContext
from toolgym.synth.code.tools import toolset as code_toolset
from toolgym.synth.trip.world import TripWorld
from toolgym.verifiers.verdict import verify

NFD = ("NFD", "NFC")
SPACES = st.text(alphabet=" \t\n\r\u00a0\u2003\u3000", max_size=3)
# Names with letters that have canonical decompositions (é = e + U+0301, ö, ñ, Å, ǅ…) and some without.
NAME = st.text(alphabet="abcXYZ éöñÅçĳǅ-'.ÆØ", min_size=1, max_size=14).map(naming.canon).filter(bool)


def nfd(s: str) -> str:
    return unicodedata.normalize("NFD", s)


# ----------------------------------------------------------------------------------- the rule


def test_the_rule_on_its_minimal_inputs():
    assert naming.canon("Cafe\u0301 Lumen ") == "Caf\u00e9 Lumen"
    assert naming.same("Cafe\u0301 Lumen", "\tCaf\u00e9 Lumen\n")
    assert not naming.same("Caf\u00e9 Lumen", "caf\u00e9 lumen")  # case matters
    assert not naming.same("Caf\u00e9 Lumen", "Caf\u00e9  Lumen")  # inner whitespace matters
    assert naming.closest("caf\u00e9 lumen", ["Hotel Vorn", "Caf\u00e9 Lumen"]) == "Caf\u00e9 Lumen"
    assert naming.closest("Hotel Vorm", ["Caf\u00e9 Lumen", "Hotel Varn", "Hotel Vorn"]) == "Hotel Vorn"
    assert naming.closest("x", []) is None
    assert "Names are matched exactly after Unicode NFC normalization" in naming.RULE


@settings(max_examples=300, deadline=None)
@given(names=st.lists(NAME, min_size=1, max_size=12, unique=True), data=st.data())
def test_every_variant_of_a_name_resolves_and_every_other_string_gets_a_hint(names, data):
    table = {n: i for i, n in enumerate(names)}
    name = data.draw(st.sampled_from(names))
    form = data.draw(st.sampled_from(NFD))
    variant = data.draw(SPACES) + unicodedata.normalize(form, name) + data.draw(SPACES)
    assert naming.lookup(table, variant) == table[name]
    assert naming.resolve(set(names), variant) == name
    other = data.draw(st.text(max_size=20))
    if naming.canon(other) not in table:
        assert naming.lookup(table, other) is None and naming.resolve(table, other) is None
        assert naming.closest(other, names) in names  # every miss names a real name
        assert naming.did_you_mean(other, names).startswith("; did you mean ")


# ------------------------------------------------------------------------- trip, accented world

TRIP = get_family("trip")


def accent(s: str) -> str:
    """An injective ASCII → accented-NFC renaming (é, ö, ñ are precomposed in NFC)."""
    return s.replace("e", "\u00e9").replace("o", "\u00f6").replace("n", "\u00f1")


def rename(obj, names):
    """``obj`` with every string (value or key) that is a world name replaced by its accented form."""
    if isinstance(obj, str):
        return names.get(obj, obj)
    if isinstance(obj, dict):
        return {rename(k, names): rename(v, names) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rename(v, names) for v in obj]
    return obj


@pytest.fixture(scope="module", params=[(1, 2), (3, 4)])
def accented_trip(request):
    """A real trip task and its world, every name renamed to an accented NFC name."""
    seed, difficulty = request.param
    base = TRIP.make_world(seed, difficulty)
    draft = next(
        d for k in range(20) if (d := TRIP.make_task(base, difficulty, random.Random(seed * 100 + k))) is not None
    )
    names = {n: accent(n) for n in [*base.cities, *base.venues]}
    assert len(set(names.values())) == len(names) and any(a != n for n, a in names.items())
    world = TripWorld(rename(base.data, names))
    prompt = draft.prompt
    for n in sorted(names, key=len, reverse=True):
        prompt = prompt.replace(n, names[n])
    draft = draft.model_copy(
        update={"prompt": prompt, **{k: rename(getattr(draft, k), names) for k in ("params", "verifier_spec", "meta")}}
    )
    task = build_task(TRIP, "w", "t", difficulty, "train", draft)
    return world, task


def test_a_reference_plan_in_nfd_scores_one(accented_trip):
    world, task = accented_trip
    plan = task.meta["planted"]
    as_nfd = [{k: nfd(v) for k, v in d.items()} for d in plan]
    assert as_nfd != plan  # the NFD spelling really differs
    assert verify(task.verifier_spec, plan, world).passed
    assert verify(task.verifier_spec, as_nfd, world).passed
    padded = [{k: f" {v}\t" for k, v in d.items()} for d in as_nfd]
    assert verify(task.verifier_spec, padded, world).passed
    env = make_env("trip", source=MemorySource([(task, world)]))
    assert run_episode(env, SubmitAgent(as_nfd)).reward == 1.0  # the input, through the env
    assert run_episode(env, ProgramPolicy(TRIP.reference(task.params, task.tool_config))).reward == 1.0


def test_a_case_changed_name_scores_zero_and_the_reason_names_the_closest(accented_trip):
    world, task = accented_trip
    plan = [dict(d) for d in task.meta["planted"]]
    plan[0]["hotel"] = plan[0]["hotel"].upper()
    v = verify(task.verifier_spec, plan, world)
    assert not v.passed and f"did you mean {task.meta['planted'][0]['hotel']!r}" in v.reason


def test_every_trip_tool_taking_a_name_follows_the_rule(accented_trip):
    world, task = accented_trip
    ts = Toolset(TRIP.tools({"weather": True, "distractor_tools": True}))
    city = next(c for c in world.cities if nfd(c) != c)
    venue = next(v for v in world.venues if nfd(v) != v)
    kind = world.venues[venue][0]
    date = world.data["dates"][0]
    variants = [nfd(city), f" {nfd(city)}\n"]
    for v in variants:
        for tool in ("get_hotels_by_city", "get_restaurants_by_city", "get_attractions_by_city", "get_local_transport"):
            ok, out = ts.call(world, tool, {"city": v})
            assert ok and out["city"] == city, (tool, out)
        ok, out = ts.call(world, "get_weather", {"city": v, "date": date})
        assert ok and out["city"] == city
        other = next(c for c in world.cities if c != city and world.transport(city, c))
        ok, out = ts.call(world, "get_inter_city_transport", {"from_city": v, "to_city": nfd(other) + " "})
        assert ok and (out["from"], out["to"]) == (city, other) and out["options"]
    for v in (nfd(venue), f"\t{nfd(venue)} "):
        assert ts.call(world, f"get_{kind}_info", {"name": v}) == (True, dict(world.venues[venue][1]))
        assert ts.call(world, "get_city_by_venue", {"name": v})[1]["name"] == venue
    # Misses (case, inner whitespace, typos) are errors that name the closest name of the right kind.
    ok, err = ts.call(world, "get_hotels_by_city", {"city": city.lower()})
    assert not ok and f"did you mean {city!r}" in err
    ok, err = ts.call(world, f"get_{kind}_info", {"name": venue.swapcase()})
    assert not ok and f"did you mean {venue!r}" in err
    ok, err = ts.call(world, "get_city_by_venue", {"name": "zzzz"})
    assert not ok and "did you mean '" in err


def test_a_world_with_non_canonical_names_is_refused(accented_trip):
    world, _ = accented_trip
    data = rename(world.data, {world.cities[0]: nfd(world.cities[0]) + " "})
    with pytest.raises(ConfigError, match="not canonical"):
        TripWorld(data)


# ------------------------------------------------------------------------------- code family


def test_code_file_names_follow_the_rule():
    ctx = CodeContext({"caf\u00e9.csv": "a,b\n1,2\n", "orders.csv": "x\n"})
    ts = Toolset(code_toolset({"answer": "integer"}))
    for v in ("cafe\u0301.csv", " caf\u00e9.csv\n"):
        ok, out = ts.call(ctx, "read_file", {"path": v})
        assert ok and out["text"] == "a,b\n1,2" and out["path"] == "caf\u00e9.csv"
    ok, err = ts.call(ctx, "read_file", {"path": "Caf\u00e9.csv"})
    assert not ok and "did you mean 'caf\u00e9.csv'" in err
    ok, err = ts.call(ctx, "read_file", {"path": "order.csv"})
    assert not ok and "did you mean 'orders.csv'" in err


@settings(max_examples=100, deadline=None)
@given(names=st.lists(NAME, min_size=2, max_size=6, unique=True), data=st.data())
def test_code_answers_match_names_by_the_rule(names, data):
    from toolgym.synth.code.tasks import verifier_spec

    variant = [data.draw(SPACES) + unicodedata.normalize(data.draw(st.sampled_from(NFD)), n) for n in names]
    assert verify(verifier_spec("names", names), variant[::-1]).passed
    assert verify(verifier_spec("string", names[0]), variant[0]).passed
    record = {"name": names[0], "value": 2.5}
    assert verify(verifier_spec("record", record), {"name": variant[0], "value": 2.5}).passed
    other = data.draw(st.text(max_size=12))
    if naming.canon(other) not in names:
        assert not verify(verifier_spec("names", names), [*variant[1:], other]).passed
        v = verify(verifier_spec("string", names[0]), other)
        assert not v.passed and "did you mean" in v.reason


def test_a_hint_holds_the_exact_name_to_copy_back():
    """A suggested name decodes to exactly the world's name, whatever characters it has."""
    from toolgym.envs import markup as mk
    from toolgym.envs.naming import did_you_mean

    odd = "<|end|>\u202e\U0001f642\x01.csv"
    hint = did_you_mean("<|end|>\u202e\U0001f642\x01.cs", [odd, "trips.csv"])
    assert hint == f"; did you mean '{odd}'?"
    payload = mk.tool_payload("read_file", error="no file named 'x'" + hint)
    assert odd in mk.loads(payload)["error"] and "<|end|>" not in payload
