"""The central table: one registry shape, every family reachable by its Gymnasium id, every verifier kind known."""

from __future__ import annotations

import random

import gymnasium as gym
import pytest

import toolgym
from toolgym.errors import DuplicateRegistrationError, UnknownNameError
from toolgym.registry import Registry, load
from toolgym.synth import get_family

SHIPPED = [f for f, entry in toolgym.FAMILIES.items() if isinstance(entry, str)]


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


@pytest.mark.parametrize("family_id", SHIPPED)
def test_every_family_has_its_gymnasium_id_registered(family_id):
    env_id = toolgym.FAMILIES.meta(family_id)["env_id"]
    assert get_family(family_id).env_id == env_id  # the table and the class agree
    assert toolgym.ENV_IDS[env_id] == family_id and env_id in gym.registry


@pytest.mark.parametrize("family_id", SHIPPED)
def test_every_verifier_kind_a_family_emits_is_registered(family_id):
    fam = get_family(family_id)
    kinds: set[str] = set()

    def walk(spec):
        kinds.add(spec["kind"])
        for sub in spec.get("checks", ()):
            walk(sub)

    for d in range(1, 6):
        for seed in range(4):
            world = fam.make_world(seed, d)
            draft = fam.make_task(world, d, random.Random(seed))
            if draft is not None:
                walk(draft.verifier)
    assert kinds and all(k in toolgym.VERIFIERS for k in kinds), kinds
    for k in toolgym.VERIFIERS:
        assert callable(toolgym.VERIFIERS.get(k))  # every line of the table resolves
