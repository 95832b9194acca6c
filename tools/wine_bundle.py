"""The Linux half of tools/wine_bundle.sh: compare main.exe's JSON lines with the source run's,
record what was measured in docs/wine_bundle.json, and render that JSON as docs/BUNDLE.md's table.

    python tools/wine_bundle.py compare SOURCE.jsonl FROZEN.jsonl    # one line: MATCH ... or what differs; exit 1
    python tools/wine_bundle.py record JSON VARIANT KEY=VALUE ...     # merge one variant's numbers into JSON

The Windows log is written with CRLF line endings, so it is compared as JSON, never as text.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

PROB_TOLERANCE = 1e-3  # the same bar as tests/test_bundle.py's frozen-vs-source check


def read_lines(path: Path) -> list[dict]:
    """A --log file (CRLF or LF) as a list of frame dicts."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _faces_key(line: dict) -> list:
    return [(face["box"], face.get("id"), face["label"], list(face["probs"])) for face in line["faces"]]


def compare(source: list[dict], frozen: list[dict]) -> dict:
    """Frame by frame: frame, time, source name, boxes, ids, labels and class order identical,
    probabilities within PROB_TOLERANCE. Returns counts and the first differences found."""
    differences: list[str] = []
    if len(source) != len(frozen):
        differences.append(f"{len(frozen)} frames from main.exe, {len(source)} from the source")
    largest = 0.0
    same = 0
    for want, got in zip(source, frozen):
        head = ("frame", "time", "source")
        diff = [key for key in head if want[key] != got[key]]
        if _faces_key(want) != _faces_key(got):
            diff.append("faces")
        else:
            for want_face, got_face in zip(want["faces"], got["faces"]):
                gap = max((abs(want_face["probs"][k] - got_face["probs"][k]) for k in want_face["probs"]), default=0.0)
                largest = max(largest, gap)
                if gap > PROB_TOLERANCE:
                    diff.append(f"probs by {gap:.4f}")
        if diff:
            differences.append(f"frame {want['frame']}: {', '.join(diff)}")
        else:
            same += 1
    return {"frames": len(source), "frames_identical": same, "frames_with_faces": sum(1 for line in source if line["faces"]),
            "faces": sum(len(line["faces"]) for line in source), "max_prob_difference": round(largest, 6),
            "differences": differences[:5], "match": not differences and len(source) == len(frozen) > 0}


def verdict(result: dict, what: str) -> str:
    if result["match"]:
        return (f"MATCH {what}: {result['frames_identical']} of {result['frames']} frames identical "
                f"({result['faces']} faces; probabilities within {result['max_prob_difference']:g})")
    return f"DIFFERS {what}: " + "; ".join(result["differences"])


def _record(path: Path, variant: str, pairs: list[str]) -> None:
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data["machine"] = {"os": platform.platform(), "cpus": _cpus(), "wine": _wine_version()}
    row = data.setdefault("variants", {}).setdefault(variant, {})
    new = {key: json.loads(value) for key, _, value in (pair.partition("=") for pair in pairs)}
    if "dist_bytes" in new and "dist_bytes" in row and row.get("build_spec") != new.get("build_spec"):
        # a size cut is measured against the last build of another build.spec: keep that one's sizes
        row["before_spec_change"] = {key: row.get(key) for key in ("build_spec", "dist_bytes", "zip_bytes")}
    row.update(new)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def _wine_version() -> str:
    try:
        return subprocess.run(["wine", "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except OSError:
        return "unknown"


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size < 1e9 else f"{size / 1e9:.2f} GB"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def markdown(report: dict) -> str:
    """docs/BUNDLE.md's Windows table: one row per bundle built under Wine."""
    rows = ["| Windows bundle (built under Wine) | build time | `dist\\main` | zipped (`zip -1`) | `main.exe` "
            "| sample clip vs source | still image vs source | missing source |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    names = {"lean": "lean: `-- --without-tensorflow`", "default": "default: with TensorFlow"}
    for variant in ("lean", "default"):
        row = report.get("variants", {}).get(variant)
        if not row:
            continue
        clip, still = row["clip"], row["still"]
        rows.append(f"| {names[variant]} | {_minutes(row['build_s'])} | {_mb(row['dist_bytes'])} | {_mb(row['zip_bytes'])} "
                    f"| {_mb(row['exe_bytes'])} | {clip['frames_identical']} of {clip['frames']} frames identical, "
                    f"largest probability difference {clip['max_prob_difference']:g} ({_minutes(row['clip_run_s'])}) "
                    f"| {still['frames_identical']} of {still['frames']} identical | exit {row['missing_source_exit']}, "
                    f"{row['missing_source_lines']} line |")
    machine = report.get("machine", {})
    rows.append("")
    rows.append(f"{machine.get('wine', 'Wine')} on {machine.get('os', 'Linux')}, {machine.get('cpus', '?')} cores "
                "shared with other work (timings are noisy).")
    return "\n".join(rows)


def largest(report: dict, variant: str = "lean") -> str:
    """The biggest items of the bundle's ``_internal`` folder (what a size cut would have to touch)."""
    row = report["variants"][variant]
    items = row["largest_in_internal"]
    rows = [f"| `_internal\\{name}` | {_mb(size)} |" for name, size in sorted(items.items(), key=lambda item: -item[1])]
    lines = [f"| largest in the {variant} `main.exe`'s `_internal` | size |", "| --- | --- |", *rows, ""]
    lines.append(f"The {variant} `dist\\main`: {row['dist_bytes']:,} bytes (`du -sb`; build.spec sha256 {row.get('build_spec', '?')}).")
    before = row.get("before_spec_change")
    if before:
        lines[-1] += (f" Built from the build.spec before (sha256 {before['build_spec'] or 'not recorded'}): "
                      f"{before['dist_bytes']:,} bytes, {(row['dist_bytes'] - before['dist_bytes']) / 1e6:+,.1f} MB.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compare_cmd = commands.add_parser("compare", help="main.exe's --log against the source run's")
    compare_cmd.add_argument("source", type=Path)
    compare_cmd.add_argument("frozen", type=Path)
    compare_cmd.add_argument("--what", default="")
    compare_cmd.add_argument("--json", type=Path, help="write the comparison here too")
    record_cmd = commands.add_parser("record", help="merge KEY=JSON pairs into a variant of the report")
    record_cmd.add_argument("json", type=Path)
    record_cmd.add_argument("variant", choices=("lean", "default"))
    record_cmd.add_argument("pairs", nargs="+", metavar="KEY=JSON")
    args = parser.parse_args(argv)
    if args.command == "record":
        _record(args.json, args.variant, args.pairs)
        return 0
    try:
        result = compare(read_lines(args.source), read_lines(args.frozen))
    except (OSError, ValueError, KeyError) as error:
        print(f"DIFFERS {args.what}: cannot read the logs ({error})")
        return 1
    if args.json:
        args.json.write_text(json.dumps(result) + "\n", encoding="utf-8")
    print(verdict(result, args.what or args.frozen.name))
    return 0 if result["match"] else 1


if __name__ == "__main__":
    sys.exit(main())
