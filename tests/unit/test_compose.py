"""No Docker engine runs here, so compose.yaml is kept honest against the settings the code reads."""

from pathlib import Path

import yaml

from services.settings import LAUNCHER_VARIABLES, ControlSettings, IngestSettings, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
APPS = {
    "ingest": IngestSettings,
    "control": ControlSettings,
    "worker": WorkerSettings,
    "beat": WorkerSettings,
    "migrate": WorkerSettings,
}
KNOWN = {
    *IngestSettings.variables(),
    *ControlSettings.variables(),
    *WorkerSettings.variables(),
    *LAUNCHER_VARIABLES,
}


def required(cls):
    from dataclasses import MISSING

    return {name for name, default in cls.variables().items() if default is MISSING}


def test_compose_runs_the_whole_trio_and_its_dependencies():
    assert {"postgres", "redis", "aws", "mail", "migrate", "ingest", "control", "worker", "beat"} <= set(
        SERVICES
    )


def test_every_sluice_process_is_built_from_the_one_dockerfile():
    for name in APPS:
        build = SERVICES[name]["build"]
        assert build["dockerfile"] == "deploy/Dockerfile" and (ROOT / build["dockerfile"]).is_file()


def test_each_process_gets_every_required_setting_and_no_unknown_ones():
    for name, cls in APPS.items():
        env = SERVICES[name]["environment"]
        assert required(cls) <= set(env), (name, required(cls) - set(env))
        unknown = {k for k in env if k.startswith("SLUICE_")} - KNOWN
        assert not unknown, (name, unknown)


def test_commands_start_the_real_entry_points():
    assert "services.ingest.app:create_app()" in SERVICES["ingest"]["command"]
    assert "services.control.app:create_app()" in SERVICES["control"]["command"]
    assert SERVICES["worker"]["command"][:4] == ["celery", "-A", "services.worker.main", "worker"]
    assert "beat" in SERVICES["beat"]["command"]
    assert "sluice db upgrade" in " ".join(SERVICES["migrate"]["command"])


def test_the_dockerfile_copies_what_the_entry_points_import():
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    for path in ("shared", "services", "deploy/gunicorn.conf.py", "pyproject.toml"):
        assert f"COPY {path}" in dockerfile


def test_the_image_installs_the_runtime_lock_and_no_development_code():
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert "COPY . " not in dockerfile
    for path in ("devtools", "tests", "bench", "requirements-dev.lock"):
        assert f"COPY {path}" not in dockerfile
