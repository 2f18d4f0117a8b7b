"""The lock files are what `make run`, `make test` and the image install: they must pin, with
hashes, every package pyproject.toml asks for, at a version it allows (`make lock` rewrites them)."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)", re.M)


def pins(name: str) -> dict[str, tuple[Version, int]]:
    """Package -> (pinned version, number of hashes)."""
    text = (ROOT / name).read_text()
    return {canonicalize_name(m[1]): (Version(m[2]), m[3].count("--hash=")) for m in PIN.finditer(text)}


def assert_pinned(requirements: list[str], locked: dict) -> None:
    for line in requirements:
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        assert name in locked, f"{name} is not in the lock file: run `make lock`"
        version, hashes = locked[name]
        assert wanted.specifier.contains(version, prereleases=True), f"{name}=={version} breaks {wanted}"
        assert hashes >= 1


def test_the_runtime_lock_pins_every_dependency_with_hashes():
    assert_pinned(PROJECT["dependencies"], pins("requirements.lock"))


def test_the_dev_lock_pins_every_dependency_and_dev_tool_with_hashes():
    assert_pinned(
        PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"], pins("requirements-dev.lock")
    )


def test_the_dev_lock_runs_the_same_versions_as_production():
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {name: runtime[name][0] for name in runtime} == {name: dev[name][0] for name in runtime}


def test_the_build_backend_is_locked_too():
    # Installs run with --no-build-isolation, so setuptools comes from the lock, not the index.
    assert "setuptools" in pins("requirements.lock") and "setuptools" in pins("requirements-dev.lock")
