"""Static checks of what a newcomer and CI rely on: no Docker engine runs here, so the
Dockerfile is read, not built."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
README = (ROOT / "README.md").read_text()


def final_stage(dockerfile: str) -> str:
    return dockerfile[dockerfile.rindex("\nFROM ") :]


def test_dockerfile_serves_on_7860_as_non_root_from_python_311_slim():
    stage = final_stage(DOCKERFILE)
    assert re.search(r"^FROM python:3\.11-slim\b", stage.strip(), re.M)
    assert re.search(r"^EXPOSE 7860\b", stage, re.M)
    users = re.findall(r"^USER (\S+)", stage, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*", stage, re.M)
    assert "/healthz" in stage


def test_dockerfile_installs_only_the_serving_requirements():
    installs = re.findall(r"pip install[^\n]*", DOCKERFILE)
    assert installs == ["pip install -r requirements.txt"]
    assert "tensorflow" not in DOCKERFILE.lower()
    serving = (ROOT / "requirements.txt").read_text().lower()
    assert not re.search(r"^(tensorflow|keras)\b", serving, re.M)
    assert "-r requirements-dev" not in serving


def test_dockerfile_ships_the_model_and_client_assets():
    for needed in ("model/digits.tflite", "model/card.json", "client/", "node_modules"):
        assert needed in DOCKERFILE


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert "==" in line, f"{name}: {line!r} is not pinned"


def test_readme_is_a_docker_space_and_ci_runs_its_test_command():
    front = README.split("---")[1]
    assert "sdk: docker" in front and "app_port: 7860" in front
    test_cmd = re.search(r"^\s*(\./scripts/test\.sh)\s*$", README, re.M)
    run_cmd = re.search(r"^\s*(\./scripts/run\.sh)\s*$", README, re.M)
    assert test_cmd and run_cmd
    assert test_cmd.group(1) in (ROOT / ".ci" / "run").read_text()


def test_licence_and_data_credits():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    for credit in ("MNIST", "UNIPEN", "CC BY 4.0"):
        assert credit in README
