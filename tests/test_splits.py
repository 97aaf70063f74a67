"""Splits by sample: no sample is held out by one task and trained on by another.

Every source (digits, npz, folder, synthetic; CIFAR has its own test split and
splits only val= by sample) is loaded with overlapping tasks, some with other
val=/test= fractions than the rest, and the samples are compared by their
pixels (normalize=false, so a sample's values are the same in every task).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import partc
from partc.data import load_all, load_task_data
from partc.data.identity import index_identities
from partc.data.splits import TaskRequest, plan_splits
from partc.errors import SpecError
from tests.test_data import make_spec, task, write_cifar10

RAW = "normalize=false"


def rows(split) -> set[bytes]:
    return {row.numpy().tobytes() for row in split[0]}


def assert_no_leakage(data) -> None:
    """No sample of any task's val or test split is in any task's train split (the same task included)."""
    held = {name: rows(td.val) | rows(td.test) for name, td in data.items()}
    for trainee, td in data.items():
        train = rows(td.train)
        for holder, out in held.items():
            both = train & out
            assert not both, f"{len(both)} samples held out by task {holder} are training samples of task {trainee}"


def write_npz(path: Path, classes: int = 5, per_class: int = 40) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(classes * per_class) % classes
    x = rng.random((len(y), 1, 4, 4)).astype(np.float32)
    np.savez(path, x=x, y=y)
    return path


def write_folder(root: Path, classes=("a", "b", "c", "d"), per_class: int = 12) -> Path:
    rng = np.random.default_rng(1)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i:02d}.png")
    return root


SOURCES = {
    # source: (input shape, task data calls; the last one asks for other fractions)
    "digits": ("1, 8, 8", [f"digits(classes=[0, 1], {RAW})", f"digits(classes=[0, 1, 2, 3, 4], {RAW})",
                           f"digits(classes=[1, 5], {RAW}, test=0.3, val=0.25)"]),
    "npz": ("1, 4, 4", [f'npz("d.npz", classes=[0, 1], {RAW})', f'npz("d.npz", classes=[1, 2, 3], {RAW})',
                        f'npz("d.npz", classes=[0, 3, 4], {RAW}, test=0.1, val=0.3)']),
    "folder": ("3, 8, 8", [f'folder("imgs", classes=["a", "b"], {RAW})', f'folder("imgs", classes=["b", "c", "d"], {RAW})',
                           f'folder("imgs", classes=["a", "d"], {RAW}, test=0.4, val=0.2)']),
    "synthetic": ("1, 4, 4", [f"synthetic(classes=3, samples=120, seed=9, {RAW})",
                              f"synthetic(classes=3, samples=120, seed=9, {RAW})",
                              f"synthetic(classes=3, samples=120, seed=9, {RAW}, test=0.3, val=0.2)"]),
}


@pytest.fixture
def source_files(tmp_path):
    write_npz(tmp_path / "d.npz")
    write_folder(tmp_path / "imgs")
    return tmp_path


@pytest.mark.parametrize("source", list(SOURCES))
def test_no_test_or_val_sample_is_another_tasks_training_sample(source_files, source):
    shape, calls = SOURCES[source]
    net = make_spec(source_files, "\n".join(task(f"t{i}", call) for i, call in enumerate(calls)), shape)
    data = load_all(net)
    assert_no_leakage(data)
    for td in data.values():  # the splits still hold what was asked for
        assert all(len(split[1]) for split in (td.train, td.val, td.test))


def test_cifar_val_split_is_by_sample(tmp_path):
    write_cifar10(tmp_path / "c10")
    calls = [f'cifar10("c10", classes=[0, 1, 2], {RAW}, val=0.2)', f'cifar10("c10", classes=[1, 2, 3], {RAW}, val=0.2)',
             f'cifar10("c10", classes=[0, 3], {RAW}, val=0.4)']
    data = load_all(make_spec(tmp_path, "\n".join(task(f"t{i}", c) for i, c in enumerate(calls))))
    assert_no_leakage(data)


def test_overlapping_tasks_agree_on_each_class(tmp_path):
    """Tasks with the same fractions hold out the same samples of a class they share."""
    net = make_spec(tmp_path, "\n".join([task("pair", f"digits(classes=[0, 1], {RAW})"),
                                         task("five", f"digits(classes=[4, 0, 1, 2, 3], {RAW})")]), "1, 8, 8")
    data = load_all(net)
    for split in ("train", "val", "test"):
        pair, half = getattr(data["pair"], split), getattr(data["five"], split)
        for label in ("0", "1"):
            mine = pair[0][pair[1] == data["pair"].labels.index(label)]
            theirs = half[0][half[1] == data["five"].labels.index(label)]
            assert rows((mine, None)) == rows((theirs, None)), (split, label)


def test_split_depends_on_the_network_seed_and_the_sample_only(tmp_path):
    """Renaming a task, adding one or changing the train seed moves no sample; the network seed does."""
    def load(tasks: str, seed: int = 3, train: str = "") -> dict:
        text = (f"network t {{\n  input img: float[1, 8, 8]\n  seed {seed}\n  level l1 = 2 x conv(4, k=3, pad=1)\n"
                f"{tasks}\n{train}}}\n")
        return load_all(partc.loads(text, file=str(tmp_path / "s.part")))

    base = load(task("a", f"digits(classes=[2, 3], {RAW})"))["a"]
    renamed = load(task("zz", f"digits(classes=[2, 3], {RAW})"))["zz"]
    added = load("\n".join([task("b", f"digits(classes=[3, 7], {RAW})"), task("a", f"digits(classes=[2, 3], {RAW})")]))["a"]
    reseeded = load(task("a", f"digits(classes=[2, 3], {RAW})"), train="  train { seed 99 }\n")["a"]
    other = load(task("a", f"digits(classes=[2, 3], {RAW})"), seed=4)["a"]
    for split in ("train", "val", "test"):
        want = rows(getattr(base, split))
        for td in (renamed, added, reseeded):
            assert rows(getattr(td, split)) == want, split
    assert rows(other.test) != rows(base.test)


def test_limit_only_drops_training_samples(tmp_path):
    tasks = "\n".join([task("full", f"digits(classes=[0, 1], {RAW})"), task("ten", f"digits(classes=[0, 1], {RAW}, limit=10)"),
                       task("forty", f"digits(classes=[0, 1], {RAW}, limit=40)")])
    data = load_all(make_spec(tmp_path, tasks, "1, 8, 8"))
    full, ten, forty = data["full"], data["ten"], data["forty"]
    assert len(ten.train[1]) == 10 and np.bincount(ten.train[1].numpy()).tolist() == [5, 5]
    for td in (ten, forty):
        assert rows(td.test) == rows(full.test) and rows(td.val) == rows(full.val)
    assert rows(ten.train) < rows(forty.train) < rows(full.train)  # a smaller limit keeps a subset


def test_per_class_counts_are_exact(tmp_path):
    """Each class holds out round(test x n_c) for test and round(val x rest) for val, rounding halves up."""
    digits = load_task_data(make_spec(tmp_path, task("a", f"digits(classes=[0, 1, 2], {RAW}, test=0.25, val=0.1)"),
                                      "1, 8, 8"), "a")
    counts = np.bincount(np.concatenate([s[1].numpy() for s in (digits.train, digits.val, digits.test)]))
    test = np.floor(0.25 * counts + 0.5)
    val = np.floor(0.1 * (counts - test) + 0.5)
    assert np.bincount(digits.test[1].numpy()).tolist() == test.tolist()
    assert np.bincount(digits.val[1].numpy()).tolist() == val.tolist()


@settings(max_examples=40, deadline=None)
@given(tasks=st.lists(st.tuples(st.sets(st.integers(0, 5), min_size=1, max_size=6),
                                st.sampled_from([0.0, 0.1, 0.2, 0.35]), st.sampled_from([0.0, 0.1, 0.25]),
                                st.sampled_from([None, 3, 20])), min_size=1, max_size=4),
       seed=st.integers(0, 3), duplicates=st.integers(0, 20))
def test_held_out_samples_train_no_task(tasks, seed, duplicates):
    """The planner alone: whatever the classes, fractions, limits and repeated identities, held-out samples train nobody."""
    y = np.arange(150) % 6
    ids = index_identities("prop", len(y))
    ids[:duplicates] = ids[75:75 + duplicates]  # the same sample stored twice, possibly under another class

    def plan():
        return plan_splits([TaskRequest(y, ids, sorted(c), test, val, limit) for c, test, val, limit in tasks], seed)

    plans = plan()
    held = set()
    for p in plans:
        held |= set(ids[p.val].tolist()) | set(ids[p.test].tolist())
    for p, (classes, _test, _val, limit) in zip(plans, tasks, strict=True):
        assert not held & set(ids[p.train].tolist())
        used = np.concatenate([p.train, p.val, p.test])
        assert len(np.unique(used)) == len(used) and set(y[used].tolist()) <= classes
        if limit is not None:
            assert len(p.train) <= limit
    assert all(np.array_equal(a.test, b.test) and np.array_equal(a.train, b.train) for a, b in zip(plans, plan()))


def test_task_data_names_its_samples(tmp_path):
    """TaskData carries each split's sample identities; the run records their digest (run.json)."""
    data = load_all(make_spec(tmp_path, task("a", "digits(classes=[0, 1])"), "1, 8, 8"))
    td = data["a"]
    for split in ("train", "val", "test"):
        assert len(td.ids[split]) == len(getattr(td, split)[1])
    assert not set(td.ids["train"].tolist()) & set(td.ids["test"].tolist())
    assert isinstance(td.split_digest(), str) and len(td.split_digest()) == 16
    assert torch.is_tensor(td.train[0])


def test_label_noise_makes_a_share_of_training_labels_wrong(tmp_path):
    tasks = "\n".join([task("clean", f"digits(classes=[0, 1, 2], {RAW})"),
                       task("noisy", f"digits(classes=[0, 1, 2], {RAW}, label_noise=0.3)")])
    net = make_spec(tmp_path, tasks, "1, 8, 8")
    data = load_all(net)
    clean, noisy = data["clean"], data["noisy"]
    truth = {row.numpy().tobytes(): int(label) for row, label in zip(clean.train[0], clean.train[1], strict=True)}
    given = [int(label) for label in noisy.train[1]]
    true = np.array([truth[row.numpy().tobytes()] for row in noisy.train[0]])
    wrong = true != np.array(given)
    counts = np.bincount(true, minlength=3)
    assert np.bincount(true[wrong], minlength=3).tolist() == [int(np.floor(0.3 * n + 0.5)) for n in counts]
    for split in ("val", "test"):  # held-out labels stay true
        assert torch.equal(getattr(noisy, split)[1], getattr(clean, split)[1])
    assert torch.equal(load_all(net)["noisy"].train[1], noisy.train[1])  # the same labels every time
    with pytest.raises(SpecError) as info:
        make_spec(tmp_path, task("a", "digits(classes=2, label_noise=1.5)"), "1, 8, 8")
    assert "option label_noise= must be a fraction in [0, 1)" in info.value.message
