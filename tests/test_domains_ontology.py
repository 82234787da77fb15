"""The archetype files: every one loads, and the validator catches the mistakes a writer makes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from toolgym.errors import ConfigError
from toolgym.synth.domains.ontology import ARCHETYPE_DIR, archetypes, load_archetype


def test_every_shipped_archetype_loads_and_is_rich_enough() -> None:
    found = archetypes()
    assert found, "no archetype files"
    for aid, a in found.items():
        assert a.id == aid
        assert len(a.entities) >= 3, aid
        assert sum(e.core for e in a.entities) >= 2, aid
        assert len(a.actions) >= 4, aid
        assert any(act.creates for act in a.actions) and any(act.target for act in a.actions), aid
        assert any(p.forbid_if for p in a.policies) and any(p.require for p in a.policies), aid
        assert any(e.label for e in a.entities), aid


def _broken(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load((ARCHETYPE_DIR / "clinic.yaml").read_text())
    edit(data)
    path = tmp_path / "clinic.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d["entities"][0].update(colour="red"), "colour"),
        (lambda d: d["entities"][0]["attributes"].append({"name": "x", "kind": "blob"}), "kind"),
        (lambda d: d["entities"][3]["attributes"][0].update(to="nobody"), "unknown entity 'nobody'"),
        (lambda d: d["actions"][1]["requires"].append(["statuz", "eq", "x"]), "unknown field 'statuz'"),
        (lambda d: d["actions"][1]["requires"].append(["status", "like", "x"]), "op one of"),
        (lambda d: d["actions"][0]["requires"].append(["$nurse", "eq", 1]), "unknown parameter '$nurse'"),
        (lambda d: d["actions"][3]["effects"].append({"add": "patient.wealth", "by": 1}), "patient.wealth"),
        (lambda d: d["policies"][0].update(action="heal"), "unknown action 'heal'"),
        (lambda d: d["policies"][0].update(require=[["status", "eq", "x"]]), "exactly one of forbid_if, require"),
        (lambda d: d["entities"][0]["attributes"][4].update(pattern="99"), "takes no pattern"),
        (lambda d: d.update(id="hospital"), "the file's stem"),
        (lambda d: d["actions"][1]["requires"].append(["starts_at", "gt", "now+8w"]), "time offset 'now+8w'"),
        (lambda d: d["entities"][0]["attributes"][4].update(after="email"), "takes no after"),
        (lambda d: d["entities"][0]["attributes"][3].update(after="birth_date"), "not an earlier date or datetime"),
    ],
)
def test_a_broken_archetype_is_a_clear_error(tmp_path: Path, edit, needle: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="clinic.yaml") as err:
        load_archetype(_broken(tmp_path, edit))
    assert needle in str(err.value)
