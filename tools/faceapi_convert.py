"""face-api.js's expression network (npm, MIT) as a model folder the app loads: a second classifier,
trained by other people on other faces, to compare ours with on real photos.

    python tools/faceapi_convert.py runs/cand/faceapi     # npm pack, check hashes, convert, compare, write
    python tools/faceapi_convert.py runs/cand/faceapi --tarball vladmandic-face-api-1.7.15.tgz

The weights come from npm's ``@vladmandic/face-api@1.7.15`` (``model/face_expression_model*``:
face-api.js's FaceExpressionNet by Vincent Mühler, MIT; trained, face-api.js's README says, "on a
variety of images from publicly available datasets as well as images scraped from the web").
The network is rebuilt here as an ONNX graph from face-api.js's own definition
(``FaceFeatureExtractor.forwardInput``, ``denseBlock4``, ``FaceProcessor.runNet``): 112x112 RGB,
mean RGB (122.782, 117.001, 104.298) subtracted and divided by 255, four densely connected blocks of
3x3 convolutions (the first plain, the rest depthwise-separable; each block halves the side with
TensorFlow's "same" padding), a 7x7 average pool, a 7-way dense layer, softmax; outputs reordered
to FER2013's class order. Its probabilities are compared with face-api's own JavaScript forward pass
(``@tensorflow/tfjs`` CPU backend in Node) on faces the app's Haar detector finds in real frames,
and the largest difference is written to ``OUT/conversion.json``. The folder is a candidate for
``tools/candidates.py`` (docs/MODELS.md); nothing of it is committed or shipped.

Needs ``npm`` and ``node`` (18 or later) on PATH, and the npm registry (``--tarball`` spares the
package's download, not TensorFlow.js's).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detector.errors import UserError, run_tool  # noqa: E402
from detector.labels import FER2013_LABELS  # noqa: E402
from detector.backends import ONNX_FILE  # noqa: E402
from detector.model_card import LABELS_FILE, MODEL_CARD_FILE, ModelCard, write_card  # noqa: E402
from tools.blazeface_convert import real_frames  # noqa: E402

log = logging.getLogger("faceapi_convert")

PACKAGE = "@vladmandic/face-api@1.7.15"
TARBALL = "vladmandic-face-api-1.7.15.tgz"
#: npm's ``dist.integrity`` of the tarball (``npm view @vladmandic/face-api@1.7.15 dist.integrity``).
TARBALL_SHA512 = "WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw=="
#: Files of the package, relative to its ``package/`` folder.
WEIGHTS = "model/face_expression_model.bin"
MANIFEST = "model/face_expression_model-weights_manifest.json"
LICENSE = "LICENSE"
#: The pure-JavaScript TensorFlow.js that runs face-api's own forward pass for the comparison.
TFJS = "@tensorflow/tfjs@4.22.0"

SIDE = 112  # FaceFeatureExtractor: toBatchTensor(112)
MEAN_RGB = (122.782, 117.001, 104.298)
#: face-api.js's output order (its FACE_EXPRESSION_LABELS: neutral, happy, sad, angry, fearful, disgusted,
#: surprised), named as FER2013 names them; TO_FER2013 takes its columns into FER2013's order.
FACEAPI_LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
TO_FER2013 = [FACEAPI_LABELS.index(label) for label in FER2013_LABELS]
OPSET = 17
TOLERANCE = 1e-4  # largest |ONNX - face-api.js| accepted, in probability
CONVERSION_FILE = "conversion.json"
#: What the tool writes into its model folder (a rerun may replace them; anything else there stops it).
OUT_FILES = {ONNX_FILE, LICENSE, CONVERSION_FILE, MODEL_CARD_FILE, LABELS_FILE}

#: face-api's own forward pass in Node: its CommonJS build asks for tfjs-node (native, downloaded at
#: install), so that one name is resolved to the pure-JavaScript tfjs instead. Arguments: the package
#: folder, its manifest, its weights, and the crops (N x 112 x 112 x 3 uint8 RGB); prints the N
#: probability rows (face-api's order) as JSON.
REFERENCE_JS = r"""
const Module = require('module');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return resolve.call(this, request === '@tensorflow/tfjs-node' ? '@tensorflow/tfjs' : request, ...rest);
};
const fs = require('fs');
const faceapi = require(process.argv[2] + '/dist/face-api.node.js');
const tf = faceapi.tf;
(async () => {
  await tf.setBackend('cpu');
  const manifest = JSON.parse(fs.readFileSync(process.argv[3]));
  const weights = fs.readFileSync(process.argv[4]);
  const net = new faceapi.FaceExpressionNet();
  net.loadFromWeightMap(tf.io.decodeWeights(
    weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength), manifest.flatMap(g => g.weights)));
  const crops = fs.readFileSync(process.argv[5]), size = SIDE * SIDE * 3, rows = [];
  for (let i = 0; i < crops.length / size; i++) {
    const face = tf.tensor3d(new Int32Array(crops.subarray(i * size, (i + 1) * size)), [SIDE, SIDE, 3], 'int32');
    rows.push(Array.from(await (await net.forward(face)).data()));
  }
  console.log(JSON.stringify(rows));
})();
""".replace("SIDE", str(SIDE))


def _run(command: list[str], what: str) -> str:
    """``command``'s standard output.

    Raises:
        UserError: it failed; one line naming ``what`` it was doing and npm's or Node's first
            error line (``npm error ...``, ``...Error: ...``), else its last line.
    """
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("npm error") or "Error:" in line]
        cause = (errors or lines or [f"exit code {done.returncode}"])[0]
        raise UserError(f"{what} failed: {cause[:300]}")
    return done.stdout


def npm_pack(folder: Path) -> Path:
    """``npm pack`` the pinned package into ``folder`` (from the npm registry); returns the tarball.

    Raises:
        UserError: npm could not fetch it (offline: pass ``--tarball``).
    """
    _run(["npm", "pack", PACKAGE, "--pack-destination", str(folder)], f"fetching {PACKAGE} from the npm registry")
    return folder / TARBALL


def extract(tarball: Path, folder: Path) -> Path:
    """The package, unpacked into ``folder`` once its sha512 is npm's; returns its ``package/`` folder.

    Raises:
        UserError: the tarball is not the pinned package.
    """
    digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if digest != TARBALL_SHA512:
        raise UserError(f"{tarball}: sha512 {digest} is not npm's {TARBALL_SHA512} for {PACKAGE}")
    with tarfile.open(tarball) as archive:
        archive.extractall(folder, filter="data")
    return folder / "package"


def read_weights(package: Path) -> dict[str, np.ndarray]:
    """The TensorFlow.js weights by name, float32, in their manifest's shapes (uint8 ones dequantised
    as TensorFlow.js does: ``q * scale + min``), read from the unpacked ``package`` folder.

    Raises:
        UserError: the weights file is not the size its manifest describes.
    """
    manifest = json.loads((package / MANIFEST).read_text(encoding="utf-8"))
    raw = (package / WEIGHTS).read_bytes()
    weights, offset = {}, 0
    for spec in (w for group in manifest for w in group["weights"]):
        count = int(np.prod(spec["shape"]))
        quantization = spec.get("quantization")
        if quantization:
            values = np.frombuffer(raw, np.uint8, count, offset) * np.float32(quantization["scale"]) + np.float32(quantization["min"])
            offset += count
        else:
            values = np.frombuffer(raw, np.float32, count, offset)
            offset += 4 * count
        weights[spec["name"]] = values.astype(np.float32).reshape(spec["shape"])
    if offset != len(raw):
        raise UserError(f"{WEIGHTS}: the manifest describes {offset} bytes, the file has {len(raw)}")
    return weights


class _Graph:
    """An ONNX graph written node by node: each method adds nodes and returns its output's name."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights, self.nodes, self.initializers = weights, [], []

    def _name(self, kind: str) -> str:
        return f"{kind}_{len(self.nodes) + len(self.initializers)}"

    def constant(self, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self._name("const")
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, *inputs: str, **attributes) -> str:
        from onnx import helper

        name = self._name(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [name], **attributes))
        return name

    def conv(self, x: str, kernel: np.ndarray, bias: np.ndarray | None, stride: int, depthwise: bool = False) -> str:
        """TensorFlow's conv2d / depthwiseConv2d with "same" padding (the extra row and column at the
        end: ONNX's SAME_UPPER); ``kernel`` in TensorFlow's ``(h, w, in, out)`` / ``(h, w, in, 1)`` layout."""
        onnx_kernel = np.transpose(kernel, (2, 3, 0, 1) if depthwise else (3, 2, 0, 1))
        inputs = [x, self.constant(np.ascontiguousarray(onnx_kernel))] + ([self.constant(bias)] if bias is not None else [])
        return self.node("Conv", *inputs, strides=[stride, stride], auto_pad="SAME_UPPER",
                         group=kernel.shape[2] if depthwise else 1, kernel_shape=list(kernel.shape[:2]))

    def separable(self, x: str, prefix: str, stride: int) -> str:
        """TensorFlow's separableConv2d (depthwise, then pointwise) plus bias."""
        w = self.weights
        depthwise = self.conv(x, w[f"{prefix}/depthwise_filter"], None, stride, depthwise=True)
        return self.conv(depthwise, w[f"{prefix}/pointwise_filter"], w[f"{prefix}/bias"], 1)

    def dense_block(self, x: str, prefix: str, first: bool) -> str:
        """face-api.js's ``denseBlock4`` (scale-down): each conv adds to the sum of the ones before it."""
        w = self.weights
        out1 = self.node("Relu", self.conv(x, w[f"{prefix}/conv0/filters"], w[f"{prefix}/conv0/bias"], 2) if first
                         else self.separable(x, f"{prefix}/conv0", 2))
        out2 = self.separable(out1, f"{prefix}/conv1", 1)
        out3 = self.separable(self.node("Relu", self.node("Add", out1, out2)), f"{prefix}/conv2", 1)
        in4 = self.node("Relu", self.node("Add", out1, self.node("Add", out2, out3)))
        out4 = self.separable(in4, f"{prefix}/conv3", 1)
        return self.node("Relu", self.node("Add", out1, self.node("Add", out2, self.node("Add", out3, out4))))


def build_onnx(weights: dict[str, np.ndarray]):
    """The expression network as an ONNX model: input ``(N, 112, 112, 3)`` float32 RGB 0-255
    (the app's layout), output ``(N, 7)`` probabilities in :data:`FER2013_LABELS` order."""
    from onnx import TensorProto, checker, helper

    graph = _Graph(weights)
    x = graph.node("Transpose", "input", perm=[0, 3, 1, 2])
    mean = graph.constant(np.array(MEAN_RGB, np.float32).reshape(1, 3, 1, 1))
    x = graph.node("Div", graph.node("Sub", x, mean), graph.constant(np.array(255, np.float32)))
    for block in range(4):
        x = graph.dense_block(x, f"dense{block}", first=block == 0)
    x = graph.node("Flatten", graph.node("AveragePool", x, kernel_shape=[7, 7], strides=[2, 2]), axis=1)
    logits = graph.node("Add", graph.node("MatMul", x, graph.constant(weights["fc/weights"])), graph.constant(weights["fc/bias"]))
    logits = graph.node("Gather", logits, graph.constant(np.array(TO_FER2013, np.int64)), axis=1)
    graph.nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    model = helper.make_model(
        helper.make_graph(graph.nodes, "faceapi_expression",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", SIDE, SIDE, 3])],
                          [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(FER2013_LABELS)])],
                          graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    checker.check_model(model)
    return model


def face_crops(count: int = 24) -> np.ndarray:
    """``(N, 112, 112, 3)`` uint8 RGB faces the app would classify: Haar's boxes on real frames
    (the sample clip, wild-dev photos), fitted as the classifier fits them.

    Raises:
        UserError: no face found in them.
    """
    from detector.classifier import fit_crop
    from detector.detection import create_detector

    haar = create_detector("haar")
    crops = []
    for frame in real_frames(count):
        for x, y, w, h in haar.detect(frame).boxes:
            crops.append(fit_crop(frame[y:y + h, x:x + w], (SIDE, SIDE), 3))
    if not crops:
        raise UserError("no face found in the sample clip or wild-dev photos to compare the conversion on")
    return np.clip(np.rint(np.stack(crops)), 0, 255).astype(np.uint8)


def reference(package: Path, crops: np.ndarray, work: Path) -> np.ndarray:
    """face-api.js's own probabilities for ``crops`` (``(N, 112, 112, 3)`` uint8 RGB): ``(N, 7)``
    float32 in :data:`FER2013_LABELS` order. Installs :data:`TFJS` from the npm registry into
    ``work`` and moves the unpacked ``package`` there, beside it, where Node's ``require`` finds it.

    Raises:
        UserError: npm could not install TensorFlow.js, or face-api.js's forward pass failed.
    """
    _run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(work), TFJS],
         f"installing {TFJS} from the npm registry (face-api.js's own forward pass needs it)")
    moved = work / "node_modules" / "face-api"
    shutil.move(str(package), moved)
    (work / "crops.u8").write_bytes(crops.tobytes())
    (work / "reference.js").write_text(REFERENCE_JS, encoding="utf-8")
    printed = _run(["node", str(work / "reference.js"), str(moved), str(moved / MANIFEST), str(moved / WEIGHTS),
                    str(work / "crops.u8")], "face-api.js's forward pass in Node")
    try:
        rows = np.array(json.loads(printed), np.float32)
    except ValueError:
        raise UserError(f"face-api.js's forward pass in Node printed no probabilities: {printed.strip()[:200]!r}") from None
    if rows.shape != (len(crops), len(FACEAPI_LABELS)):
        raise UserError(f"face-api.js's forward pass in Node gave {rows.shape} probabilities for {len(crops)} faces")
    return rows[:, TO_FER2013]


def convert(tarball: Path | None, out: Path) -> dict:
    """Write the model folder ``out`` (only once the graph matches face-api.js); returns what
    ``conversion.json`` records.

    Raises:
        UserError: npm or node missing or failing, a tarball that is not npm's, ``out`` holding
            other files (an old ``model.int8.onnx`` there would be run instead), or a graph that
            differs from face-api.js by more than :data:`TOLERANCE`.
    """
    import onnx
    import onnxruntime as ort

    for tool in ("npm", "node"):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} is not on PATH: install Node.js (18 or later) with npm")
    others = sorted(p.name for p in out.iterdir() if p.name not in OUT_FILES) if out.is_dir() else []
    if others:
        raise UserError(f"{out} holds other files ({', '.join(others[:5])}): write the model folder into a new or empty folder")
    if tarball is not None and not tarball.is_file():
        raise UserError(f"tarball not found: {tarball}")
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        package = extract(tarball or npm_pack(work), work / "unpacked")
        model_bytes = build_onnx(read_weights(package)).SerializeToString()
        license_text = (package / LICENSE).read_text(encoding="utf-8")
        crops = face_crops()
        session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
        ours = session.run(None, {"input": crops.astype(np.float32)})[0]
        theirs = reference(package, crops, work / "node")
    worst = float(np.abs(ours - theirs).max())
    if worst > TOLERANCE:
        raise UserError(f"the ONNX graph differs from face-api.js by {worst:.2e} (> {TOLERANCE}) on real faces")
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx.load_from_string(model_bytes), out / ONNX_FILE)
    (out / LICENSE).write_text(license_text, encoding="utf-8")
    write_card(out, ModelCard(labels=FER2013_LABELS, input_shape=(SIDE, SIDE, 3), input_scale=255.0, outputs="probabilities"))
    record = {"package": PACKAGE, "tarball_sha512": TARBALL_SHA512, "reference": f"face-api.js forward pass, {TFJS} CPU backend",
              "faces": len(crops), "compared_on": "Haar faces in real frames (sample clip, wild-dev photos)",
              "max_abs_diff": worst, "same_label": float((ours.argmax(1) == theirs.argmax(1)).mean()),
              "onnx_sha256": hashlib.sha256(model_bytes).hexdigest()}
    (out / CONVERSION_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s: largest difference from face-api.js %.2e on %d faces", out, worst, len(crops))
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="model folder to write (e.g. runs/cand/faceapi)")
    parser.add_argument("--tarball", type=Path, help=f"a downloaded {TARBALL} (default: npm pack it; the check "
                        f"against face-api.js still installs {TFJS} from the npm registry)")
    args = parser.parse_args(argv)
    return run_tool(lambda: convert(args.tarball, args.out))


if __name__ == "__main__":
    sys.exit(main())
