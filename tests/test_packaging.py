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
        "import importlib.util, toolgym, toolgym.envs.toolenv, toolgym.policy.evaluate;"
        "print(toolgym.__file__);"
        "print([n for n in ('envs', 'synth', 'verifiers', 'policy', 'cli', 'errors') if importlib.util.find_spec(n)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    path, tops = out.stdout.splitlines()
    assert Path(path).resolve().parent == ROOT and tops == "[]"
    assert shutil.which("toolgym"), "console script missing"


def test_env_side_does_not_import_torch():
    code = (
        "import sys, toolgym, toolgym.envs.toolenv, toolgym.policy, toolgym.policy.evaluate, toolgym.synth.pipeline;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_wheel_contains_only_the_toolgym_package(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("toolgym-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"toolgym", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert "toolgym/envs/toolenv.py" in names and not any(n.startswith("toolgym/tests") for n in names)
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "toolgym = toolgym.cli:main" in entry
