"""Distillation on real FER2013 faces: the shipped model as teacher, a student trained on its soft targets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_main
from detector.training.data import load_split
from detector.training.distill import write_soft_targets

PER_CLASS = 24


@pytest.fixture(scope="module")
def small_fer(fer2013_dir, tmp_path_factory) -> Path:
    """A FER2013-layout folder of real faces: the first PER_CLASS of each class in train and val."""
    root = tmp_path_factory.mktemp("fer_small")
    for split in ("train", "val"):
        for class_dir in sorted((fer2013_dir / split).iterdir()):
            (root / split / class_dir.name).mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:PER_CLASS]:
                shutil.copy(image, root / split / class_dir.name / image.name)
    return root


def test_soft_targets_are_the_teachers_probabilities_on_each_face(small_fer, fer2013_dir, shipped_model, tmp_path):
    from detector.training.data import load_split
    from detector.training.distill import write_soft_targets
    from detector.training.ferplus import majority, split_votes

    out = write_soft_targets([str(shipped_model)], str(small_fer), tmp_path / "teacher.npz")
    split = load_split(small_fer, "train")
    with np.load(out) as cached:
        targets, paths = cached["targets"], tuple(cached["paths"])
    assert paths == split.paths and targets.shape == (len(split), 7)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-3)
    # each row agrees with what ten people (FER+ majority) say of that face far above chance
    # (1/7), whichever labels the shipped model learned; a shuffled or mis-ordered row would
    # drop this to chance
    same_faces = [fer2013_dir / Path(path).resolve().relative_to(small_fer.resolve()) for path in split.paths]
    people = majority(split_votes(fer2013_dir, same_faces), split.classes)
    voted = people >= 0
    assert voted.mean() > 0.9 and (targets.argmax(axis=1)[voted] == people[voted]).mean() > 0.5


def test_student_trains_on_soft_targets_and_refuses_targets_of_other_faces(small_fer, shipped_model, tmp_path):
    from detector.training.distill import write_soft_targets

    teacher = write_soft_targets([str(shipped_model)], str(small_fer), tmp_path / "teacher.npz")
    args = ["train", "--data", str(small_fer), "--epochs", "1", "--batch-size", "32", "--warmup-epochs", "0", "--no-export"]
    student = run_main(*args, "--out", str(tmp_path / "student"), "--teacher", str(teacher))
    assert student.returncode == 0, student.stderr[-2000:]
    assert (tmp_path / "student" / "best.keras").is_file()

    changed = shutil.copytree(small_fer, tmp_path / "changed")
    face = next((changed / "train" / "happy").iterdir())
    shutil.copy(face, face.with_name("new_" + face.name))  # a face the teacher never saw
    stale = run_main(*args[:2], str(changed), *args[3:], "--out", str(tmp_path / "stale"), "--teacher", str(teacher))
    assert stale.returncode == 2 and "other train faces" in stale.stderr.strip().splitlines()[-1], stale.stderr[-2000:]


def test_soft_targets_follow_each_face_into_a_subset(small_fer, shipped_model, tmp_path):
    """``--labels-from ferplus`` trains on the faces with a FER+ majority: a subset of the
    faces the teacher saw, each of which must get its own row."""
    from dataclasses import replace

    from detector.training.data import load_split
    from detector.training.distill import load_soft_targets, write_soft_targets

    out = write_soft_targets([str(shipped_model)], str(small_fer), tmp_path / "teacher.npz")
    split = load_split(small_fer, "train")
    with np.load(out) as cached:
        targets = cached["targets"]
    picked = np.arange(len(split))[::-3]  # every third face, last first
    subset = replace(split, images=split.images[picked], labels=split.labels[picked], paths=tuple(split.paths[i] for i in picked))
    np.testing.assert_array_equal(load_soft_targets(out, subset), targets[picked])


def test_student_of_a_teacher_trains_on_the_faces_with_a_ferplus_majority(small_fer, fer2013_dir, shipped_model, tmp_path):
    """``--teacher`` with ``--labels-from ferplus``: the teacher's targets on the faces ten people
    gave a seven-class majority, checkpoints chosen on the FER+ val majority."""
    import csv

    from detector.training import ferplus

    if not ferplus.has_votes(fer2013_dir):
        pytest.skip(f"no FER+ votes in {fer2013_dir}")
    data = shutil.copytree(small_fer, tmp_path / "voted")
    kept = {str(path.relative_to(data)) for path in data.glob("*/*/*.jpg")}
    with (fer2013_dir / ferplus.FERPLUS_FILE).open(newline="") as source, (data / ferplus.FERPLUS_FILE).open("w", newline="") as out:
        rows = csv.reader(source)
        writer = csv.writer(out)
        writer.writerow(next(rows))
        writer.writerows(row for row in rows if row[0] in kept)
    teacher = write_soft_targets([str(shipped_model)], str(data), tmp_path / "teacher.npz")
    train = load_split(data, "train")
    voted = ferplus.relabel(train, data, "ferplus")
    assert 0 < len(voted) < len(train)  # some faces have no seven-class majority (contempt, unknown, not a face)
    done = run_main("train", "--data", str(data), "--out", str(tmp_path / "student"), "--labels-from", "ferplus", "--teacher",
                    str(teacher), "--distill-weight", "1", "--epochs", "1", "--batch-size", "32", "--warmup-epochs", "0", "--no-export")
    assert done.returncode == 0, done.stderr[-2000:]
    recorded = json.loads((tmp_path / "student" / "train_info.json").read_text())["data"]
    assert recorded["labels_from"] == "ferplus" and recorded["train_images"] == len(voted)
