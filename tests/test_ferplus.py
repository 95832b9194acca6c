"""FER+ crowd labels on the real vote file: majority, vote distribution, relabelled splits,
training on them, and the measures built on them (FER+ agreement, ECE, the fitted temperature)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, require_shared, run_main
from detector.labels import FER2013_LABELS
from detector.training import ferplus
from detector.training.data import load_split


@pytest.fixture(scope="module")
def votes_dir(fer2013_dir) -> Path:
    if not ferplus.has_votes(fer2013_dir):
        require_shared(fer2013_dir / "missing", f"no FER+ votes in {fer2013_dir} ({ferplus.FERPLUS_FILE})")
    return fer2013_dir


def _csv_row(data: Path, name: str) -> dict[str, str]:
    with (data / ferplus.FERPLUS_FILE).open(newline="") as handle:
        return next(row for row in csv.DictReader(handle) if row["file"] == name)


def test_majority_and_distribution_of_a_real_face(votes_dir):
    name = "train/angry/Training_10118481.jpg"
    row = _csv_row(votes_dir, name)  # 2 neutral, 1 sadness, 7 anger
    votes = ferplus.split_votes(votes_dir, [str(votes_dir / name)])
    assert votes[0].tolist() == [float(row[c]) for c in ferplus.VOTE_COLUMNS]
    assert FER2013_LABELS[ferplus.majority(votes, FER2013_LABELS)[0]] == "angry"
    shares = dict(zip(FER2013_LABELS, ferplus.vote_distribution(votes, FER2013_LABELS)[0].tolist()))
    assert shares["angry"] == pytest.approx(7 / 9) and shares["neutral"] == pytest.approx(2 / 9)
    assert shares["sad"] == 0.0, "a single vote is an outlier (FER+ paper) and is dropped"
    raw = dict(zip(FER2013_LABELS, ferplus.vote_distribution_raw(votes, FER2013_LABELS)[0].tolist()))
    assert raw["sad"] == pytest.approx(0.1), "the judge keeps every vote"


def test_privatetest_majority_keeps_the_seven_class_faces(votes_dir):
    test = load_split(votes_dir, "test")
    votes = ferplus.split_votes(votes_dir, test.paths)
    winner = ferplus.majority(votes, FER2013_LABELS)
    assert len(test) == 3589 and int((votes.sum(axis=1) > 0).sum()) == 3573  # FER+ dropped 16 PrivateTest images
    assert int((winner >= 0).sum()) == 3517  # contempt / unknown / not-a-face majorities left out
    agree = (winner == test.labels)[winner >= 0].mean()
    assert 0.55 < agree < 0.70, f"FER2013's one annotator agrees with the ten for about 62% of faces, got {agree:.3f}"


def test_relabel_keeps_only_faces_with_a_majority_and_mixes_as_said(votes_dir):
    train = load_split(votes_dir, "train")
    crowd = ferplus.relabel(train, votes_dir, "ferplus")
    assert len(crowd) == 28223 and len(crowd.paths) == len(crowd)
    assert np.allclose(crowd.soft_targets.sum(axis=1), 1.0)
    leaders = crowd.soft_targets == crowd.soft_targets.max(axis=1, keepdims=True)
    assert leaders[np.arange(len(crowd)), crowd.labels].all(), "the majority is always among the most-voted classes (ties exist)"
    mixed = ferplus.relabel(train, votes_dir, "mix", fer2013_weight=0.3)
    original = dict(zip(train.paths, train.labels))
    one_hot = np.eye(7, dtype=np.float32)[[original[p] for p in mixed.paths]]
    assert np.allclose(mixed.soft_targets, 0.7 * crowd.soft_targets + 0.3 * one_hot, atol=1e-6)
    assert ferplus.relabel(train, votes_dir, "fer2013") is train


def test_contempt_folded_into_disgust_adds_the_contempt_faces_as_disgust(votes_dir):
    train = load_split(votes_dir, "train")
    dropped = ferplus.relabel(train, votes_dir, "ferplus")
    folded = ferplus.relabel(train, votes_dir, "ferplus", contempt="fold")
    disgust = FER2013_LABELS.index("disgust")
    votes = ferplus.split_votes(votes_dir, train.paths)
    row = dict(zip(train.paths, votes))
    contempt = ferplus.VOTE_COLUMNS.index("contempt")
    contempt_majority = int((votes.argmax(axis=1) == contempt).sum())
    added = set(folded.paths) - set(dropped.paths)  # faces that had no seven-class majority before
    assert set(dropped.paths) <= set(folded.paths) and len(added) >= contempt_majority
    assert all(row[p][contempt] > 0 for p in added)
    assert all(label == disgust for p, label in zip(folded.paths, folded.labels) if p in added)
    assert (folded.labels == disgust).sum() > 2 * (dropped.labels == disgust).sum()
    # a face with contempt votes: its disgust share grows; one without: its targets do not move
    by_path = dict(zip(folded.paths, folded.soft_targets))
    kept = range(len(dropped))
    with_contempt = [i for i in kept if row[dropped.paths[i]][contempt] >= 2]
    without = [i for i in kept if row[dropped.paths[i]][contempt] == 0]
    assert len(with_contempt) > 100 and len(without) > 2000
    assert all(by_path[dropped.paths[i]][disgust] > dropped.soft_targets[i][disgust]
               for i in with_contempt if dropped.soft_targets[i][disgust] < 1)  # all votes disgust already: stays 1
    assert all(np.allclose(by_path[dropped.paths[i]], dropped.soft_targets[i]) for i in without[:2000])
    with pytest.raises(ferplus.UserError, match="contempt"):
        ferplus.relabel(train, votes_dir, "ferplus", contempt="spread")


def test_train_on_votes_records_it_and_needs_the_vote_file(votes_dir, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(votes_dir), "--out", str(out), "--epochs", "1", "--limit", "256", "--batch-size", "64",
            "--warmup-epochs", "0", "--no-export", "--labels-from", "ferplus", "--label-smoothing", "0", "--camera-augment", "0.5"]
    done = run_main(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "train_info.json").read_text())["data"]["labels_from"] == "ferplus"
    bare = tmp_path / "fer2013_without_votes"
    bare.mkdir()
    for split in ("train", "val"):
        os.symlink(votes_dir / split, bare / split)
    refused = run_main(*[str(bare) if a == str(votes_dir) else a for a in args])
    assert refused.returncode == 2 and "ferplus.csv" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    teacher = tmp_path / "teacher.npz"
    teacher.write_bytes(b"")  # refused before it is read
    for extra, said in ([("--labels-from", "fer2013", "--contempt", "fold"), "add --labels-from ferplus"],
                        [("--contempt", "fold", "--teacher", str(teacher)), "--teacher replaces the FER+ votes"]):
        conflict = run_main(*args, *extra)
        assert conflict.returncode == 2 and said in conflict.stderr, conflict.stderr
        assert len(conflict.stderr.strip().splitlines()) == 1, conflict.stderr


@pytest.mark.parametrize("scores, truth, expected", [
    ([0.9] * 10, [1] * 9 + [0], 0.0),  # 90% sure, right 9 times in 10
    ([1.0, 1.0], [0, 0], 1.0),  # sure and always wrong
    ([0.2, 0.8], [0.2, 0.8], 0.0),  # each bin's score equals its truth
    ([0.55, 0.65], [0.0, 1.0], 0.45),  # two bins, each off by 0.55 / 0.35
])
def test_expected_calibration_error(scores, truth, expected):
    assert ferplus.expected_calibration_error(np.asarray(scores), np.asarray(truth)) == pytest.approx(expected, abs=1e-9)


def test_temperature_fit_recovers_the_temperature_that_made_the_scores():
    from detector.calibration import apply_temperature
    from detector.training.temperature import fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (4000, 7))
    target = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    overconfident = apply_temperature(target.astype(np.float32), 1 / 2.5)  # as sharp as logits * 2.5
    assert fit_temperature(overconfident, target) == pytest.approx(2.5, rel=0.05)


def test_temperature_written_to_a_model_folder_calibrates_what_the_app_shows(votes_dir, shipped_model, tmp_path):
    from detector.classifier import EmotionClassifier
    from detector.config import ModelConfig
    from detector.training.temperature import calibrate

    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.int8.onnx", "labels.txt", "model.json"):
        shutil.copy(shipped_model / name, folder / name)
    info = json.loads((folder / "model.json").read_text())
    info.pop("calibration", None)
    (folder / "model.json").write_text(json.dumps(info))
    report = calibrate(str(folder), str(votes_dir))
    assert report["val"]["ece"][1] < report["val"]["ece"][0], report["val"]
    assert abs(report["val"]["cross_entropy"][1] - report["val"]["cross_entropy"][0]) < 0.05  # fitted on ECE, CE about as was
    recorded = json.loads((folder / "model.json").read_text())["calibration"]
    assert recorded["temperature"] == report["temperature"] != 1.0
    classifier = EmotionClassifier(ModelConfig(str(folder)))
    faces = list(load_split(votes_dir, "val").subset(64).images)
    shown, raw = classifier.predict_crops(faces), classifier.predict_crops(faces, calibrated=False)
    assert (shown.argmax(axis=1) == raw.argmax(axis=1)).all(), "a temperature never changes a label"
    assert not np.allclose(shown, raw) and np.allclose(shown.sum(axis=1), 1.0, atol=1e-5)
    (folder / "model.json").write_text(json.dumps({**info, "calibration": {"method": "temperature", "temperature": -1}}))
    bad = run_main("--model", str(folder), "--source", str(REPO_ROOT / "samples" / "sample_face.mp4"), "--no-display", "--max-frames", "1")
    assert bad.returncode == 2 and "temperature" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_evaluate_reports_ferplus_and_labelled_photos(votes_dir, shipped_model, tmp_path):
    wild = require_shared(REPO_ROOT.parent / "shared" / "wild-dev", "no wild-dev photos in ../shared")
    photos = tmp_path / "photos"
    for name in ("happy", "surprise", "sad"):
        (photos / name).mkdir(parents=True)
        for image in sorted((wild / name).iterdir())[:3]:
            shutil.copy(image, photos / name / image.name)
    out = tmp_path / "eval.json"
    done = run_main("evaluate", "--model", str(shipped_model), "--data", str(votes_dir), "--split", "val", "--limit", "300",
                    "--photos", str(photos), "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    crowd = results["ferplus"]
    assert 250 < crowd["faces"] <= 300 and 0.4 < crowd["majority_accuracy"] <= 1 and 0 < crowd["cross_entropy"] < 3
    assert "FER+ majority" in done.stdout and "photos end to end (9)" in done.stdout
    for mode in ("end_to_end", "whole_image"):
        row = results["photos"][mode]
        assert row["photos"] == 9 and sorted(row["recall"]) == ["happy", "sad", "surprise"]
        assert row["balanced_accuracy"] == pytest.approx(np.mean(list(row["recall"].values())))
        for name, answers in row["confusion"].items():  # each photo answered once: a class, another class or no face
            assert sum(answers.values()) == 3 and answers[name] / 3 == pytest.approx(row["recall"][name])
    assert results["photos"]["whole_image"]["no_face"] == 0.0
    assert all(answers["no face"] == 0 for answers in results["photos"]["whole_image"]["confusion"].values())
    assert set(next(iter(results["photos"]["end_to_end"]["confusion"].values()))) == {"happy", "sad", "surprise", "another class", "no face"}
    (photos / "smug").mkdir()
    refused = run_main("evaluate", "--model", str(shipped_model), "--data", str(votes_dir), "--split", "val", "--limit", "64",
                       "--photos", str(photos))
    assert refused.returncode == 2 and "smug" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
