"""Inference backends by name: ONNX Runtime and TensorFlow/Keras, and the table of what each loads.

A backend loads one model and runs a float32 batch through it. It reports the
model's input layout so the classifier can describe the model without hard-coding
anything. TensorFlow is imported only when the TensorFlow backend is chosen.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from detector.errors import ModelError, quiet_native_stderr

ONNX_FILE = "model.onnx"
INT8_ONNX_FILE = "model.int8.onnx"  # statically quantized copy, written by the export only when it keeps the accuracy

log = logging.getLogger(__name__)

#: Execution providers in the order we want them, when installed (onnxruntime-gpu has the first two).
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class Backend:
    name = ""
    #: Model input as (height, width, channels); None where the model leaves it open.
    input_hwc: tuple[int | None, int | None, int | None]
    channels_first: bool = False
    max_batch: int | None = None  # None = any batch size
    num_outputs: int | None = None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def output_classes(shape, path: Path) -> int | None:
    """The class count of a classifier's output, ``(batch, classes)`` (or ``(batch, 1, 1, classes)``);
    None where the model leaves it open (then the first batch is checked against the labels).
    Any other shape (a scalar, ``(batch, 7, 2)``) is not one score per class, so it is refused here."""
    if shape is None:  # unknown rank
        return None
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    rest = dims[1:]
    sized = [d for d in rest if d not in (1, None)]
    if not rest or len(sized) > 1:
        shown = ", ".join("?" if d is None else str(d) for d in dims)
        raise ModelError(f"{path}: the model's output must be one score per class, shape (batch, classes); got ({shown})")
    if None in rest:
        return None
    return sized[0] if sized else 1


def onnx_session_options(threads: int = 0):
    """ONNX Runtime options for one model call per frame: ``threads`` intra-op threads (0: one per
    core, up to 4), one inter-op thread, sequential, every graph optimisation, quiet, no spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or _physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # one call per frame: threads spinning between calls would only take the core the
    # face search runs on (and show as CPU use with nothing to do)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, path: Path, threads: int = 0, providers: tuple[str, ...] | None = None):
        import onnxruntime as ort

        options = onnx_session_options(threads)
        available = ort.get_available_providers()
        chosen = [p for p in (providers or PREFERRED_PROVIDERS) if p in available] or ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as error:  # onnxruntime raises its own untyped errors for corrupt files
            raise ModelError(f"cannot load ONNX model {path}: {str(error).splitlines()[0][:200]}") from None
        self.providers = self._session.get_providers()
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        shape = [d if isinstance(d, int) and d > 0 else None for d in model_input.shape]
        if len(shape) != 4:
            raise ModelError(f"{path}: expected a 4-D image input, got shape {model_input.shape}")
        self.channels_first = shape[1] in (1, 3) and shape[3] not in (1, 3)
        self.input_hwc = (shape[2], shape[3], shape[1]) if self.channels_first else (shape[1], shape[2], shape[3])
        self.max_batch = shape[0]
        self.input_dtype = input_dtype(model_input.type, path)
        self.num_outputs = output_classes(self._session.get_outputs()[0].shape, path)
        log.info("ONNX Runtime providers: %s", ", ".join(self.providers))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.channels_first:
            batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        return np.asarray(self._session.run(None, {self._input_name: cast_input(batch, self.input_dtype)})[0])


#: ONNX element types of an image input and the numpy type each is fed as.
ONNX_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                    "tensor(uint8)": np.uint8}


def input_dtype(onnx_type: str, path: Path) -> type:
    """The numpy type an ONNX input declared as ``onnx_type`` (``"tensor(float16)"``) is fed as.
    Raises ModelError naming the type for one no image batch can be given as (int64, string...)."""
    if onnx_type not in ONNX_INPUT_TYPES:
        known = ", ".join(t[7:-1] for t in ONNX_INPUT_TYPES)
        raise ModelError(f"{path}: the model's input is {onnx_type}; this app feeds images as {known}")
    return ONNX_INPUT_TYPES[onnx_type]


def cast_input(batch: np.ndarray, dtype: type) -> np.ndarray:
    """A float32 batch as ``dtype``: float types cast, uint8 rounded and clipped to 0..255
    (a uint8 model takes 0-255 pixels, as the model card's ``input_scale`` 255 says)."""
    if dtype == np.uint8:
        return np.clip(np.rint(batch), 0, 255).astype(np.uint8)
    return batch.astype(dtype, copy=False)


def import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_native_stderr():
        import tensorflow
    return tensorflow


class TensorFlowBackend(Backend):
    """A SavedModel folder's serving signature, or a ``.keras`` file (loaded with ``safe_mode``)."""

    name = "tf"

    def __init__(self, path: Path, threads: int = 0):
        try:
            tf = import_tensorflow()
        except ImportError:
            raise ModelError("this model needs TensorFlow: pip install tensorflow (or give a model with model.onnx)") from None
        if threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
            except RuntimeError:  # TensorFlow already running in this process: keep its setting
                log.info("TensorFlow threads already set; --threads ignored for it")
        self._tf = tf
        with quiet_native_stderr():
            if path.suffix == ".keras":
                self._fn, spec, self.num_outputs = _load_keras(path)
            else:
                self._fn, spec, self.num_outputs = _load_saved_model(tf, path)
        self.input_hwc = tuple(spec[1:4]) if len(spec) == 4 else (None, None, None)
        if len(spec) != 4:
            raise ModelError(f"{path}: expected a 4-D image input, got shape {spec}")
        self.max_batch = spec[0]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._fn(self._tf.constant(batch)))


def _load_keras(path: Path):
    import_tensorflow()
    import keras

    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for custom code, bad zips, unknown layers
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        if "arbitrary code execution" in first_line:  # safe_mode refused it; do not suggest turning that off
            raise ModelError(f"refusing to load Keras model {path}: it holds Python code (such as a Lambda layer), "
                             "and nothing in a model file is executed; save the model without it") from None
        raise ModelError(f"cannot load Keras model {path}: {first_line[:200]}") from None
    shape = [d if d else None for d in model.input_shape]
    if len(model.outputs) != 1:
        raise ModelError(f"{path}: expected one output, got {len(model.outputs)}")
    outputs = output_classes(model.output_shape, path)
    return (lambda x: model(x, training=False)), shape, outputs


def _load_saved_model(tf, path: Path):
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # TF raises its own error types for corrupt protobufs
        raise ModelError(f"cannot load SavedModel {path}: {str(error).splitlines()[0][:200]}") from None
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise ModelError(f"{path}: SavedModel has no 'serving_default' signature")
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{path}: expected one image input and one output, got {len(inputs)} and {len(outputs)}")
    (input_name, input_spec), = inputs.items()
    (output_name, output_spec), = outputs.items()
    shape = [d for d in input_spec.shape.as_list()]
    num_outputs = output_classes(None if output_spec.shape.rank is None else output_spec.shape.as_list(), path)
    call = signature

    def run(x):
        return call(**{input_name: x})[output_name]

    run.loaded = loaded  # keep the trackable object alive
    return run, shape, num_outputs


@dataclass(frozen=True)
class BackendFormat:
    """One row of the backend table (ultralytics' ``export_formats()`` read by ``AutoBackend``):
    what a backend loads. The flags, :func:`resolve_model` and Ray all read this table.

    ``suffixes``: files it loads on their own (``--model x.onnx``), named ``kind`` in messages.
    ``folder_files``: in a model folder, the files it loads, in order of preference;
    ``int8_files``: those of them ``--no-int8`` passes over. ``loads_folder``: it is handed the
    folder itself (a SavedModel, with its ``variables/``), not the file.
    """

    name: str
    load: Callable[..., Backend]
    kind: str
    suffixes: tuple[str, ...]
    folder_files: tuple[str, ...]
    int8_files: tuple[str, ...] = ()
    loads_folder: bool = False


#: name -> format, in the order ``--backend auto`` tries them on a model folder.
BACKENDS: dict[str, BackendFormat] = {}


def register_backend(entry: BackendFormat) -> BackendFormat:
    """Add a row to :data:`BACKENDS`; adding a backend is its module and this one call."""
    if entry.name in BACKENDS or entry.name == "auto":
        raise ValueError(f"backend {entry.name!r} is registered twice")
    BACKENDS[entry.name] = entry
    return entry


register_backend(BackendFormat("onnx", OnnxBackend, "an ONNX", (".onnx",), (INT8_ONNX_FILE, ONNX_FILE), int8_files=(INT8_ONNX_FILE,)))
register_backend(BackendFormat("tf", TensorFlowBackend, "a Keras", (".keras",), ("saved_model.pb",), loads_folder=True))


def resolve_model(path: Path, backend: str = "auto", int8: bool = True) -> tuple[str, Path]:
    """Which backend loads which file, for a model folder or a single model file (loads nothing).

    Raises:
        ModelError: no such path, an unknown backend, a file no backend loads, or a folder
        without a file the chosen backend loads.
    """
    path = Path(path)
    if backend != "auto" and backend not in BACKENDS:
        raise ModelError(f"unknown backend '{backend}'; choose auto, {', '.join(BACKENDS)}")
    if not path.exists():
        raise ModelError(f"model not found: {path}")
    tried = list(BACKENDS.values()) if backend == "auto" else [BACKENDS[backend]]
    if path.is_file():
        owner = next((entry for entry in BACKENDS.values() if path.suffix in entry.suffixes), None)
        if owner is None:
            suffixes = ", ".join(suffix for entry in BACKENDS.values() for suffix in entry.suffixes)
            raise ModelError(f"unsupported model file {path}: give a model folder or a file ending in {suffixes}")
        if owner not in tried:
            raise ModelError(f"{path} is {owner.kind} file; use --backend {owner.name} or auto")
        return owner.name, path
    for entry in tried:
        for name in entry.folder_files:
            if (path / name).is_file() and (int8 or name not in entry.int8_files):
                return entry.name, path if entry.loads_folder else path / name
    wanted = [name for entry in reversed(tried) for name in entry.folder_files if name not in entry.int8_files]
    others = [name for name in BACKENDS if name != backend]
    if backend != "auto":
        raise ModelError(f"no {' or '.join(wanted)} in {path}; use --backend {' or '.join(others) or 'auto'}")
    raise ModelError(f"no {' or '.join(wanted)} in model folder {path}")


def _physical_cores() -> int:
    """Logical CPUs, capped at 4: past that, one small model per frame gains nothing from more."""
    return max(1, min(4, os.cpu_count() or 1))
