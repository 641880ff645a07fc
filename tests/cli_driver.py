"""Runs many hostile cases in one process under a 2 GiB address-space limit (used by tests/test_fuzz.py).

    python tests/cli_driver.py CASES.json RESULTS.jsonl

Each case is {"kind": "cli", "argv": [...]} (``nonvae.cli.main``) or {"kind": "ckpt", "folder": ...,
"config": ..., "overrides": [...]} (load a checkpoint into a fresh method and take one optimizer step
with the loaded state). A line is written to RESULTS before a case starts and another after it ends,
so a case that crashes the process (a segfault) or hangs is named by the last line. A case that runs
past its alarm raises TimeoutError, which is reported as a hang.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import sys
import traceback
from pathlib import Path

LIMIT = 2 << 30
resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from nonvae.cli import main  # noqa: E402
from nonvae.errors import NonvaeError  # noqa: E402


class Hang(BaseException):
    """A case ran past its time (BaseException: no ``except Exception`` in the code under test eats it)."""


def _alarm(signum, frame):  # noqa: ANN001, ARG001
    raise Hang("case ran past its time limit")


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main([os.fsdecode(a.encode("utf-8", "surrogateescape")) if isinstance(a, str) else a
                       for a in argv])
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, err.getvalue()


_CONFIGS: dict = {}


def run_ckpt(case: dict) -> tuple[int, str]:
    import shutil

    from safetensors.torch import load_file, save_file

    from nonvae.checkpoint import load_checkpoint
    from nonvae.config import load_config
    from nonvae.methods import build_method
    from nonvae.pipeline import image_shape_of

    folder = Path(case["tmp"]) / "step_00000002"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(case["folder"], folder)
    m = case["mutate"]
    tensors = load_file(str(folder / m["file"]))
    t = tensors[m["key"]]
    if m["how"] == "grow":
        t = torch.cat([t.reshape(-1), t.reshape(-1)[:1]])
    elif m["how"] == "reshape":
        t = t.reshape(t.shape[0] * t.shape[1], *t.shape[2:]) if t.dim() > 1 else t
    elif m["how"] == "int32":
        t = t.to(torch.int32)
    else:
        t = torch.full_like(t, float("nan"))
    tensors[m["key"]] = t.contiguous()
    save_file(tensors, str(folder / m["file"]))
    case = {**case, "folder": str(folder)}
    key = (case["config"], tuple(case["overrides"]))
    if key not in _CONFIGS:  # the same config for every case of a family: parse it once
        _CONFIGS[key] = load_config(case["config"], case["overrides"])
    cfg = _CONFIGS[key]
    method = build_method(cfg, image_shape_of(cfg))
    opts = method.build_optimizers()
    try:
        load_checkpoint(case["folder"], method.players(), opts)
    except NonvaeError as exc:
        return 2, f"nonvae: error: {' '.join(str(exc).split())}\n"
    for opt in opts.values():  # a state that was accepted must step without crashing
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        opt.step()
    return 0, ""


def main_driver(cases_path: str, results_path: str) -> None:
    cases = json.loads(open(cases_path, encoding="utf-8").read())
    signal.signal(signal.SIGALRM, _alarm)
    with open(results_path, "w", encoding="utf-8") as out:
        for i, case in enumerate(cases):
            out.write(json.dumps({"i": i, "start": True}) + "\n")
            out.flush()
            signal.alarm(int(case.get("timeout", 20)))
            try:
                rc, err = run_cli(case["argv"]) if case["kind"] == "cli" else run_ckpt(case)
                exc = None
            except Hang:
                rc, err, exc = -1, "", "hang"
            except BaseException as e:  # noqa: BLE001 - a bug: report it with its traceback
                rc, err, exc = -1, "", "".join(traceback.format_exception(e))[-3000:]
            finally:
                signal.alarm(0)
            out.write(json.dumps({"i": i, "rc": rc, "err": err[-3000:], "exc": exc}) + "\n")
            out.flush()


if __name__ == "__main__":
    main_driver(sys.argv[1], sys.argv[2])
