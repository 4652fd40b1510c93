"""docker compose on a new machine: a CPU segment worker by default, the GPU one opt-in, secrets
from .env, one build per image, a small build context. `docker compose config` (or the older
`docker-compose config`) validates both profiles where either is installed."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def interpolate(value, env: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} ($$ is a literal $), over `env`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m):
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return re.sub(r"\$\$|\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def load_compose(env: dict[str, str] | None = None) -> dict:
    """The compose file as compose would see it with .env.example as the .env."""
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env_example() if env is None else env)


def test_cpu_is_the_default_and_gpu_opt_in():
    services = load_compose()["services"]
    assert env_example()["COMPOSE_PROFILES"] == "cpu"
    cpu, gpu = services["worker-segment"], services["worker-segment-gpu"]
    assert cpu["profiles"] == ["cpu"] and gpu["profiles"] == ["gpu"]
    assert "deploy" not in cpu and cpu["environment"]["WARDROBE_DEVICE"] == "cpu"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    # the CPU workers' image is the lean set: OpenVINO runs the shipped int8 model, no PyTorch index needed
    build = services["worker-ingest"]["build"]["args"]
    assert build["EXTRAS"].split(",") == ["worker"] and "TORCH_INDEX" not in build
    gpu_build = services["worker-segment-gpu"]["build"]["args"]
    assert set(gpu_build["EXTRAS"].split(",")) == {"worker", "gpu"} and gpu_build["TORCH_INDEX"].endswith("/whl/cu130")
    assert services["worker-segment"]["image"] == services["worker-ingest"]["image"]
    assert any(p.name.endswith("_openvino_model") for p in (ROOT / "models").iterdir())
    # every other service runs in either profile, but Flower, which is opt-in (profile flower)
    assert services["flower"]["profiles"] == ["flower"]
    for name, svc in services.items():
        if name not in ("worker-segment", "worker-segment-gpu", "flower"):
            assert "profiles" not in svc, name


def test_each_image_is_built_once_and_checked_for_health():
    services = load_compose()["services"]
    built = [svc["image"] for svc in services.values() if "build" in svc]
    assert len(built) == len(set(built)) == 3, built
    for name, svc in services.items():
        if svc.get("image", "").endswith(":local") and "build" not in svc:
            assert svc["image"] in built and svc["pull_policy"] == "never", name
    for name in ("api", "worker-ingest", "worker-segment", "worker-segment-gpu"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("worker-segment", "worker-segment-gpu"):  # healthy: answers a ping from its own container
        assert services[name]["healthcheck"]["test"][1:] == ["wardrobe", "workers", "--this-host"]
    for name in ("api", "worker-ingest", "worker-segment", "worker-segment-gpu"):  # the bucket exists first
        assert services[name]["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully", name


def test_secrets_come_from_the_env_file():
    raw = COMPOSE.read_text()
    for secret in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "WARDROBE_SECRET_KEY"):
        assert secret in env_example()
        assert f"${{{secret}:?" in raw, secret  # no default: compose refuses to start without it
    with pytest.raises(KeyError, match="WARDROBE_SECRET_KEY"):
        load_compose({k: v for k, v in env_example().items() if k != "WARDROBE_SECRET_KEY"})
    assert "wardrobe-secret" not in raw and "change-me" not in raw
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_dockerignore_keeps_the_context_small():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "var", "runs", ".env"} <= ignored
    # and keeps what the Dockerfile copies
    copied = re.findall(r"^COPY (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert copied and not set(copied) & ignored


def test_the_cpu_worker_installs_no_torch():
    """The lean set (pyproject's `worker` extra, the CPU image's EXTRAS) names neither torch nor Ultralytics,
    and the Dockerfile installs torch only for the GPU (or training) set."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[ ]", r, maxsplit=1)[0].lower() for r in extras["worker"] + extras["api"]}
    assert not names & {"torch", "torchvision", "ultralytics", "nncf"} and "openvino" in names
    assert {"torch", "ultralytics"} <= {re.split(r"[<>=\[ ]", r, maxsplit=1)[0] for r in extras["gpu"]}
    dockerfile = (ROOT / "Dockerfile").read_text()
    torch_step = next(line for line in dockerfile.splitlines() if "*,gpu,*" in line)
    assert "*,worker,*" not in torch_step


def _run_steps() -> list[str]:
    """The Dockerfile's RUN steps, each with its continuation lines."""
    return re.findall(r"^RUN (.*?)(?<!\\)$", (ROOT / "Dockerfile").read_text(), re.M | re.S)


def _dockerfile_commands(extras: str) -> str:
    """The commands the Dockerfile's RUN steps would run for EXTRAS, each step run by a shell whose
    apt-get, pip and rm only say what they were asked (a bash function each; sh runs the same case)."""
    steps = _run_steps()
    fake = "apt-get() { echo apt-get \"$@\"; }; pip() { echo pip \"$@\"; }; rm() { :; }; useradd() { :; }\n"
    out = [subprocess.run(["bash", "-c", fake + step.replace("\\\n", " ")], env={"EXTRAS": extras, "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, check=True).stdout for step in steps]
    return "".join(out)


@pytest.mark.parametrize("extras", ["worker", "api,worker"])
def test_the_cpu_image_runs_opencvs_headless_wheel_and_installs_no_system_libraries(extras):
    """libGL (Mesa, LLVM: about 210 MiB) is for opencv-python's GUI build, which only Ultralytics needs:
    the CPU image swaps in the headless wheel of the same version, in the install's own step (a later
    step would leave the GUI build in a layer), and installs no apt packages."""
    commands = _dockerfile_commands(extras)
    assert "apt-get" not in commands and "torch" not in commands
    install = next(line for line in commands.splitlines() if line.startswith("pip install --no-cache-dir -e"))
    assert commands.index(install) < commands.index("pip uninstall -y opencv-python") < commands.index(
        "opencv-python-headless==")
    step = next(s for s in _run_steps() if "opencv-python-headless" in s)
    assert step.startswith("pip install --no-cache-dir -e")


@pytest.mark.parametrize("extras", ["api", "worker,gpu", "training"])
def test_images_beside_ultralytics_keep_opencvs_gui_build_and_its_libraries(extras):
    commands = _dockerfile_commands(extras)
    assert "headless" not in commands
    assert ("libgl1" in commands) == (extras != "api") and ("torch==" in commands) == (extras != "api")


def test_dockerfile_pins_torch_as_the_installer_does():
    install = (ROOT / "scripts" / "install.sh").read_text()
    torch, vision = re.search(r"\*\)\s+\$PIP install[^\n]*torch==([\d.]+) torchvision==([\d.]+)", install).groups()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG TORCH_VERSION={torch}" in dockerfile and f"ARG TORCHVISION_VERSION={vision}" in dockerfile


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_compose_config_validates(profile, tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    r = subprocess.run(cli + ["--env-file", str(ENV_EXAMPLE), "--profile", profile, "config"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    services = yaml.safe_load(r.stdout)["services"]
    want = {"cpu": "worker-segment", "gpu": "worker-segment-gpu"}[profile]
    assert want in services and {"api", "migrate", "worker-ingest"} <= set(services)
    # without the secrets compose refuses, naming the missing one
    empty = tmp_path / "empty.env"
    empty.write_text("")
    r = subprocess.run(cli + ["--env-file", str(empty), "--profile", profile, "config"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "POSTGRES_PASSWORD" in r.stderr
