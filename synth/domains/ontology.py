"""The domain ontology: archetypes as data (``archetypes/*.yaml``), validated here.

An **archetype** (a clinic, a library, an airline …) is a YAML file that names entity types with
typed attributes, many-to-many links, actions (verbs with preconditions and effects) and business
policies. It holds no code: the generator (``world.py``) samples a world from it, derives the
toolset from the sampled schema, and the tasks, reference and verifier follow. Every archetype
shares one typed vocabulary of attribute kinds (:data:`KINDS`, generated in ``kinds.py``).

The format: ``archetypes/clinic.yaml`` is the annotated full example. An archetype has ``id``
(the file's stem), ``title``, ``org`` (words and suffixes naming the organisation), ``entities``
(``id``, ``plural``, ``aliases``, ``key_prefix``, ``label``, ``count`` = rows at difficulty 1
and 5, ``core``, ``attributes``), ``links`` (many-to-many), ``actions`` (``target`` an existing
row or ``creates`` one; ``params``, ``init``, ``requires``, ``effects``) and ``policies``.
Aliases (entities, attributes, verbs) are names a world may use instead of the canonical one, so
worlds of one archetype differ in their toolsets; the canonical names stay in the data.

**Operands.** In a condition ``[left, op, right]`` and in effects:

* ``field`` (a bare name, or ``@field`` as on the right): an attribute of the target row (for
  ``creates``, of the new row);
* ``ref.field``: follow the target's ``ref`` attribute ``ref`` to that row's attribute;
* ``$param`` and ``$param.field``: an action parameter, or the row a ``ref`` parameter names;
* right-hand only: a literal (string, number, bool, null); ``"@field"`` / ``"@ref.field"`` (a field,
  as on the left); ``"$param"``; ``now``, ``today`` with an offset (``now+24h``, ``today-65y``,
  ``today+14d``; units ``m h d y``).

A condition may also count rows: ``{count: loan, where: [[member, eq, $member], [status, eq,
active]], op: ge, value: 3}``, where the ``where`` conditions' left sides are attributes of the
counted entity and their right sides are evaluated on the action, as usual.

**Ops** (:data:`OPS`): ``eq ne lt le gt ge`` (numbers, ISO dates and datetimes compare in order),
``in not_in`` (right: a list), ``is_null not_null`` (no right), ``hour_ge hour_lt`` (the hour of a
datetime), ``weekday_in`` (0 = Monday; right: a list), ``contains`` (a string).

**Effects:** ``{set: path, to: operand}``, ``{add: path, by: operand}``, ``{sub: path, by:
operand}`` (numbers; ``add`` and ``sub`` may not take a field below its attribute's ``min``,
which is a precondition failure), where ``path`` is ``field`` or ``ref.field`` of the target.

**Policies** are system text. ``forbid_if`` (all conditions hold → the request must be refused)
or ``when`` + ``require`` (when the conditions hold, the call must satisfy ``require``). A world
draws each policy's mode: *enforced* (the tool refuses with the policy text) or *duty* (the tool
allows it; the expected state follows the rule, so an agent that ignores it fails the state
check). ``enforce: always | never | maybe`` (default ``maybe``) constrains the draw. ``instead``
names an action a refused request may take instead (an alternative the task can ask for).

Loading (:func:`load_archetype`, :func:`archetypes`) validates everything: unknown keys, kinds,
entities, attributes, params and ops are errors that name the file and the place.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from toolgym.errors import ConfigError

ARCHETYPE_DIR = Path(__file__).with_name("archetypes")
#: libyaml's safe loader when PyYAML was built with it (6x faster on the 41 files), else the pure one.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: The shared vocabulary of attribute kinds (generators in ``kinds.py``).
KINDS = (
    "person_name",  # "Maren Okafor"; similar names on purpose (shared surnames, one-letter twins)
    "company_name",  # "Brightwell Logistics"
    "email",  # from: another attribute (a name) or generated
    "phone",  # "+1-555-0142"
    "address",  # "14 Alder Street, Norhaven"
    "city",
    "code",  # pattern: A = letter, 9 = digit, others literal ("AA-9999")
    "phrase",  # parts: [[words], [words], …] one word from each ("Golden River Suite")
    "text",  # values: a list of free strings, one drawn (descriptions, notes)
    "enum",  # values (+ optional weights): a closed set; unknown values are errors in tools
    "flag",  # bool; p = probability of true (default 0.5)
    "int",  # quantity: min, max
    "money",  # min, max; two decimals
    "rating",  # min, max, step (default 1–5 by 0.5)
    "percent",  # min, max (0–100)
    "date",  # min, max: ISO or today±N(d|y); after: an earlier date/datetime it never precedes
    "datetime",  # min, max; hours: [first, last) of the day; step: minutes; after: as for date
    "time",  # "HH:MM"; hours and step as for datetime
    "duration",  # minutes: min, max, step
    "ref",  # to: an entity id (many-to-one)
)
Kind = Literal[
    "person_name",
    "company_name",
    "email",
    "phone",
    "address",
    "city",
    "code",
    "phrase",
    "text",
    "enum",
    "flag",
    "int",
    "money",
    "rating",
    "percent",
    "date",
    "datetime",
    "time",
    "duration",
    "ref",
]
OPS = (
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "in",
    "not_in",
    "is_null",
    "not_null",
    "hour_ge",
    "hour_lt",
    "weekday_in",
    "contains",
)
UNARY_OPS = ("is_null", "not_null")
_NAME = r"^[a-z][a-z0-9_]*$"
_TIME_OFFSET = re.compile(r"^(now|today)([+-]\d+[mhdy])?$")
Name = Annotated[str, Field(pattern=_NAME, max_length=40)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Attribute(_Strict):
    """One typed attribute of an entity (see :data:`KINDS` for what each kind reads)."""

    name: Name
    kind: Kind
    aliases: list[Name] = []
    description: str | None = None  # for tool docs; default derived from name and kind
    core: bool = False  # always in the world (label, key refs and action fields are core anyway)
    optional: float = Field(0.0, ge=0, lt=1)  # probability a row has null here
    unique: bool = False
    # kind parameters (only those of the kind may be set; checked below)
    to: Name | None = None  # ref
    values: list[str | int | float] | None = None  # enum, text
    weights: list[float] | None = None  # enum
    parts: list[list[str]] | None = None  # phrase
    pattern: str | None = None  # code
    source: Name | None = Field(None, alias="from")  # email: the attribute it derives from
    min: float | str | None = None
    max: float | str | None = None
    step: float | None = None
    hours: tuple[int, int] | None = None
    p: float | None = Field(None, ge=0, le=1)
    unit: str | None = None
    after: Name | None = None  # date, datetime: never before this earlier date/datetime of the row

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _kind_params(self) -> Attribute:
        allowed = {
            "ref": {"to"},
            "enum": {"values", "weights"},
            "text": {"values"},
            "phrase": {"parts"},
            "code": {"pattern"},
            "email": {"source"},
            "flag": {"p"},
            "int": {"min", "max", "unit"},
            "money": {"min", "max"},
            "rating": {"min", "max", "step"},
            "percent": {"min", "max"},
            "date": {"min", "max", "after"},
            "datetime": {"min", "max", "hours", "step", "after"},
            "time": {"hours", "step"},
            "duration": {"min", "max", "step"},
        }.get(self.kind, set())
        given = {
            f
            for f in (
                "to",
                "values",
                "weights",
                "parts",
                "pattern",
                "source",
                "min",
                "max",
                "step",
                "hours",
                "p",
                "unit",
                "after",
            )
            if getattr(self, f) is not None
        }
        extra = given - allowed
        if extra:
            raise ValueError(f"attribute {self.name!r} of kind {self.kind} takes no {', '.join(sorted(extra))}")
        needs = {"ref": "to", "enum": "values", "text": "values", "phrase": "parts", "code": "pattern"}.get(self.kind)
        if needs and getattr(self, needs) is None:
            raise ValueError(f"attribute {self.name!r} of kind {self.kind} needs {needs!r}")
        if self.weights is not None and (self.values is None or len(self.weights) != len(self.values)):
            raise ValueError(f"attribute {self.name!r}: one weight per value")
        for bound in (self.min, self.max):
            if isinstance(bound, str) and not (_TIME_OFFSET.match(bound) or re.match(r"^\d{4}-\d\d-\d\d", bound)):
                raise ValueError(
                    f"attribute {self.name!r}: bound {bound!r} is neither a number, an ISO date nor now/today±N"
                )
        return self


class Entity(_Strict):
    """An entity type: a table of rows with a key, an optional label, typed attributes."""

    id: Name
    plural: Name | None = None
    aliases: list[Name] = []
    key_prefix: Annotated[str, Field(pattern=r"^[A-Z]{1,4}$")]
    label: Name | None = None
    count: tuple[int, int] = (10, 200)
    core: bool = False
    attributes: list[Attribute]

    @property
    def plural_name(self) -> str:
        """The plural (``plural``, else the English plural of the id: ``branch`` → ``branches``)."""
        from toolgym.synth.domains.schema import plural  # schema imports this module

        return self.plural or plural(self.id)

    def attribute(self, name: str) -> Attribute | None:
        """The attribute called ``name`` (its canonical name), or None."""
        return next((a for a in self.attributes if a.name == name), None)


class Link(_Strict):
    """A many-to-many relation between two entities (pairs drawn per row of the first)."""

    id: Name
    between: tuple[Name, Name]
    per: tuple[int, int] = (1, 3)
    aliases: list[Name] = []


class Count(_Strict):
    """A counting condition: how many rows of ``count`` satisfy ``where``, compared to ``value``."""

    count: Name
    where: list[list[Any]] = []
    op: Literal["eq", "ne", "lt", "le", "gt", "ge"]
    value: int


Condition = list[Any] | Count  # [left, op, right] or [left, op] for unary ops


class Param(_Strict):
    """An action parameter that is not an attribute of the target (an amount, a reason, a method)."""

    name: Name
    kind: Kind
    values: list[str | int | float] | None = None
    to: Name | None = None
    min: float | str | None = None
    max: float | str | None = None
    description: str | None = None


class Effect(_Strict):
    """One change an action makes: exactly one of ``set`` / ``add`` / ``sub``."""

    set: str | None = None
    add: str | None = None
    sub: str | None = None
    to: Any = None
    by: Any = None

    @model_validator(mode="after")
    def _one(self) -> Effect:
        ops = [k for k in ("set", "add", "sub") if getattr(self, k) is not None]
        if len(ops) != 1:
            raise ValueError("an effect has exactly one of set, add, sub")
        if ops[0] == "set" and "to" not in self.model_fields_set:
            raise ValueError("a set effect needs 'to'")
        if ops[0] != "set" and self.by is None:
            raise ValueError(f"an {ops[0]} effect needs 'by'")
        return self

    @property
    def path(self) -> str:
        """The field it changes (``field`` or ``ref.field`` of the target)."""
        return self.set or self.add or self.sub  # type: ignore[return-value]


class Action(_Strict):
    """A write verb: on one existing ``target`` row, or ``creates`` a row."""

    id: Name
    verb: Name
    verb_aliases: list[Name] = []
    target: Name | None = None
    creates: Name | None = None
    params: list[Name | Param] = []
    init: dict[str, Any] = {}
    requires: list[Condition] = []
    effects: list[Effect] = []
    description: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> Action:
        if (self.target is None) == (self.creates is None):
            raise ValueError(f"action {self.id!r} needs exactly one of target, creates")
        if self.target is not None and not self.effects:
            raise ValueError(f"action {self.id!r} on a target needs effects")
        return self

    @property
    def entity(self) -> str:
        """The entity it acts on or creates."""
        return self.target or self.creates  # type: ignore[return-value]


class Policy(_Strict):
    """A business rule, shown in the system text; enforced by the tool or left to the agent."""

    id: Name
    text: str
    action: Name
    forbid_if: list[Condition] = []
    when: list[Condition] = []
    require: list[Condition] = []
    instead: Name | None = None
    enforce: Literal["always", "never", "maybe"] = "maybe"

    @model_validator(mode="after")
    def _shape(self) -> Policy:
        if bool(self.forbid_if) == bool(self.require):
            raise ValueError(f"policy {self.id!r} needs exactly one of forbid_if, require")
        if self.when and not self.require:
            raise ValueError(f"policy {self.id!r}: 'when' goes with 'require'")
        return self


class Org(_Strict):
    """How the organisation a world serves is named: a word and a suffix."""

    words: list[str]
    suffixes: list[str]


class Archetype(_Strict):
    """One domain archetype (see the module docstring)."""

    id: Name
    title: str
    org: Org
    entities: list[Entity]
    links: list[Link] = []
    actions: list[Action]
    policies: list[Policy] = []

    def entity(self, name: str) -> Entity:
        """The entity ``name``.

        Raises:
            KeyError: no such entity.
        """
        for e in self.entities:
            if e.id == name:
                return e
        raise KeyError(name)

    @model_validator(mode="after")
    def _references(self) -> Archetype:
        problems = _check_references(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _check_references(a: Archetype) -> list[str]:
    """Every name an archetype uses resolves (entities, attributes, params, actions, ops)."""
    out: list[str] = []
    ents = {e.id: e for e in a.entities}
    if len(ents) != len(a.entities):
        out.append("two entities share an id")
    for e in a.entities:
        names = [x.name for x in e.attributes]
        if len(set(names)) != len(names):
            out.append(f"entity {e.id}: two attributes share a name")
        if e.label is not None and e.label not in names:
            out.append(f"entity {e.id}: label {e.label!r} is not an attribute")
        if e.count[0] < 1 or e.count[0] > e.count[1]:
            out.append(f"entity {e.id}: count must be [lo, hi] with 1 <= lo <= hi")
        for x in e.attributes:
            if x.kind == "ref" and x.to not in ents:
                out.append(f"entity {e.id}: attribute {x.name} refers to unknown entity {x.to!r}")
            if x.kind == "email" and x.source is not None and x.source not in names:
                out.append(f"entity {e.id}: email {x.name} derives from unknown attribute {x.source!r}")
            earlier = {y.name for y in e.attributes[: e.attributes.index(x)] if y.kind in ("date", "datetime")}
            if x.after is not None and x.after not in earlier:
                out.append(f"entity {e.id}: {x.name} is after {x.after!r}, which is not an earlier date or datetime")
    for link in a.links:
        for end in link.between:
            if end not in ents:
                out.append(f"link {link.id}: unknown entity {end!r}")
    actions = {x.id: x for x in a.actions}
    for act in a.actions:
        if act.entity not in ents:
            out.append(f"action {act.id}: unknown entity {act.entity!r}")
            continue
        params = _params(act, ents[act.entity])
        where = f"action {act.id}"
        if isinstance(params, str):
            out.append(f"{where}: {params}")
            continue
        for key in act.init:
            if ents[act.entity].attribute(key) is None:
                out.append(f"{where}: init sets unknown attribute {key!r}")
        for cond in act.requires:
            out += _check_condition(cond, ents[act.entity], params, ents, where)
        for eff in act.effects:
            if _resolve(eff.path, ents[act.entity], ents) is None:
                out.append(f"{where}: effect on unknown field {eff.path!r}")
            out += _check_operand(eff.to if eff.set else eff.by, ents[act.entity], params, ents, where)
    for pol in a.policies:
        act = actions.get(pol.action)
        if act is None or act.entity not in ents:
            out.append(f"policy {pol.id}: unknown action {pol.action!r}")
            continue
        params = _params(act, ents[act.entity])
        if isinstance(params, str):
            continue
        for cond in [*pol.forbid_if, *pol.when, *pol.require]:
            out += _check_condition(cond, ents[act.entity], params, ents, f"policy {pol.id}")
        if pol.instead is not None and pol.instead not in actions:
            out.append(f"policy {pol.id}: instead names unknown action {pol.instead!r}")
    return out


def _params(act: Action, ent: Entity) -> dict[str, Attribute | Param] | str:
    """The parameters of an action by name (attributes given by the caller, and extra params)."""
    out: dict[str, Attribute | Param] = {}
    for p in act.params:
        if isinstance(p, str):
            attr = ent.attribute(p)
            if attr is None:
                return f"parameter {p!r} is not an attribute of {ent.id}"
            out[p] = attr
        else:
            out[p.name] = p
    return out


def _resolve(path: str, ent: Entity, ents: dict[str, Entity]) -> Attribute | None:
    """The attribute a ``field`` / ``ref.field`` path names on rows of ``ent``, or None."""
    head, _, tail = path.partition(".")
    attr = ent.attribute(head)
    if attr is None or not tail:
        return attr
    if attr.kind != "ref" or attr.to not in ents:
        return None
    return ents[attr.to].attribute(tail)


def _check_operand(
    x: Any, ent: Entity, params: dict[str, Attribute | Param], ents: dict[str, Entity], where: str
) -> list[str]:
    """Problems with one operand (a literal is always fine)."""
    if not isinstance(x, str):
        return []
    if x.startswith("$"):
        head, _, tail = x[1:].partition(".")
        p = params.get(head)
        if p is None:
            return [f"{where}: unknown parameter {x!r}"]
        if tail and (p.kind != "ref" or p.to not in ents or ents[p.to].attribute(tail) is None):
            return [f"{where}: {x!r} does not name an attribute through a ref parameter"]
        return []
    if x.startswith("@"):
        return [] if _resolve(x[1:], ent, ents) is not None else [f"{where}: unknown field {x!r}"]
    if re.match(r"^(now|today)[+-]", x) and not _TIME_OFFSET.match(x):
        return [f"{where}: time offset {x!r} is not now/today±N with a unit of m, h, d or y"]
    return []


def _check_condition(
    cond: Any, ent: Entity, params: dict[str, Attribute | Param], ents: dict[str, Entity], where: str
) -> list[str]:
    """Problems with one condition (a triple or a count)."""
    if isinstance(cond, Count):
        if cond.count not in ents:
            return [f"{where}: count of unknown entity {cond.count!r}"]
        out = []
        for sub in cond.where:
            if not isinstance(sub, list) or len(sub) not in (2, 3) or ents[cond.count].attribute(str(sub[0])) is None:
                out.append(f"{where}: count where {sub!r} needs [attribute of {cond.count}, op, right]")
            elif len(sub) == 3:
                out += _check_operand(sub[2], ent, params, ents, where)
        return out
    if not isinstance(cond, list) or len(cond) not in (2, 3) or cond[1] not in OPS:
        return [f"{where}: condition {cond!r} is not [left, op, right] with op one of {', '.join(OPS)}"]
    if (len(cond) == 2) != (cond[1] in UNARY_OPS):
        return [f"{where}: condition {cond!r}: {cond[1]} takes {'no' if cond[1] in UNARY_OPS else 'a'} right side"]
    left = str(cond[0]).removeprefix("@")
    out = (
        _check_operand(left, ent, params, ents, where)
        if left.startswith("$")
        else ([] if _resolve(left, ent, ents) is not None else [f"{where}: unknown field {left!r}"])
    )
    if len(cond) == 3:
        out += _check_operand(cond[2], ent, params, ents, where)
    return out


def load_archetype(path: Path) -> Archetype:
    """Read and validate one archetype file.

    Raises:
        ConfigError: unreadable YAML or an invalid archetype (the message names the file and
            the first problems).
    """
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
        arch = Archetype.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"archetype file {path.name}: {exc}") from None
    except ValidationError as exc:
        first = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise ConfigError(f"archetype file {path.name} is invalid: {first}") from None
    if arch.id != path.stem:
        raise ConfigError(f"archetype file {path.name} has id {arch.id!r}; the id must be the file's stem")
    return arch


@functools.cache
def archetypes() -> dict[str, Archetype]:
    """Every archetype shipped with toolgym, by id, in file-name order."""
    return {p.stem: load_archetype(p) for p in sorted(ARCHETYPE_DIR.glob("*.yaml"))}
