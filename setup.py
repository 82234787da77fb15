"""Package discovery under the ``toolgym`` mapping; everything else about the build is in pyproject.toml.

The repository root is the package ``toolgym`` (``package-dir = {"toolgym" = "."}``). setuptools'
``packages.find`` cannot discover packages under that mapping: it would find ``envs``, ``synth`` …
as top-level names (and miss ``toolgym`` itself). So the packages are discovered here and
prefixed: every directory below the root that holds an ``__init__.py`` (``find_packages`` does not
enter directories without one, nor hidden ones such as ``.venv``) ships as ``toolgym.<dir>``, and a
new package needs no line anywhere. This file sits in the root package's directory, so it is kept
out of the wheel (it is not a module of ``toolgym``). tests/test_packaging.py builds the wheel and
checks both.
"""

from pathlib import Path

from setuptools import find_packages, setup  # type: ignore[import-untyped]
from setuptools.command.build_py import build_py  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent


class BuildPy(build_py):
    """``build_py`` that leaves this setup script out of the ``toolgym`` package."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        """The package's modules, less ``setup.py`` itself: (package, module, file) triples."""
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if Path(m[2]).resolve() != Path(__file__).resolve()]


if __name__ == "__main__":  # as setuptools runs it; importing ``toolgym.setup`` from a checkout does nothing
    setup(
        packages=["toolgym", *(f"toolgym.{p}" for p in find_packages(str(ROOT), exclude=["tests", "tests.*"]))],
        cmdclass={"build_py": BuildPy},
    )
