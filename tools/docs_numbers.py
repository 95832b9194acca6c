"""Every measured number in the docs, regenerated from the JSON its command wrote.

    python tools/docs_numbers.py            # rewrite README.md and docs/*.md in place
    python tools/docs_numbers.py --check    # exit 1 and name each stale spot (tests/test_docs_numbers.py)

Two kinds of markers in the markdown:

- a block, ``<!-- NAME:begin -->`` ... ``<!-- NAME:end -->`` (a note may follow ``begin``): a
  whole table, rendered by the measuring command's own function of its JSON (the same text the
  command writes beside its JSON, or into the doc itself);
- a value, ``<!-- n:NAME -->66.9%<!-- /n -->``: one number in the prose.

Each name maps to one JSON file (in docs/, or the shipped model's metrics.json) and one function
of it, below: one home for each number. An unknown name is an error, so a typo cannot leave a number unchecked.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BLOCK = re.compile(r"<!-- (?P<name>[\w.-]+):begin(?P<note>[^>]*)-->\n(?P<body>.*?)\n<!-- (?P=name):end -->", re.S)
VALUE = re.compile(r"<!-- n:(?P<name>[\w.-]+) -->(?P<body>.*?)<!-- /n -->")


@lru_cache(maxsize=None)
def report(name: str) -> dict:
    """docs/NAME.json, read once."""
    return json.loads((REPO / "docs" / f"{name}.json").read_text(encoding="utf-8"))


def _block(module: str, function: str, name: str) -> Callable[[], str]:
    """A table that ``module.function`` renders from docs/NAME.json (imported only when used)."""
    def render() -> str:
        return getattr(importlib.import_module(module), function)(report(name))

    return render


def _soak_minutes() -> float:
    from tools.soak import minutes

    return minutes(report("soak"))


BLOCKS: dict[str, Callable[[], str]] = {
    "bench": _block("detector.bench", "markdown", "bench"),
    "bench-unpaced": _block("detector.bench", "markdown", "bench_unpaced"),
    "bench-blazeface": _block("detector.bench", "markdown", "bench_blazeface"),
    "flicker": _block("tools.flicker", "markdown", "flicker"),
    "soak": _block("tools.soak", "markdown", "soak"),
    "quantization": _block("tools.quantize", "markdown", "quantization"),
    "train-throughput": _block("detector.training.throughput", "markdown", "train_throughput"),
    "bench-serve": _block("detector.serve.bench", "table", "serving"),  # these two commands also write
    "scaling": _block("detector.batch.bench", "markdown", "scaling"),  # their tables into the doc itself
    "real-clip": _block("tools.real_clip", "markdown", "real_clip"),
    "candidates-val": _block("tools.candidates", "markdown", "candidates_val"),
    "calibration": _block("detector.training.temperature", "markdown", "calibration"),
    "wine-bundle": _block("tools.wine_bundle", "markdown", "wine_bundle"),
    "wine-bundle-largest": _block("tools.wine_bundle", "largest", "wine_bundle"),
    "detectors": _block("tools.detector_compare", "markdown", "detectors"),
    "framing": _block("tools.face_framing", "markdown", "framing"),
    "shipped-per-class": lambda: importlib.import_module("detector.training.evaluate").markdown(_export()["evaluation_test"]),
    "shipped-photos-confusion": lambda: importlib.import_module("detector.training.photos").confusion_markdown(
        _shipped_test("photos", "end_to_end")),
}


def _clip(clip: str, key: str = "total", stat: str = "p50", name: str = "bench", loop: str = "pipeline") -> Callable[[], str]:
    """A stage's milliseconds in bench JSON ``name``; ``loop``: "pipeline", "naive" or, in a run
    with another ``--detector``, "default_detector" (the default detector's pipeline beside it)."""
    return lambda: f"{report(name)['clips'][clip][loop]['ms'][key][stat]:.1f}"


def _variant(name: str) -> dict:
    return next(v for v in report("quantization")["variants"] if v["variant"] == name)


@lru_cache(maxsize=None)
def _export() -> dict:
    """The shipped model's own metrics.json, written by its export (val accuracies, the int8 decision)."""
    return json.loads((REPO / "saved_model_trt" / "metrics.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _previous() -> dict:
    """The metrics.json of the model shipped before (the FER2013-label ensemble of 2026-11-30), kept in docs/."""
    return report("previous_model_metrics")


def _flicker_row(video: str, tau: float | None = None) -> dict:
    """The flicker row of ``video`` at ``tau`` (default: the app's default smoothing; 0 = raw)."""
    data = report("flicker")
    tau = data["default_tau"] if tau is None else tau
    return next(r for r in data["flicker"] if r["video"] == video and r["tau"] == tau)


def _found(detector: str, set_name: str) -> Callable[[], str]:
    """Share of faces ``detector`` found in a set of tools/detector_compare.py, all sources together."""
    def share() -> str:
        rows = report("detectors")["sets"][set_name][detector].values()
        return f"{100 * sum(r['found'] for r in rows) / sum(r['pictures'] for r in rows):.1f}%"

    return share


def _lag_median(column: str) -> str:
    data = report("flicker")
    return f"{next(r for r in data['lag'] if r['tau'] == data['default_tau'])[column]['median_s']:.2f}"


def _shipped_test(*keys: str) -> Any:
    """A figure or table (dict) of the shipped model's PrivateTest evaluation (``evaluation_test`` in its metrics.json)."""
    value = _export()["evaluation_test"]
    for key in keys:
        value = value[key]
    return value


VALUES: dict[str, Callable[[], str]] = {
    "ferplus.accuracy": lambda: f"{100 * _shipped_test('ferplus', 'majority_accuracy'):.1f}%",
    "ferplus.faces": lambda: f"{_shipped_test('ferplus', 'faces'):,}",
    "ferplus.ece": lambda: f"{_shipped_test('ferplus', 'ece'):.3f}",
    "photos.e2e.accuracy": lambda: f"{100 * _shipped_test('photos', 'end_to_end', 'accuracy'):.0f}%",
    "photos.e2e.balanced": lambda: f"{100 * _shipped_test('photos', 'end_to_end', 'balanced_accuracy'):.0f}%",
    "photos.e2e.no_face": lambda: f"{100 * _shipped_test('photos', 'end_to_end', 'no_face'):.0f}%",
    "photos.whole.balanced": lambda: f"{100 * _shipped_test('photos', 'whole_image', 'balanced_accuracy'):.0f}%",
    "prev.accuracy": lambda: f"{100 * _previous()['evaluation_test']['accuracy']:.1f}%",
    "prev.macro_f1": lambda: f"{_previous()['evaluation_test']['macro_f1']:.3f}",
    "prev.ms_per_face": lambda: f"{next(v for v in report('previous_quantization')['variants'] if v['variant'] == 'int8 static')['ms_per_face_batch1']:.1f}",
    "prev.params": lambda: f"{_previous()['params'] / 1e6:.2f} M",
    "prev.train_minutes": lambda: f"{sum(run['train_minutes'] for run in _previous()['training']):.0f}",
    "calibration.temperature": lambda: f"{report('calibration')['temperature']:.2f}",
    "bench.cpus": lambda: str(report("bench")["machine"]["cpus"]),
    "bench.load": lambda: f"{report('bench')['machine']['load_average_at_start']:.1f}",
    "bench.1face.p50": _clip("1 face"), "bench.1face.p95": _clip("1 face", stat="p95"),
    "bench.4faces.p50": _clip("4 faces"), "bench.4faces.p95": _clip("4 faces", stat="p95"),
    "bench.1face.classify": _clip("1 face", "classify"),
    "bench.blazeface.1face.p95": _clip("1 face", stat="p95", name="bench_blazeface"),
    "bench.blazeface.haar.p95": _clip("1 face", stat="p95", name="bench_blazeface", loop="default_detector"),
    "bench.blazeface.4faces.p95": _clip("4 faces", stat="p95", name="bench_blazeface"),
    "bench.1face.speedup": lambda: f"{report('bench')['clips']['1 face']['speedup_p50']}",
    "bench.4faces.speedup": lambda: f"{report('bench')['clips']['4 faces']['speedup_p50']}",
    "bench.cold_start": lambda: f"{report('bench')['startup']['cold_start_s']:.1f}",
    "bench.rss": lambda: f"{report('bench')['startup']['peak_rss_mb']:.0f}",
    "int8.accuracy": lambda: f"{100 * _variant('int8 static')['accuracy']:.1f}%",
    "int8.macro_f1": lambda: f"{_variant('int8 static')['macro_f1']:.3f}",
    "int8.change": lambda: importlib.import_module("tools.quantize").signed_points(-_variant('int8 static')['accuracy_drop_points']),
    "int8.ms_per_face": lambda: f"{_variant('int8 static')['ms_per_face_batch1']:.1f}",
    "float32.accuracy": lambda: f"{100 * _variant('float32')['accuracy']:.1f}%",
    "float32.ms_per_face": lambda: f"{_variant('float32')['ms_per_face_batch1']:.1f}",
    "int8.speedup": lambda: f"{_variant('float32')['ms_per_face_batch1'] / _variant('int8 static')['ms_per_face_batch1']:.1f}",
    "export.int8_val": lambda: f"{100 * _export()['int8_val_accuracy']:.2f}%",
    "export.float32_val": lambda: f"{100 * _export()['float32_val_accuracy']:.2f}%",
    "ensemble.val_tta": lambda: f"{100 * _previous()['ensemble']['val_accuracy_flip_tta']:.1f}%",
    "ensemble.val_no_tta": lambda: f"{100 * _previous()['ensemble']['val_accuracy_no_tta']:.1f}%",
    "ensemble.member1_tta": lambda: f"{100 * _previous()['ensemble']['member_val_accuracy'][0]['flip_tta']:.1f}%",
    "ensemble.member2_tta": lambda: f"{100 * _previous()['ensemble']['member_val_accuracy'][1]['flip_tta']:.1f}%",
    "bias.val_accuracy_before": lambda: f"{100 * _previous()['class_bias']['val_accuracy'][0]:.1f}%",
    "bias.val_accuracy_after": lambda: f"{100 * _previous()['class_bias']['val_accuracy'][1]:.1f}%",
    "bias.val_f1_before": lambda: f"{_previous()['class_bias']['val_macro_f1'][0]:.3f}",
    "bias.val_f1_after": lambda: f"{_previous()['class_bias']['val_macro_f1'][1]:.3f}",
    "shipped.params": lambda: f"{_export()['params'] / 1e6:.2f} M",
    "shipped.member1_tta": lambda: f"{100 * _export()['ensemble']['member_val_accuracy'][1]['flip_tta']:.1f}%",  # run 1: listed second
    "shipped.member2_tta": lambda: f"{100 * _export()['ensemble']['member_val_accuracy'][0]['flip_tta']:.1f}%",
    "shipped.ensemble_tta": lambda: f"{100 * _export()['ensemble']['val_accuracy_flip_tta']:.1f}%",
    "shipped.ensemble_no_tta": lambda: f"{100 * _export()['ensemble']['val_accuracy_no_tta']:.1f}%",
    "prev.member1_val": lambda: f"{100 * _previous()['training'][0]['val_accuracy']:.1f}%",
    "prev.member2_val": lambda: f"{100 * _previous()['training'][1]['val_accuracy']:.1f}%",
    "shipped.train_minutes": lambda: f"{sum(run['train_minutes'] for run in _export()['training']):.0f}",
    "flicker.tau": lambda: f"{report('flicker')['default_tau']:g}",
    "flicker.sample.fewer": lambda: f"{_flicker_row('sample clip (24 fps)')['fewer_x']:.1f}",
    "flicker.sample.rate": lambda: f"{_flicker_row('sample clip (24 fps)')['changes_per_s']:.2f}",
    "flicker.sample.raw_rate": lambda: f"{_flicker_row('sample clip (24 fps)', 0.0)['changes_per_s']:.2f}",
    "flicker.moving.rate": lambda: f"{_flicker_row('4 faces drifting (15 fps)')['changes_per_s']:.2f}",
    "flicker.moving.raw_rate": lambda: f"{_flicker_row('4 faces drifting (15 fps)', 0.0)['changes_per_s']:.2f}",
    "flicker.lag.sample": lambda: _lag_median("sample_clip"),
    "flicker.lag.steps30": lambda: _lag_median("steps_30fps"),
    "soak.minutes": lambda: f"{_soak_minutes():g}",
    **{f"detectors.{d}.rotated30": _found(d, "rotated ±30°") for d in ("haar", "blazeface")},
    **{f"detectors.{d}.rotated45": _found(d, "rotated ±45°") for d in ("haar", "blazeface")},
    **{f"detectors.{d}.small50": _found(d, "small 50 px") for d in ("haar", "blazeface")},
    **{f"detectors.{d}.dark008": _found(d, "dark x0.08") for d in ("haar", "blazeface")},
    **{f"detectors.{d}.ms": (lambda d=d: f"{report('detectors')['speed'][d]['p50']:.1f}") for d in ("haar", "blazeface")},
    "soak.growth": lambda: f"{report('soak')['verdict']['rss_growth_percent']:+.2f}%",
}


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if not p.name.endswith(".table.md"))]


def render(text: str, where: str = "") -> str:
    """``text`` with every block and value regenerated; ``KeyError`` names an unknown marker."""
    def block(match: re.Match) -> str:
        if match["name"] not in BLOCKS:
            raise KeyError(f"{where}: unknown block marker {match['name']!r} (known: {', '.join(BLOCKS)})")
        return f"<!-- {match['name']}:begin{match['note']}-->\n{BLOCKS[match['name']]()}\n<!-- {match['name']}:end -->"

    def value(match: re.Match) -> str:
        if match["name"] not in VALUES:
            raise KeyError(f"{where}: unknown value marker {match['name']!r}")
        return f"<!-- n:{match['name']} -->{VALUES[match['name']]()}<!-- /n -->"

    return VALUE.sub(value, BLOCK.sub(block, text))


def stale(paths: list[Path] | None = None) -> list[str]:
    """Each marker whose text differs from what its JSON gives: ``"doc: name"``."""
    found = []
    for path in paths or documents():
        text = path.read_text(encoding="utf-8")
        for pattern in (BLOCK, VALUE):
            for match in pattern.finditer(text):
                if render(match[0], path.name) != match[0]:
                    found.append(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {match['name']}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 naming each stale number")
    args = parser.parse_args(argv)
    if args.check:
        found = stale()
        for spot in found:
            print(f"stale: {spot}", file=sys.stderr)
        return 1 if found else 0
    for path in documents():
        text = path.read_text(encoding="utf-8")
        new = render(text, path.name)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"updated {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
