"""The README is the front door: it must name every setting and benchmark the code has."""

import pkgutil
from pathlib import Path

import bench
from services.settings import LAUNCHER_VARIABLES, ControlSettings, IngestSettings, WorkerSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_environment_variable_is_documented_with_its_default():
    variables = {
        *IngestSettings.variables(),
        *ControlSettings.variables(),
        *WorkerSettings.variables(),
        *LAUNCHER_VARIABLES,
    }
    missing = sorted(v for v in variables if f"| `{v}` |" not in README)
    assert not missing, f"README's configuration table lacks {missing}"


def test_every_benchmark_and_both_front_door_commands_are_named():
    for module in pkgutil.iter_modules(bench.__path__):
        if not module.name.startswith("_"):
            assert f"make bench BENCH={module.name}" in README
    assert "make run" in README and "make test" in README
