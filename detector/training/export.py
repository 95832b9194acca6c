"""Export a trained ``.keras`` core model to the folder the app loads.

``OUT/`` is a TensorFlow SavedModel (raw 0-255 float32 NHWC in, softmax out) with
the model card (``detector.model_card``), ``model.onnx`` and ``metrics.json`` beside it. The ONNX
copy is checked against the SavedModel on real FER2013 faces: a converter bug that
shows only on natural images would otherwise reach users. With data, a static int8
copy (``model.int8.onnx``, what the app runs) is added when it keeps val accuracy.

ONNX (TF 2.21, Keras 3.15, tf2onnx 1.17, onnx 1.23, protobuf 7, numpy 2.4): Keras'
``model.export(path, format="onnx")`` works as installed (it patches tf2onnx for numpy 2,
then calls ``tf2onnx.convert.from_function``); no pins needed. The fallback, tf2onnx on
the SavedModel's ``serve`` function, works too and covers other Keras versions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import keras
import numpy as np

from detector.backends import ONNX_FILE
from detector.model_card import LABELS_FILE, METRICS_FILE, ModelCard, read_labels, write_card
from detector.training.ferplus import LABEL_SOURCES
from detector.training.quantize import add_int8
from detector.training.train import TRAIN_INFO_FILE

if TYPE_CHECKING:
    from detector.training.data import Split

log = logging.getLogger(__name__)

ONNX_OPSET = 17
CHECK_IMAGES = 256
MAX_ABS_DIFF = 1e-4
MIN_ARGMAX_AGREEMENT = 0.999
_LOW_PRECISION = {"mixed_float16", "mixed_bfloat16", "float16", "bfloat16"}


class OnnxMismatchError(RuntimeError):
    """The ONNX model does not reproduce the SavedModel's probabilities."""


class HorizontalFlip(keras.layers.Layer):
    """Mirror NHWC images left-right; lives only in exported graphs, never in checkpoints."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=2)


def _ends_in_softmax(model: keras.Model) -> bool:
    """Whether the model's last layer is a softmax (so its rows are probabilities, for the model card)."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return isinstance(last, keras.layers.Softmax) or getattr(activation, "__name__", "") == "softmax"


def averaged(cores: Sequence[keras.Model], tta: bool) -> keras.Model:
    """The mean of the cores' outputs (probabilities: each ends in a softmax), each also on
    the mirror image with ``tta`` (faces are roughly mirror-symmetric): an ensemble and/or
    flip TTA in one graph. One core without TTA is returned as it is."""
    if len(cores) == 1 and not tta:
        return cores[0]
    if len(cores) > 1:  # one graph needs distinct names for its sub-models
        cores = [keras.Model(core.inputs[0], core.outputs[0], name=f"member{i}") for i, core in enumerate(cores)]
    inputs = keras.Input(cores[0].input_shape[1:], name=cores[0].inputs[0].name)
    views = [inputs, HorizontalFlip(name="flip_lr")(inputs)] if tta else [inputs]
    probs = keras.layers.Average(name="probs")([core(view) for core in cores for view in views])
    name = f"ensemble{len(cores)}" if len(cores) > 1 else cores[0].name
    return keras.Model(inputs, probs, name=f"{name}_flip_tta" if tta else name)


def _float32_config(node: Any) -> Any:
    if isinstance(node, list):
        return [_float32_config(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("class_name") == "DTypePolicy" and node.get("config", {}).get("name") in _LOW_PRECISION:
        return {**node, "config": {"name": "float32"}}
    return {k: "float32" if k == "dtype" and isinstance(v, str) and v in _LOW_PRECISION else _float32_config(v) for k, v in node.items()}


def as_float32(model: keras.Model) -> keras.Model:
    """GPU runs save mixed_float16 layers; CPU runtimes are slow and inexact in float16."""
    config = keras.saving.serialize_keras_object(model)
    converted = _float32_config(config)
    if converted == config:
        return model
    log.info("converting mixed-precision model to float32 for export")
    clone = keras.saving.deserialize_keras_object(converted, safe_mode=True)
    clone.set_weights(model.get_weights())
    return clone


def load_core(keras_path: Path) -> keras.Model:
    """Load a ``.keras`` checkpoint (any backend) and check it is one NHWC image model."""
    if not keras_path.is_file():
        raise FileNotFoundError(f"no Keras model at {keras_path}")
    model = keras.models.load_model(keras_path, compile=False, safe_mode=True)
    if len(model.inputs) != 1 or len(model.input_shape) != 4 or None in model.input_shape[1:]:
        raise ValueError(f"expected one (N, H, W, C) image input, got {model.input_shape}")
    if len(model.outputs) != 1 or len(model.output_shape) != 2:
        raise ValueError(f"expected one (N, classes) output, got {model.output_shape}")
    return as_float32(model)


def model_inputs(images: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """FER2013's 48x48 gray uint8 faces as float32 0-255 at ``shape`` (H, W, C)."""
    import cv2

    height, width, channels = shape
    if images.shape[1:3] != (height, width):
        images = np.stack([cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR) for image in images])
    images = images.astype(np.float32).reshape(*images.shape[:3], -1)  # (N, H, W) -> (N, H, W, 1)
    if images.shape[-1] != channels:
        images = np.repeat(images[..., :1], channels, axis=-1)
    return images


def check_agreement(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """Max abs difference and argmax agreement; raises when outside the app's tolerance."""
    if reference.shape != candidate.shape:
        raise OnnxMismatchError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    max_diff = float(np.max(np.abs(reference - candidate)))
    agreement = float(np.mean(reference.argmax(-1) == candidate.argmax(-1)))
    if not max_diff < MAX_ABS_DIFF or agreement < MIN_ARGMAX_AGREEMENT:
        raise OnnxMismatchError(f"ONNX disagrees with SavedModel: max abs diff {max_diff:.2e}, argmax agreement {agreement:.4f}")
    return max_diff, agreement


def _to_onnx(model: keras.Model, saved_model: Path, onnx_path: Path) -> str:
    """Keras' exporter first; tf2onnx on the SavedModel if this Keras cannot convert."""
    try:
        model.export(str(onnx_path), format="onnx", opset_version=ONNX_OPSET, verbose=False)
        return "keras"
    except Exception as error:  # noqa: BLE001 - any converter failure has the same remedy
        log.warning("Keras ONNX export failed (%s: %s); converting the SavedModel with tf2onnx", type(error).__name__, error)
    import tensorflow as tf
    import tf2onnx

    with contextlib.suppress(ImportError):  # Keras' numpy-2 fixes for tf2onnx; private, so optional
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=model.inputs[0].name)
    loaded = tf.saved_model.load(str(saved_model))  # keep referenced, or TF frees its variables mid-call
    tf2onnx.convert.from_function(loaded.serve, [spec], opset=ONNX_OPSET, output_path=str(onnx_path))
    return "tf2onnx"


class ClassBias(keras.layers.Layer):
    """Probabilities times ``exp(bias)`` per class, rows renormalised: the log-offsets that
    :mod:`detector.training.calibrate` fitted on val; lives only in exported graphs."""

    def __init__(self, bias: Sequence[float], **kwargs):
        super().__init__(**kwargs)
        self.bias = [float(b) for b in bias]

    def call(self, probs):
        weighted = probs * keras.ops.exp(keras.ops.convert_to_tensor(self.bias, dtype=probs.dtype))
        return weighted / keras.ops.sum(weighted, axis=-1, keepdims=True)

    def get_config(self):
        return {**super().get_config(), "bias": self.bias}


def with_class_bias(model: keras.Model, val: Split | None, classes: Sequence[str]) -> tuple[keras.Model, dict[str, Any]]:
    """``model`` (probabilities out) followed by per-class log-offsets fitted on ``val`` for
    macro-F1, and what they did on val.

    Raises:
        ValueError: no val faces with the model's classes to fit them on.
    """
    from detector.training.calibrate import MAX_ACCURACY_DROP, fit_class_bias
    from detector.training.evaluate import classification_metrics

    if val is None or tuple(classes) != val.classes:
        raise ValueError("--class-bias needs --data with val faces of the model's own classes, in its order")
    probs = model.predict(model_inputs(val.images, model.input_shape[1:]), batch_size=256, verbose=0)
    layer = ClassBias(fit_class_bias(probs, val.labels), name="class_bias")
    before = classification_metrics(val.labels, probs.argmax(1), classes)
    after = classification_metrics(val.labels, keras.ops.convert_to_numpy(layer(probs)).argmax(1), classes)  # the layer itself
    log.info("class bias %s: val accuracy %.4f -> %.4f, macro-F1 %.4f -> %.4f", [round(b, 2) for b in layer.bias],
             before["accuracy"], after["accuracy"], before["macro_f1"], after["macro_f1"])
    outputs = layer(model.outputs[0])
    report = {"log_offsets": dict(zip(classes, layer.bias)), "max_val_accuracy_drop": MAX_ACCURACY_DROP,
              "val_accuracy": [before["accuracy"], after["accuracy"]], "val_macro_f1": [before["macro_f1"], after["macro_f1"]]}
    return keras.Model(model.inputs[0], outputs, name=f"{model.name}_class_bias"), report


def verify_onnx(saved_model: Path, onnx_path: Path, images: np.ndarray) -> dict[str, Any]:
    """Run the SavedModel and onnxruntime on the same images; also checks batch size 1."""
    import onnxruntime as ort
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model))
    if "serving_default" not in loaded.signatures:
        raise OnnxMismatchError("SavedModel has no serving_default signature")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    reference = loaded.serve(tf.constant(images)).numpy()
    candidate = session.run(None, {name: images})[0]
    single = session.run(None, {name: images[:1]})[0]
    max_diff, agreement = check_agreement(reference, candidate)
    check_agreement(reference[:1], single)
    return {"onnx_max_abs_diff": max_diff, "onnx_argmax_agreement": agreement, "onnx_check_images": len(images)}


def flip_tta_accuracy(core: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Val accuracy without and with flip TTA, so the choice of ``--tta`` rests on data."""
    found = ensemble_accuracy([core], images, labels)
    return {key: found[key] for key in ("val_accuracy_no_tta", "val_accuracy_flip_tta")} | {"val_images": int(len(labels))}


def ensemble_accuracy(cores: Sequence[keras.Model], images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Val accuracy of each member and of their average, without and with flip TTA, so the
    choice of members and of ``--tta`` rests on data."""
    views = [[core.predict(x, batch_size=256, verbose=0) for x in (images, images[:, :, ::-1])] for core in cores]

    def accuracy(probs: np.ndarray) -> float:
        return float(np.mean(probs.argmax(-1) == labels))

    return {"member_val_accuracy": [{"no_tta": accuracy(plain), "flip_tta": accuracy(plain + mirrored)} for plain, mirrored in views],
            "val_accuracy_no_tta": accuracy(sum(plain for plain, _ in views)),
            "val_accuracy_flip_tta": accuracy(sum(plain + mirrored for plain, mirrored in views))}


def _check_images(val: Split | None, classes: Sequence[str], core: keras.Model) -> tuple[np.ndarray, dict[str, Any]]:
    """Real val faces when given (plus TTA accuracy if classes match), else noise."""
    shape = core.input_shape[1:]
    if val is None:
        log.warning("no data given: checking ONNX on random pixels, not real faces")
        noise = np.random.default_rng(0).uniform(0, 255, (CHECK_IMAGES, *shape)).astype(np.float32)
        return noise, {"onnx_check_source": "uniform noise"}
    metrics: dict[str, Any] = {"onnx_check_source": "fer2013 val"}
    if tuple(classes) == val.classes:
        metrics.update(flip_tta_accuracy(core, model_inputs(val.images, shape), val.labels))
        log.info("val accuracy %.4f, with flip TTA %.4f", metrics["val_accuracy_no_tta"], metrics["val_accuracy_flip_tta"])
    elif set(classes) == set(val.classes):
        log.warning("class order %s differs from the data's %s: is labels.txt right?", list(classes), val.classes)
    else:
        log.info("classes differ from the data's %s: skipping accuracy", val.classes)
    return model_inputs(val.subset(CHECK_IMAGES, seed=0).images, shape), metrics


def _arch_name(keras_path: Path, core: keras.Model) -> str:
    """The registry name from the run's config.json (fer_vgg_wide builds a model named fer_vgg)."""
    config = keras_path.parent / "config.json"
    arch = json.loads(config.read_text()).get("arch") if config.is_file() else None
    return str(arch or core.name)


def _staging_dir(out_dir: Path) -> Path:
    """Write beside ``out_dir`` and swap in at the end: a failed export never leaves a
    half-written model where the app looks (``OUT.partial`` stays for inspection)."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not (out_dir / "saved_model.pb").exists():
        raise FileExistsError(f"{out_dir} exists and is not an exported model; refusing to replace it")
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def _checked_classes(classes: Sequence[str]) -> list[str]:
    """labels.txt is one name per line, and the app maps output index -> name through it."""
    names = [str(name) for name in classes]
    if not names or len(set(names)) != len(names) or any(not name.strip() or "\n" in name for name in names):
        raise ValueError(f"classes must be distinct non-empty one-line names, got {names}")
    return names


def export_model(keras_path: Path, out_dir: Path, classes: Sequence[str], data: str | None = None, tta: bool = False,
                 int8: bool = True, class_bias: bool = False, ensemble: Sequence[Path] = (), labels_from: str = "fer2013") -> Path:
    """Export ``keras_path`` to ``out_dir`` (SavedModel + ONNX + labels + info, and an int8
    ONNX copy when ``data`` is given and it keeps val accuracy); returns ``out_dir``.

    ``metrics.json`` carries the training run's record (``train_info.json`` beside
    ``keras_path``, a list under ``"training"``) so the model folder says how it was made.
    ``ensemble``: more trained cores of the same input and classes, averaged with
    ``keras_path``'s in one graph (each member costs one more pass per face, two with TTA).
    ``class_bias``: end the graph with per-class log-offsets fitted on val for macro-F1
    (:func:`with_class_bias`; needs ``data``), recorded under ``"class_bias"``. ``labels_from``:
    what val's labels are for every check (``"ferplus"``: the FER+ majority, as the run chose
    its checkpoints; :func:`detector.training.ferplus.relabel`), recorded as ``val_labels``."""
    started = time.perf_counter()
    keras_path, out_dir, classes = Path(keras_path), Path(out_dir), _checked_classes(classes)
    staging = _staging_dir(out_dir)
    members = [keras_path, *map(Path, ensemble)]
    cores = [load_core(path) for path in members]
    core = cores[0]
    if core.output_shape[-1] != len(classes):
        raise ValueError(f"model has {core.output_shape[-1]} outputs but {len(classes)} class names were given")
    if any(c.input_shape != core.input_shape or c.output_shape != core.output_shape or not _ends_in_softmax(c) for c in cores[1:]):
        raise ValueError("ensemble members need the first model's input and output shapes and a softmax output")
    val = None
    if data is not None:
        from detector.training.data import load_split
        from detector.training.ferplus import relabel

        # read once: the ONNX check, TTA accuracy and the int8 decision
        val = relabel(load_split(data, "val"), data, labels_from)
    images, metrics = _check_images(val, classes, core)
    if val is not None:
        metrics["val_labels"] = labels_from
    model = averaged(cores, tta)
    if len(cores) > 1 and "val_accuracy_no_tta" in metrics:
        metrics["ensemble"] = ensemble_accuracy(cores, model_inputs(val.images, core.input_shape[1:]), val.labels)
        metrics["ensemble"]["members"] = [str(path) for path in members]
        log.info("ensemble of %d: val accuracy %.4f, with flip TTA %.4f", len(cores),
                 metrics["ensemble"]["val_accuracy_no_tta"], metrics["ensemble"]["val_accuracy_flip_tta"])
    if class_bias:
        if not _ends_in_softmax(core):
            raise ValueError("--class-bias needs a model whose last layer is a softmax")
        model, metrics["class_bias"] = with_class_bias(model, val, classes)
    model.export(str(staging), format="tf_saved_model", verbose=False)
    metrics["onnx_converter"] = _to_onnx(model, staging, staging / ONNX_FILE)
    metrics.update(verify_onnx(staging, staging / ONNX_FILE, images))
    tta_name = "flip" if tta else None
    write_card(staging, ModelCard(labels=tuple(classes), input_shape=tuple(int(d) for d in core.input_shape[1:]),
                                  input_scale=255.0, outputs="probabilities" if _ends_in_softmax(core) else "logits",
                                  tta=tta_name, arch=_arch_name(keras_path, core),
                                  members=len(cores)))  # an ensemble of that many ``arch`` networks, averaged in the graph
    if int8 and "val_accuracy_no_tta" in metrics:  # real val faces whose classes match: int8 can be judged
        metrics.update(add_int8(staging, val))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    metrics.update(params=sum(int(c.count_params()) for c in cores), tta=tta_name, onnx_opset=ONNX_OPSET, exported_at=now)
    metrics["export_seconds"] = round(time.perf_counter() - started, 1)
    records = [path.parent / TRAIN_INFO_FILE for path in members]  # beside best.keras when main.py train made it
    if all(record.is_file() for record in records):  # minutes, epochs, which weights won, data: one per member
        metrics["training"] = [json.loads(record.read_text()) for record in records]
    (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    log.info("exported %s to %s in %.1fs (ONNX max abs diff %.1e)", keras_path, out_dir, metrics["export_seconds"], metrics["onnx_max_abs_diff"])
    return out_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m detector.training.export", description=__doc__.split("\n")[0])
    parser.add_argument("keras_paths", type=Path, nargs="+", metavar="keras_path",
                        help="trained core model (.keras); several: an ensemble averaged in one graph")
    parser.add_argument("out_dir", type=Path, help="folder to write (replaced if it is an earlier export)")
    parser.add_argument("--data", help="FER2013 folder/csv/npz: check ONNX on real val faces and measure TTA")
    parser.add_argument("--tta", action="store_true", help="bake horizontal-flip test-time augmentation into the graph")
    parser.add_argument("--class-bias", action="store_true",
                        help="end the graph with per-class log-offsets fitted on --data's val split for macro-F1")
    parser.add_argument("--labels-from", choices=LABEL_SOURCES,
                        help="val's labels for the checks: fer2013, or the FER+ majority (ferplus, mix); default: the run's own")
    parser.add_argument("--no-int8", dest="int8", action="store_false",
                        help="no model.int8.onnx (by default written when --data is given and it keeps val accuracy)")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = _parser().parse_args(argv)
    first, *others = args.keras_paths
    labels = first.parent / LABELS_FILE  # written there by train.py
    if not labels.is_file():  # never guessed: FER2013's order and a class-folder (alphabetical) order differ, silently
        raise SystemExit(f"error: no {labels}: put the class names there, one per line in the model's output order")
    classes = read_labels(labels)
    for other in others:
        if (other.parent / LABELS_FILE).is_file() and read_labels(other.parent / LABELS_FILE) != classes:
            raise ValueError(f"{other} was trained on other classes (or another order) than {first}")
    config = first.parent / "config.json"  # train.py's record of the run
    run_labels = json.loads(config.read_text()).get("labels_from") if config.is_file() else None
    labels_from = args.labels_from or run_labels or "fer2013"  # ferplus and mix: val judged on the FER+ majority
    return export_model(first, args.out_dir, classes, data=args.data, tta=args.tta, int8=args.int8,
                        class_bias=args.class_bias, ensemble=others, labels_from=labels_from)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
