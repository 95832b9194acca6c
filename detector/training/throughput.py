"""Training throughput of ``fer_vgg`` by input-pipeline and numeric variant.

    python -m detector.training.throughput --json docs/train_throughput.json --md docs/train_throughput.md

Each variant trains the real training model (augmentation included) on real FER2013
train faces for ``--steps`` steps after ``--warmup`` untimed ones, in its own process
(thread counts are fixed when TensorFlow starts), and reports wall-clock images/s and
images per CPU-second (the second is less sensitive to other work on the machine).

Variants (``VARIANTS``): decoded arrays cached once vs JPEG decoded every epoch
(``tf.data`` from the files); augmentation vectorised per batch (inside the model, the
default) vs per image in ``tf.data.map``; float32 vs mixed bfloat16; XLA on/off; batch
128/256; TensorFlow intra-op threads. On this CPU only the precision matters
(docs/MODELS.md): ``main.py train`` defaults to mixed bfloat16 where the CPU has it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path


FER2013_TRAIN = 28709  # faces in FER2013's train split (its README): what one epoch costs


@dataclass(frozen=True)
class Variant:
    name: str
    data: str = "arrays"  # arrays: decoded once, tf.data; jpeg: decoded from the files every step; fit: model.fit on numpy
    augment: str = "batch"  # batch: Keras layers on the batch inside the model; image: per image in tf.data
    precision: str = "mixed_bfloat16"
    jit: bool = False
    batch_size: int = 128
    threads: int = 0  # TensorFlow intra-op threads, 0 = its default (one per core)


BASE = Variant("default: arrays, batch augmentation, bf16, batch 128")
VARIANTS = (
    BASE,
    replace(BASE, name="float32", precision="float32"),
    replace(BASE, name="batch 256", batch_size=256),
    replace(BASE, name="XLA (jit_compile)", jit=True),
    replace(BASE, name="JPEG decoded every epoch", data="jpeg"),
    replace(BASE, name="augmentation per image (tf.data map)", augment="image"),
    replace(BASE, name="1 intra-op thread", threads=1),
    replace(BASE, name="model.fit on numpy arrays (Keras' array adapter)", data="fit"),
)


def _dataset(variant: Variant, data_dir: str, augment_layer):
    """A repeating, batched ``tf.data`` pipeline of (image, one-hot) for ``variant``."""
    import numpy as np
    import tensorflow as tf

    from detector.training.data import load_split

    split = load_split(data_dir, "train")
    one_hot = np.eye(len(split.classes), dtype="float32")[split.labels]
    if variant.data == "jpeg":
        def decode(path, label):
            image = tf.io.decode_jpeg(tf.io.read_file(path), channels=1)
            return tf.cast(image, tf.float32), label
        data = tf.data.Dataset.from_tensor_slices((list(split.paths), one_hot)).shuffle(4096).map(decode, tf.data.AUTOTUNE)
    else:
        data = tf.data.Dataset.from_tensor_slices((split.images[..., None].astype("float32"), one_hot)).shuffle(4096)
    if variant.augment == "image":
        data = data.map(lambda image, label: (augment_layer(image, training=True), label), tf.data.AUTOTUNE)
    return data.repeat().batch(variant.batch_size).prefetch(tf.data.AUTOTUNE)


def _fit_seconds(model, data_dir: str, batch_size: int, steps: int, warmup: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``model.fit`` on ``steps`` batches of decoded numpy arrays,
    shuffled, after a warm-up ``fit``: how ``main.py train`` feeds Keras."""
    import numpy as np

    from detector.training.data import load_split

    split = load_split(data_dir, "train")
    images, targets = split.images[..., None], np.eye(len(split.classes), dtype="float32")[split.labels]
    model.fit(images[: warmup * batch_size], targets[: warmup * batch_size], batch_size=batch_size, epochs=1, verbose=0)
    count = steps * batch_size
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(images[:count], targets[:count], batch_size=batch_size, epochs=1, verbose=0)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(variant: Variant, data_dir: str, steps: int, warmup: int) -> dict:
    """Images/s of ``variant`` in this process (call it in a fresh one)."""
    import tensorflow as tf

    if variant.threads:
        tf.config.threading.set_intra_op_parallelism_threads(variant.threads)
    import keras

    from detector.training.models import augmentation, create_model, training_model

    keras.mixed_precision.set_global_policy(variant.precision)
    core = create_model("fer_vgg", 7)
    model = training_model(core, (48, 48, 1), 1.0 if variant.augment == "batch" else 0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), jit_compile=variant.jit)
    if variant.data == "fit":
        wall, cpu = _fit_seconds(model, data_dir, variant.batch_size, steps, warmup)
    else:
        batches = iter(_dataset(variant, data_dir, augmentation(1.0)))
        for _ in range(warmup):
            model.train_on_batch(*next(batches))
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            model.train_on_batch(*next(batches))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    images = steps * variant.batch_size
    return {**asdict(variant), "images_per_s": round(images / wall, 1), "images_per_cpu_s": round(images / cpu, 1),
            "epoch_minutes": round(FER2013_TRAIN / (images / wall) / 60, 2), "load_average": os.getloadavg()[0]}


def markdown(report: dict) -> str:
    rows = [f"| variant | images/s | images per CPU-s | min per epoch ({FER2013_TRAIN:,} faces) | load avg |", "|---|---|---|---|---|"]
    for r in report["variants"]:
        rows.append(f"| {r['name']} | {r['images_per_s']} | {r['images_per_cpu_s']} | {r['epoch_minutes']} | {r['load_average']:.1f} |")
    machine = report["machine"]
    return "\n".join(rows) + f"\n\n{machine['cpus']} CPUs ({machine['processor']}), {report['steps']} timed steps per variant " \
                             f"after {report['warmup']} warm-up steps; `{report['command']}`.\n"


def main(argv: list[str] | None = None) -> int:
    from detector.paths import DEFAULT_DATA_DIR

    p = argparse.ArgumentParser(prog="python -m detector.training.throughput", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA_DIR, help="FER2013 folder (default: $FER2013_DIR, else %(default)s)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", default="train_throughput.json")
    p.add_argument("--md", help="also write the markdown table here")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure the named variant in this process
    args = p.parse_args(argv)
    if args.one:
        variant = next(v for v in VARIANTS if v.name == args.one)
        print(json.dumps(measure(variant, args.data, args.steps, args.warmup)))
        return 0
    results = []
    for variant in VARIANTS:
        run = subprocess.run([sys.executable, "-m", "detector.training.throughput", "--one", variant.name, "--data", args.data,
                              "--steps", str(args.steps), "--warmup", str(args.warmup)],
                             capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if run.returncode:
            raise SystemExit(f"{variant.name}: {run.stderr.strip().splitlines()[-1]}")
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
        print(f"{variant.name}: {results[-1]['images_per_s']} images/s", file=sys.stderr)
    report = {"command": "python -m detector.training.throughput " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
              "steps": args.steps, "warmup": args.warmup, "variants": results}
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    if args.md:
        Path(args.md).write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
