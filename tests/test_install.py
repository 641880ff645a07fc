"""Installed = complete: the built wheel, in a fresh environment, trains, evaluates, loads and
interpolates from a directory with no repository around it (built-in configs and shipped models by name).

Offline: the wheel is built without build isolation and installed with ``--no-index --no-deps``; the new
environment reuses this interpreter's already-installed dependencies through a .pth line (plain path
entries, so the repository's own editable nonvae is not on that path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from .conftest import REPO, tiny_overrides

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """(venv python, environment, an empty working directory) with the wheel installed."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src_copy"  # build from a copy: an in-tree build would leave build/ in the checkout
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "results", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", ".ruff_cache"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONNOUSERSITE="1")
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(wheels), str(src)], tmp, env)
    (wheel,) = wheels.glob("nonvae-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([str(python), "-c", purelib], text=True).strip())
    (site / "_reuse_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps", "-q",
          str(wheel)], tmp, env)
    work = tmp / "work"
    work.mkdir()
    return python, env, work


def test_wheel_ships_configs_models_and_license(installed):
    python, env, work = installed
    out = _run([str(python), "-c", "import nonvae, nonvae.resources as r, importlib.metadata as m; "
                "print(nonvae.__file__); print(len(r.config_names()), r.pretrained_names()); "
                "print(m.version('nonvae') == nonvae.__version__); "
                "print(any('LICENSE' in str(f) for f in m.files('nonvae')))"], work, env)
    file, counts, same_version, license_shipped = out.stdout.strip().splitlines()
    assert str(python.parent.parent) in file  # the installed copy, not the checkout
    assert "lines_acai" in counts and int(counts.split()[0]) >= 10
    assert same_version == "True" and license_shipped == "True"


def test_installed_train_eval_load_interpolate(installed):
    python, env, work = installed
    nonvae = [str(python), "-m", "nonvae"]
    sets = [f"--set={s}" for s in tiny_overrides(**{"data.image_size": 16, "model.latent_width": 2,
                                                     "model.latent_channels": 4, "data.test_limit": 32,
                                                     "train.steps": 2})]
    listing = _run([*nonvae, "configs"], work, env).stdout
    assert "lines/acai" in listing and "lines_acai" in listing
    _run([*nonvae, "train", "lines/acai", "--run-dir", "run", *sets], work, env)
    assert (work / "run" / "checkpoints" / "latest").exists()
    _run([*nonvae, "eval", "run", "--set", "eval.lines_pairs=4"], work, env)
    assert "recon/mse" in json.loads((work / "run" / "eval.json").read_text())
    _run([*nonvae, "interpolate", "lines_acai", "--pairs", "2", "--steps", "3", "--out", "i.npz"], work, env)
    assert (work / "i.npz").is_file()
    out = _run([str(python), "-c", "import nonvae; m = nonvae.load('lines_acai'); "
                "x = nonvae.load_samples('lines_acai')['x'][:2]; print(tuple(m.decode(m.encode(x)).shape))"],
               work, env)
    assert out.stdout.strip() == "(2, 1, 32, 32)"
    _run([*nonvae, "sample", "lines_acai", "--n", "4", "--out", "s.png"], work, env)  # the shipped sampler
    assert not (work / "build").exists() and sorted(p.name for p in work.iterdir()) == ["i.npz", "run", "s.png"]
