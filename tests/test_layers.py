"""The layer matrix of DESIGN.md ("Layout and layers"): a module imports only its own layer or lower.

Every module of the package (the repository root is ``toolgym``; ``tests/``, ``.venv/``, ``build/``,
hidden folders and ``setup.py``, which is kept out of the wheel, are not modules of it) is parsed
with :mod:`ast`. All its imports count: module level, function-local and ``TYPE_CHECKING`` ones;
relative imports are resolved against the module's package; ``from pkg import name`` is the module
``pkg.name`` when that is a module, else ``pkg`` itself. Imports outside ``toolgym`` are ignored.

Layers, lowest first (DESIGN.md)::

    L0  errors, spec, registry, and the package face (toolgym/__init__.py)
    L1  sandbox/, envs/{tools,markup,chat,naming,strict,textspace,limits}.py
    L2  verifiers/
    L3  the rest of envs/ (package __init__ included)
    L4  synth/<family>/ (a folder, or a file named by a family entry point) and the family
        toolkit: synth/family.py, synth/names.py, synth/text.py
    L5  the rest of synth/ (package __init__ included), data/
    L6  policy/, adapters/ (the trainer and protocol adapters: they use envs, data and synth)
    L7  cli/, bench/

Decision on the package face: ``toolgym/__init__.py`` is L0. Everything below it imports it
(``from toolgym import FAMILIES``), and what it defines is the central table of string entry points,
which imports only ``registry``. Its one function-local import, ``_register_all`` -> ``toolgym.envs.registration``
(the Gymnasium registration hook, which itself imports only gymnasium and ``errors``), is the sanctioned
exception, listed in :data:`FACE_HOOK`; it is not a debt like :data:`KNOWN`.

Decision on synth/names.py and synth/text.py: they are leaves (standard library only) that only
families use (procedural names; grammar helpers for generated text), so they sit in L4 with
synth/family.py as the family toolkit, not in L5 with the pipeline (synth/{config,candidate,run,executors}.py).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import toolgym

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"tests", ".venv", "build", "__pycache__"}
SKIP_FILES = {"setup.py"}

#: Low-layer modules inside envs/: infrastructure (typed tools, the text protocol and its limits).
ENVS_L1 = {"tools", "markup", "chat", "naming", "strict", "textspace", "limits"}

#: synth/ modules every family may use (L4 with the families); the rest of synth/ is L5.
FAMILY_TOOLKIT = {"toolgym.synth.family", "toolgym.synth.names", "toolgym.synth.text"}

#: The package face's Gymnasium hook: the one upward import allowed by design (see module docstring).
FACE_HOOK = {("toolgym", "toolgym.envs.registration")}

#: Upward imports that remain mid-restructure: (module, imported module).
#: Empty since issue 9: envs reach a family through ``toolgym.family`` (typed as envs.runtime.Runtime)
#: and the synthesis-backed task sources through ``toolgym.SOURCES``. Kept as the ratchet's mechanism.
KNOWN: set[tuple[str, str]] = set()


def discover(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package: dotted name (``toolgym.envs.markup``) -> file."""
    modules: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        here = Path(dirpath)
        if not (here / "__init__.py").exists():
            dirnames[:] = []  # not a package: nothing below ships
            continue
        parts = ("toolgym", *here.relative_to(root).parts)
        for f in filenames:
            if not f.endswith(".py") or (here == root and f in SKIP_FILES):
                continue
            name = parts if f == "__init__.py" else (*parts, f[:-3])
            modules[".".join(name)] = here / f
    return modules


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The ``toolgym`` modules one module's source imports (every import statement in the tree).

    Args:
        source: The module's Python source.
        module: Its dotted name, e.g. ``toolgym.synth.gates``.
        is_package: True for a package's ``__init__.py`` (relative imports resolve against itself).
        known: Every module name of the package, to tell ``from pkg import submodule`` from
            ``from pkg import attribute``.

    Returns:
        Dotted names of the imported package modules (the longest known prefix of each import).
    """

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            candidate = ".".join(parts[:i])
            if candidate in known:
                return candidate
        return None

    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "toolgym" or name.startswith("toolgym."):
                hit = resolve(name)
                if hit is not None and hit != module:
                    found.add(hit)
    return found


def family_units(known: set[str]) -> set[str]:
    """Module prefixes that are one family each: ``toolgym.synth.<x>`` for every synth/ subpackage and
    every synth file a family entry point in the central table names."""
    units = {".".join(m.split(".")[:3]) for m in known if m.startswith("toolgym.synth.") and m.count(".") >= 3}
    for family in toolgym.FAMILIES:
        entry = toolgym.FAMILIES.entry(family)
        if isinstance(entry, str) and entry.startswith("toolgym.synth."):
            units.add(".".join(entry.split(":")[0].split(".")[:3]))
    return units


def layer_of(module: str, families: set[str]) -> int:
    """The layer of one package module per DESIGN.md's table; ValueError if the table lacks it."""
    parts = module.split(".")[1:]
    top = parts[0] if parts else ""
    if top in {"", "errors", "spec", "registry"} and len(parts) <= 1:
        return 0
    if top == "sandbox" or (top == "envs" and len(parts) == 2 and parts[1] in ENVS_L1):
        return 1
    if top == "verifiers":
        return 2
    if top == "envs":
        return 3
    if top == "synth":
        if module in FAMILY_TOOLKIT or any(module == u or module.startswith(u + ".") for u in families):
            return 4
        return 5
    if top == "data":
        return 5
    if top in {"policy", "adapters"}:
        return 6
    if top in {"cli", "bench"}:
        return 7
    raise ValueError(f"{module} has no layer in DESIGN.md's table")


def violations(modules: dict[str, str], known: set[str], packages: set[str] | None = None) -> set[tuple[str, str]]:
    """(module, imported module) pairs where a module imports from a higher layer.

    Args:
        modules: Dotted module name -> source, for the modules to check.
        known: Every module name of the package (the checked ones and their import targets).
        packages: The names in ``known`` that are packages (an ``__init__.py``); None infers them
            as the names with a module below them.
    """
    if packages is None:
        packages = {"toolgym"} | {k.rpartition(".")[0] for k in known}
    families = family_units(known)
    found: set[tuple[str, str]] = set()
    for module, source in modules.items():
        is_package = module in packages
        own = layer_of(module, families)
        for target in imports_of(source, module, is_package, known):
            if layer_of(target, families) > own:
                found.add((module, target))
    return found


def package_sources() -> tuple[dict[str, str], set[str]]:
    """The package's modules: name -> source, and the set of names."""
    files = discover()
    return {m: p.read_text(encoding="utf-8") for m, p in files.items()}, set(files)


def package_names() -> set[str]:
    """The package's packages (modules that are an ``__init__.py``)."""
    return {m for m, p in discover().items() if p.name == "__init__.py"}


def test_every_module_has_a_layer():
    _, known = package_sources()
    families = family_units(known)
    assert {"toolgym", "toolgym.envs.markup", "toolgym.synth.run", "toolgym.cli"} <= known
    for module in known:
        layer_of(module, families)  # raises for a module DESIGN.md's table does not place


def test_the_layer_table_places_modules_as_designed():
    _, known = package_sources()
    families = family_units(known)
    expected = {
        "toolgym": 0,
        "toolgym.registry": 0,
        "toolgym.errors": 0,
        "toolgym.sandbox.base": 1,
        "toolgym.envs.markup": 1,
        "toolgym.envs.tools": 1,
        "toolgym.verifiers.verdict": 2,
        "toolgym.envs.toolenv": 3,
        "toolgym.envs.agents": 3,
        "toolgym.envs": 3,
        "toolgym.synth.family": 4,
        "toolgym.synth.names": 4,
        "toolgym.synth.trip.world": 4,
        "toolgym.synth.code": 4,
        "toolgym.synth.candidate": 5,
        "toolgym.synth.run": 5,
        "toolgym.synth.executors": 5,
        "toolgym.synth.config": 5,
        "toolgym.synth.gates": 5,
        "toolgym.synth": 5,
        "toolgym.policy.model": 6,
        "toolgym.cli": 7,
        "toolgym.bench.env": 7,
    }
    assert {m: layer_of(m, families) for m in expected} == expected


def test_imports_respect_the_layers():
    sources, known = package_sources()
    found = violations(sources, known, package_names())
    assert found - FACE_HOOK == KNOWN, (
        f"new upward imports: {sorted(found - FACE_HOOK - KNOWN)}; fixed (remove from KNOWN): {sorted(KNOWN - found)}"
    )
    assert found & FACE_HOOK == FACE_HOOK, "the face no longer imports envs.registration: drop FACE_HOOK"


def test_an_upward_import_is_reported():
    _, known = package_sources()
    src = "import os\n\ndef f():\n    from toolgym.policy import model\n    return model\n"
    assert violations({"toolgym.verifiers.verdict": src}, known) == {
        ("toolgym.verifiers.verdict", "toolgym.policy.model")
    }
    rel = "from ..synth.candidate import build_task\nfrom . import markup\n"
    assert violations({"toolgym.envs.tools": rel}, known) == {("toolgym.envs.tools", "toolgym.synth.candidate")}
    same = "from toolgym.envs import markup\nfrom toolgym.errors import ConfigError\nimport toolgym.sandbox.wire\n"
    assert violations({"toolgym.envs.tools": same}, known) == set()


def test_imports_are_resolved_like_python_does():
    known = {"toolgym", "toolgym.envs", "toolgym.envs.markup", "toolgym.envs.tools", "toolgym.synth"}
    src = (
        "from . import markup\nfrom .markup import END\nfrom .. import FAMILIES\n"
        "import toolgym.envs.tools as t\nfrom toolgym.synth import get_family\nimport numpy\n"
    )
    assert imports_of(src, "toolgym.envs.tools", False, known) == {"toolgym.envs.markup", "toolgym", "toolgym.synth"}
    assert imports_of("from . import markup\n", "toolgym.envs", True, known) == {"toolgym.envs.markup"}
