"""`main.py train` on real FER2013 faces: a run killed between epochs resumes where it stopped."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO_ROOT, run_main


def _rows(history: Path) -> list[dict[str, str]]:
    if not history.is_file():
        return []
    with history.open() as handle:
        return list(csv.DictReader(handle))


def _epochs(history: Path) -> list[int]:
    return [int(row["epoch"]) for row in _rows(history)]


def test_killed_run_resumes_from_its_last_epoch(fer2013_dir, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--arch", "fer_vgg", "--data", str(fer2013_dir), "--out", str(out), "--epochs", "4",
            "--limit", "512", "--batch-size", "64", "--warmup-epochs", "1", "--no-export"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = tmp_path / "first.log"  # a file, not a pipe: a full pipe would stall the run
    with log.open("w") as sink:
        first = subprocess.Popen([sys.executable, str(REPO_ROOT / "main.py"), *args], cwd=REPO_ROOT, env=env,
                                 stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not _epochs(out / "history.csv"):  # the backup of an epoch is written before its history row
        assert first.poll() is None, f"training exited early: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "no epoch finished within 5 minutes"
        time.sleep(0.05)
    first.kill()
    first.wait()
    assert (out / "backup").is_dir() and not (out / "train_info.json").exists(), sorted(p.name for p in out.iterdir())
    minutes_before = json.loads((out / "train_time.json").read_text())["minutes"]
    stopped_after = _epochs(out / "history.csv")

    second = run_main(*args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert stopped_after[0] == 0 and len(stopped_after) < 4, stopped_after
    assert _epochs(out / "history.csv") == list(range(4)), f"each epoch trained once, in order; after the kill: {stopped_after}"
    rates = [float(row["learning_rate"]) for row in _rows(out / "history.csv")]
    assert rates[0] > rates[1] > rates[2] > rates[3], f"the warm-up ends with epoch 0, one cosine decay goes on across the kill: {rates}"
    assert all(row["val_ema_accuracy"] for row in _rows(out / "history.csv")), "the weight average is judged every epoch"
    assert not (out / "backup").exists() and (out / "best.keras").is_file()
    info = json.loads((out / "train_info.json").read_text())
    column = {"raw": "val_accuracy", "ema": "val_ema_accuracy"}[info["weights"]]
    best = max(float(row[value]) for row in _rows(out / "history.csv") for value in ("val_accuracy", "val_ema_accuracy"))
    assert abs(float(_rows(out / "history.csv")[info["best_epoch"] - 1][column]) - best) < 1e-6, info
    assert info["train_minutes"] >= info["train_minutes_this_session"] + minutes_before - 0.15, (info, minutes_before)  # rounding

    from detector.training.export import export_model

    exported = export_model(out / "best.keras", tmp_path / "exported", (out / "labels.txt").read_text().split())
    assert json.loads((exported / "metrics.json").read_text())["training"] == [info], "the model folder says how it was made"


def test_export_without_tensorflow_fails_before_training(fer2013_dir, tmp_path, monkeypatch, capsys):
    """A PyTorch-only GPU machine: one line at once, not a traceback after the last epoch."""
    import importlib.util

    from detector.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "tensorflow" else find_spec(name, *rest))
    assert main(["train", "--data", str(fer2013_dir), "--out", str(tmp_path / "run")]) == 2
    assert "--no-export" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_missing_export_package_fails_before_training(fer2013_dir, tmp_path):
    """A package only the int8 export imports (sympy) is missing: one line at once, not after the last epoch."""
    out = tmp_path / "run"
    code = ("import sys; sys.modules['sympy'] = None; from detector.cli import main; "
            f"sys.exit(main(['train', '--data', {str(fer2013_dir)!r}, '--out', {str(out)!r}, '--epochs', '1']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the export after training cannot import") and "sympy" in last, result.stderr[-2000:]
    assert not (out / "history.csv").exists(), "no epoch may run before the check"


def test_weight_decay_shrinks_weights_as_papers_sgd_does():
    """``--weight-decay`` is SGD's coupled L2 (through momentum, as in PyTorch and the
    papers): with no loss gradient, 1,000 steps must shrink a weight as that SGD does,
    simulated here in numpy, not ten times less as Keras's own decoupled decay would."""
    import numpy as np
    import keras
    from detector.config import TrainConfig
    from detector.training.train import sgd

    lr, wd, momentum, steps = 0.05, 0.002, 0.9, 1000
    optimizer = sgd(TrainConfig(weight_decay=wd, ema_momentum=0), lr)
    weight = keras.Variable(np.ones(4, "float32"))
    for _ in range(steps):
        optimizer.apply_gradients([(keras.ops.zeros(4), weight)])

    w, buf = 1.0, 0.0  # torch.optim.SGD(nesterov=True, weight_decay=wd), zero loss gradient
    for step in range(steps):
        grad = wd * w
        buf = grad if step == 0 else momentum * buf + grad
        w -= lr * (grad + momentum * buf)
    np.testing.assert_allclose(np.log(keras.ops.convert_to_numpy(weight)), np.log(w), rtol=0.03)
