"""The layout of a run directory (``nonvae train``) and of a model folder (``nonvae export``).

The one place that spells their file names; everything else asks a :class:`RunDir`::

    RUN_DIR/config.yaml        the resolved config
            checkpoints/       step folders and ``latest`` (their inside: :mod:`nonvae.checkpoint`)
            metrics.jsonl      one JSON object per logged step and per periodic evaluation
            eval.json          ``nonvae eval``
            samples/           sample grids written during training (recon_<step>.png, interp_<step>.png)
            report.html        kept up to date by the trainer
            tensorboard/       event files
    MODEL/  config.json + model.safetensors (the Hub layout; older exports: config.yaml +
            autoencoder.safetensors), <player>.safetensors, sampler.safetensors, eval.json,
            README.md (the model card), samples.npz (a few stored test images: ``RunDir.test_images``,
            not the training grids)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nonvae.errors import CheckpointError

AUTOENCODER = "autoencoder"  # the player every model has (methods.py names the others)
AUTOENCODER_EMA = "autoencoder_ema"  # its weights' moving average (train.ema), checkpointed like a player


def weights_name(player: str) -> str:
    """The file of one player's weights, in a checkpoint step folder and in a model folder alike."""
    return f"{player}.safetensors"


class Entry:
    """A file or folder of a run directory, named once: ``RunDir.eval.name`` is the name,
    ``RunDir(path).eval`` the path."""

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.__doc__ = name, doc

    def __get__(self, run: RunDir | None, owner: type) -> Any:
        return self if run is None else run.path / self.name


class RunDir:
    """A run directory or exported model folder; the entries are paths (they need not exist)."""

    # what training writes
    config = Entry("config.yaml", "the resolved config")
    checkpoints = Entry("checkpoints", "step folders and `latest` (see nonvae.checkpoint)")
    metrics = Entry("metrics.jsonl", "one JSON object per logged step and per periodic evaluation")
    grids = Entry("samples", "sample grids written during training")
    tensorboard = Entry("tensorboard", "TensorBoard event files")
    lock = Entry(".lock", "flock-ed by the one `nonvae train` working on the run; holds its PID")
    # what evaluation, sampling and the report add (to a run or a model folder)
    eval = Entry("eval.json", "what `nonvae eval` measured")
    sampler = Entry("sampler.safetensors", "the fitted code sampler (GMM on training codes)")
    report = Entry("report.html", "the HTML report the trainer keeps up to date")
    # a model folder (the Hugging Face Hub layout; older exports keep config.yaml + autoencoder weights)
    config_json = Entry("config.json", "the resolved config of a model folder in the Hub layout")
    model_weights = Entry("model.safetensors", "the autoencoder's weights in the Hub layout")
    model_card = Entry("README.md", "an exported model's card")
    test_images = Entry("samples.npz", "the few test images a model folder stores (uint8 x, domain, y)")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def grid(self, kind: str, step: int) -> Path:
        """One training-time grid: ``kind`` 'recon' or 'interp'."""
        return self.grids / f"{kind}_{step:08d}.png"

    def latest_grid(self, kind: str) -> Path | None:
        files = sorted(self.grids.glob(f"{kind}_*.png")) if self.grids.is_dir() else []
        return files[-1] if files else None

    def weights(self, player: str = AUTOENCODER) -> Path:
        """A player's weights in a model folder or checkpoint step folder (the Hub layout keeps the
        autoencoder in model.safetensors, checkpoints and older exports in autoencoder.safetensors)."""
        own = self.path / weights_name(player)
        if player == AUTOENCODER and not own.is_file() and self.model_weights.is_file():
            return self.model_weights
        return own

    # -- what the folder is -------------------------------------------------------------------
    @property
    def is_export(self) -> bool:
        """A model folder: weights at the top, no checkpoints."""
        return not self.checkpoints.exists() and self.weights().is_file()

    def config_file(self) -> Path:
        """config.yaml of this folder (config.json in the Hub layout), or of the run a checkpoint step
        folder belongs to."""
        if not self.path.exists():
            raise CheckpointError(f"{self.path}: no such run directory or model folder")
        if self.config_json.is_file() and not self.config.is_file():
            return self.config_json
        for candidate in (self.config, RunDir(self.path.parent.parent).config):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{self.path}: no {self.config.name} or {self.config_json.name} (is this a run "
                              "directory or model folder?)")

    def weights_dir(self) -> Path:
        """The folder holding the weights: the model folder, a step folder, or checkpoints/latest."""
        from nonvae.checkpoint import find_latest

        if not self.path.exists():
            raise CheckpointError(f"{self.path}: no such run directory or model folder")
        if self.weights().is_file():
            return self.path
        latest = find_latest(self.checkpoints)
        if latest is None:
            raise CheckpointError(f"{self.path}: no complete checkpoint found (expected {self.checkpoints}/latest/)")
        return latest
