"""The repository root is the package ``toolgym``; nothing else lands in site-packages."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_installed_layout_has_no_top_level_parts(tmp_path):
    # Run from elsewhere: `python -m pytest` puts the checkout itself on sys.path.
    code = (
        "import importlib.util, os, toolgym, toolgym.envs.toolenv, toolgym.policy.evaluate;"
        "print(toolgym.__file__);"
        "parts = ('envs', 'synth', 'verifiers', 'policy', 'cli', 'bench', 'sandbox', 'errors');"
        "print([n for n in parts if (s := importlib.util.find_spec(n)) and "
        f"os.path.realpath(s.origin or '').startswith(os.path.join({str(ROOT)!r}, n))])"
    )  # only the checkout's own folder counts: a same-named distribution (the PyPI `verifiers`, in a
    # venv that may itself live inside the checkout, as CI's .venv does) is no clash
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    path, tops = out.stdout.splitlines()
    assert Path(path).resolve().parent == ROOT and tops == "[]"
    assert shutil.which("toolgym"), "console script missing"


def test_env_side_does_not_import_torch():
    code = (
        "import sys, toolgym, toolgym.envs.toolenv, toolgym.policy, toolgym.policy.evaluate, toolgym.synth.run;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# What is not a package's source: never copied into the build tree, never a package directory.
SKIP_DIRS = {"tests", "build", "dist", "__pycache__", "runs"}


def skipped(name: str) -> bool:
    return name.startswith(".") or name in SKIP_DIRS or name.endswith(".egg-info")


def package_dirs(root: Path) -> list[Path]:
    """Every directory below ``root`` (itself included) that holds an ``__init__.py``, outside tests/.venv/build."""
    found = []
    for init in root.rglob("__init__.py"):
        rel = init.parent.relative_to(root)
        if not any(skipped(part) for part in rel.parts):
            found.append(rel)
    return sorted(found)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built from a clean copy of the checkout, plus one package no packaging file names.

    A copy (sources, package data (.yaml, .json), pyproject.toml, README.md; no build/ left over
    from an earlier build) keeps the checkout clean and the build honest. The probe package
    ``synth/zz_probe`` is added to the copy only: it must ship without a line in pyproject.toml
    or setup.py.
    """
    src = tmp_path_factory.mktemp("src")

    def ignore(folder: str, names: list[str]) -> list[str]:
        keep = {"pyproject.toml", "README.md"}
        return [
            n
            for n in names
            if (Path(folder, n).is_dir() and skipped(n))
            or (Path(folder, n).is_file() and not n.endswith((".py", ".yaml", ".json")) and n not in keep)
        ]

    shutil.copytree(ROOT, src / "repo", ignore=ignore)
    probe = src / "repo" / "synth" / "zz_probe"
    probe.mkdir()
    (probe / "__init__.py").write_text('"""A package that no packaging file names."""\n')
    (probe / "world.py").write_text("X = 1\n")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), "."],
        check=True,
        capture_output=True,
        cwd=src / "repo",
    )
    return next(out.glob("toolgym-*.whl"))


def test_wheel_contains_only_the_toolgym_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"toolgym", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert not tops & {"envs", "verifiers", "policy", "synth", "bench", "cli", "sandbox", "data"}
    assert "toolgym/envs/toolenv.py" in names and not any(n.startswith("toolgym/tests") for n in names)
    assert "toolgym/setup.py" not in names  # the build script sits in the root package's folder
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "toolgym = toolgym.cli:main" in entry


def test_every_package_directory_ships_in_the_wheel_with_all_its_modules(wheel):
    """Packages are discovered: every package folder of the checkout, and a new one, ship whole."""
    names = set(zipfile.ZipFile(wheel).namelist())
    dirs = package_dirs(ROOT)
    assert {Path("."), Path("cli"), Path("bench"), Path("envs"), Path("synth/trip")} <= set(dirs), dirs
    want = {
        "/".join(("toolgym", *(d / f.name).parts))
        for d in dirs
        for f in (ROOT / d).glob("*.py")
        if (d, f.name) != (Path("."), "setup.py")
    }
    assert want - names == set(), f"package modules missing from the wheel: {sorted(want - names)}"
    assert {"toolgym/synth/zz_probe/__init__.py", "toolgym/synth/zz_probe/world.py"} <= names


def test_the_domain_archetypes_ship_as_package_data(wheel):
    """The archetype YAML files are data, not modules: the wheel must carry every one beside its loader."""
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "synth" / "domains" / "archetypes").glob("*.yaml")}
    assert len(shipped) >= 40
    assert {f"toolgym/synth/domains/archetypes/{n}" for n in shipped} <= names


def test_the_catalog_snapshot_ships_as_package_data(wheel):
    """``toolgym families`` reads synth/catalog.json; without it every listing would regenerate (minutes)."""
    assert "toolgym/synth/catalog.json" in set(zipfile.ZipFile(wheel).namelist())
