"""Data stage: every source through load_task_data, splits, normalisation, errors, augmentation.

Real libraries throughout: scikit-learn's bundled digits, CIFAR folders
written here in the official python-version pickle format, npz files,
PNGs drawn with Pillow.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import partc
from partc.data import augment_batch, load_all, load_task_data
from partc.data import sources as data_sources
from partc.data import splits as data_splits
from partc.data.catalog import CIFAR10_LABELS, CIFAR100_LABELS
from partc.errors import DataError, SpecError

SPECS = Path(__file__).resolve().parent.parent / "specs"


def make_spec(tmp_path: Path, tasks: str, shape: str = "3, 32, 32", name: str = "spec.part") -> partc.Network:
    """A one-level network around the given task lines, written to tmp_path so errors have a file."""
    layer = "conv(4, k=3, pad=1)" if "," in shape else "linear(4)"
    text = f"network t {{\n  input img: float[{shape}]\n  seed 3\n  level l1 = 2 x {layer}\n{tasks}\n}}\n"
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return partc.loads(text, file=str(path))


def task(name: str, data: str) -> str:
    return f"  task {name} {{ data {data} path random(1) }}"


def digits_by_pixels() -> dict[bytes, int]:
    d = load_digits()
    return {(img / 16.0).astype(np.float32).tobytes(): int(t) for img, t in zip(d.images, d.target, strict=True)}


# ---- digits ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def split_digits():
    net = partc.load(SPECS / "split_digits.part")
    return net, load_all(net)


def test_digits_sizes_labels_and_dtypes(split_digits):
    net, data = split_digits
    counts = np.bincount(load_digits().target)
    assert list(data) == list(net.tasks)
    for name, td in data.items():
        assert td.labels == net.tasks[name].labels and td.classes == 2
        wanted = [int(v) for v in td.labels]
        total = sum(len(s[1]) for s in (td.train, td.val, td.test))
        assert total == counts[wanted].sum()
        # Per class round(0.2 x n_c), halves up (partc.data.splits): the total is within a sample per class.
        assert np.bincount(td.test[1].numpy()).tolist() == [int(np.floor(0.2 * counts[c] + 0.5)) for c in wanted]
        assert abs(len(td.test[1]) - 0.2 * total) <= 1
        for x, y in (td.train, td.val, td.test):
            assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8)
            assert y.dtype == torch.int64 and set(y.tolist()) == {0, 1}


def test_digits_deterministic_and_splits_disjoint(split_digits):
    net, data = split_digits
    again = load_task_data(net, "d23")
    for a, b in zip((data["d23"].train, data["d23"].val, data["d23"].test), (again.train, again.val, again.test),
                    strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    rows = [{r.numpy().tobytes() for r in s[0]} for s in (again.train, again.val, again.test)]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    assert sum(map(len, rows)) == sum(len(s[0]) for s in (again.train, again.val, again.test))  # no duplicates


def test_digits_splits_are_stratified(split_digits):
    _, data = split_digits
    for td in data.values():
        per_class = [np.bincount(s[1].numpy(), minlength=2) for s in (td.train, td.val, td.test)]
        totals = sum(per_class)
        for counts, fraction in ((per_class[2], 0.2), (per_class[1], 0.1 * 0.8)):
            assert np.all(np.abs(counts - fraction * totals) <= 1.5), (counts, totals)


def test_digits_normalised_on_train(split_digits):
    _, data = split_digits
    for td in data.values():
        x = td.train[0].double()
        assert abs(x.mean().item()) < 1e-5 and abs(x.std(correction=0).item() - 1) < 1e-5
        assert len(td.mean) == len(td.std) == 1 and 0.2 < td.mean[0] < 0.4
        assert abs(td.val[0].double().mean().item()) < 0.3  # same transform, not re-centred


@pytest.mark.parametrize("classes", [[3, 1], [1, 0]])
def test_label_mapping_uses_a_lookup_table(tmp_path, classes):
    # [1, 0] is the case where the reference's in-place remap merges both classes into label 1.
    net = make_spec(tmp_path, task("a", f"digits(classes={classes}, normalize=false)"), "1, 8, 8")
    td = load_task_data(net, "a")
    truth = digits_by_pixels()
    for x, y in (td.train, td.val, td.test):
        originals = [truth[img.numpy().tobytes()] for img in x]
        assert all(classes[label] == orig for label, orig in zip(y.tolist(), originals, strict=True))
        assert set(y.tolist()) == {0, 1}
    assert td.labels == [str(c) for c in classes] and td.mean == [0.0] and td.std == [1.0]


def test_select_maps_by_table():
    pos, y = data_splits.select_classes(np.array([1, 3, 3, 1, 0, 7]), [3, 1])
    assert pos.tolist() == [0, 1, 2, 3] and y.tolist() == [1, 0, 0, 1]


def test_limit_keeps_class_balance_and_flat_inputs(tmp_path):
    net = make_spec(tmp_path, task("a", "digits(classes=[0, 1], limit=50)"), "64")
    td = load_task_data(net, "a")
    assert td.train[0].shape == (50, 64) and np.bincount(td.train[1].numpy()).tolist() == [25, 25]
    assert len(td.mean) == 64  # flat input: per-feature statistics


# ---- CIFAR ----------------------------------------------------------------------------------------

def _dump(path: Path, obj: object, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def py2_pickle(obj: object) -> bytes:
    """The bytes Python 2's cPickle (protocol 2) writes for the official files: str keys, numpy.core arrays."""
    out = bytearray(b"\x80\x02")

    def string(raw: bytes) -> None:  # a Python 2 str
        out.extend(b"U" + bytes([len(raw)]) + raw if len(raw) < 256 else b"T" + struct.pack("<i", len(raw)) + raw)

    def integer(v: int) -> None:
        out.extend(b"J" + struct.pack("<i", v))

    def emit(o: object) -> None:
        if isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                emit(v)
            out.extend(b"e")
        elif isinstance(o, str):
            string(o.encode("latin1"))
        elif isinstance(o, int):
            integer(o)
        else:  # a uint8 ndarray: _reconstruct(ndarray, (0,), 'b'), then its state
            assert isinstance(o, np.ndarray) and o.dtype == np.uint8
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            integer(0)
            out.extend(b"\x85")
            string(b"b")
            out.extend(b"\x87R(")
            integer(1)
            out.extend(b"(")
            for d in o.shape:
                integer(d)
            out.extend(b"tcnumpy\ndtype\n")
            string(b"u1")
            integer(0)
            integer(1)
            out.extend(b"\x87R(")
            integer(3)
            string(b"|")
            out.extend(b"NNN")
            for v in (-1, -1, 0):
                integer(v)
            out.extend(b"tb\x89")
            string(o.tobytes())
            out.extend(b"tb")

    emit(obj)
    return bytes(out + b".")


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random images whose first red pixel is the label and green (1, 2) is 200: layout checks."""
    data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    data[:, 0] = labels
    data[:, 1024 + 32 * 1 + 2] = 200
    return data


def write_cifar10(root: Path, per_batch: int = 40, n_test: int = 60) -> Path:
    """Data batches as the official files are (Python 2 pickles); test batch and meta as Python 3 writes them."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(1, 6):
        labels = (np.arange(per_batch) + i) % 10
        (root / f"data_batch_{i}").write_bytes(py2_pickle({
            "batch_label": f"training batch {i} of 5", "labels": labels.tolist(),
            "data": _images(labels, rng), "filenames": ["a.png"] * per_batch}))
    labels = np.arange(n_test) % 10
    _dump(root / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": labels.tolist(),
                                b"data": _images(labels, rng), b"filenames": [b"a.png"] * n_test}, protocol=4)
    _dump(root / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_LABELS],
                                  b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return root


def write_cifar100(root: Path, n_train: int = 500, n_test: int = 200) -> Path:
    """train and meta as the official files are (Python 2 pickles); test as Python 3 writes it (bytes keys)."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    fine = np.arange(n_train) % 100
    (root / "train").write_bytes(py2_pickle({
        "filenames": ["a.png"] * n_train, "batch_label": "training batch 1 of 1", "fine_labels": fine.tolist(),
        "coarse_labels": (fine // 5).tolist(), "data": _images(fine, rng)}))
    fine = np.arange(n_test) % 100  # as Python 3 would write it: bytes keys
    _dump(root / "test", {b"filenames": [b"a.png"] * n_test, b"batch_label": b"testing batch 1 of 1",
                          b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist(), b"data": _images(fine, rng)})
    (root / "meta").write_bytes(py2_pickle({"fine_label_names": list(CIFAR100_LABELS),
                                            "coarse_label_names": [f"super{i}" for i in range(20)]}))
    return root


def test_cifar10_from_official_layout(tmp_path):
    write_cifar10(tmp_path / "data" / "cifar-10-batches-py")
    net = make_spec(tmp_path, task("a", 'cifar10("data/cifar-10-batches-py", classes=[9, 2], normalize=false)'))
    td = load_task_data(net, "a")
    assert td.labels == ["truck", "bird"]
    assert len(td.test[1]) == 12 and len(td.train[1]) + len(td.val[1]) == 40  # official test split; 2 of 10 classes
    for x, y in (td.train, td.val, td.test):
        originals = torch.round(x[:, 0, 0, 0] * 255).long()
        assert torch.equal(originals, torch.tensor([9, 2])[y])
        assert torch.allclose(x[:, 1, 1, 2], torch.tensor(200 / 255))


def test_cifar100_names_subset_and_nested_root(tmp_path):
    write_cifar100(tmp_path / "data" / "cifar-100-python")
    tasks = "\n".join([
        task("a", 'cifar100("data/cifar-100-python", classes=[5, 17, 42])'),
        task("b", 'cifar100("data", classes=["bed", "apple"], augment=true)'),  # the folder above also works
    ])
    net = make_spec(tmp_path, tasks)
    data = load_all(net, data_root=tmp_path)  # not a data/ folder in the current directory
    a, b = data["a"], data["b"]
    assert a.labels == ["bed", "castle", "leopard"] and b.labels == ["bed", "apple"]
    assert [len(s[1]) for s in (a.train, a.val, a.test)] == [12, 3, 6]  # val: round(0.1 x 5) = 1 of each class
    assert np.bincount(a.test[1].numpy()).tolist() == [2, 2, 2]
    assert b.augment and not a.augment and len(a.mean) == 3
    raw = torch.round((b.train[0][:, 0, 0, 0] * b.std[0] + b.mean[0]) * 255).long()
    assert torch.equal(raw, torch.tensor([5, 0])[b.train[1]])


def test_load_all_reads_each_source_once(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "c10")
    calls = []
    real = data_sources.read_cifar
    monkeypatch.setattr(data_sources, "read_cifar", lambda *a: calls.append(a) or real(*a))
    tasks = "\n".join(task(f"t{i}", f'cifar10("c10", classes=[{i}, {i + 1}])') for i in range(4))
    data = load_all(make_spec(tmp_path, tasks))
    assert len(data) == 4 and len(calls) == 1


def _expect_data_error(net, name: str = "a", **kw) -> DataError:
    with pytest.raises(DataError) as info:
        load_task_data(net, name, **kw)
    err = info.value
    assert err.loc is not None and err.render().startswith(f"{net.file}:{err.loc.line}:{err.loc.column}: error: ")
    assert err.loc.line == 5  # the task's data call
    return err


def test_cifar_missing_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = make_spec(tmp_path, task("a", 'cifar100("nowhere/cifar-100-python")'), name="specs/s.part")
    err = _expect_data_error(net)
    assert "not found" in err.message
    assert str(tmp_path / "nowhere" / "cifar-100-python") in err.message  # current directory tried
    assert str(tmp_path / "specs" / "nowhere" / "cifar-100-python") in err.message  # and the spec's folder
    assert "cifar-100-python.tar.gz" in err.hint and "nowhere/cifar-100-python/train exists" in err.hint
    assert "never downloads" in err.hint


def test_cifar_missing_file(tmp_path):
    root = write_cifar10(tmp_path / "c10")
    (root / "data_batch_3").unlink()
    (root / "batches.meta").unlink()
    err = _expect_data_error(make_spec(tmp_path, task("a", 'cifar10("c10", classes=2)')))
    assert "is missing data_batch_3, batches.meta" in err.message
    assert "expected data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta" \
        in err.message
    assert "CIFAR-10 python version" in err.hint


@pytest.mark.parametrize("damage", ["truncate", "garbage", "code", "list"])
def test_cifar_corrupt_pickle(tmp_path, damage):
    root = write_cifar100(tmp_path / "c100")
    train = root / "train"
    if damage == "truncate":
        train.write_bytes(train.read_bytes()[: 5000])
    elif damage == "garbage":
        train.write_bytes(b"\x00not a pickle at all")
    elif damage == "code":
        train.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # a pickle that would run a shell command
    else:
        _dump(train, [1, 2, 3])
    err = _expect_data_error(make_spec(tmp_path, task("a", 'cifar100("c100", classes=3)')))
    assert str(train) in err.message
    expected = {"truncate": "corrupt or truncated", "garbage": "corrupt or truncated",
                "code": "os.system, which a data file never needs", "list": "not a CIFAR-100 python-version file"}
    assert expected[damage] in err.message


def test_cifar_refuses_test_fraction_and_wrong_input_shape(tmp_path):
    """Both are facts of the spec, so `partc check` refuses them (the catalog knows CIFAR's split and shape)."""
    write_cifar10(tmp_path / "c10")
    with pytest.raises(SpecError, match="own test split"):
        make_spec(tmp_path, task("a", 'cifar10("c10", classes=2, test=0.3)'))
    with pytest.raises(SpecError, match=r"cifar10 samples have shape \[3, 32, 32\], but the task's input has shape "
                                        r"\[1, 8, 8\]"):
        make_spec(tmp_path, task("a", 'cifar10("c10", classes=2)'), shape="1, 8, 8")
    net = make_spec(tmp_path, task("a", 'cifar10("c10", classes=2)'))
    net.inputs["img"].shape = (1, 8, 8)  # a network built without the checker: the loader refuses it too
    err = _expect_data_error(net)
    assert "samples have shape [3, 32, 32]" in err.message


# ---- npz ------------------------------------------------------------------------------------------

def test_npz_with_test_split_and_names(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = rng.random((90, 1, 4, 4)).astype(np.float32)
    x[:, 0, 0, 0] = y
    x_test = rng.random((30, 1, 4, 4)).astype(np.float32)
    x_test[:, 0, 0, 0] = y[:30]
    names = np.array(["cat", "dog", "eel"])
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x_test, y_test=y[:30], labels=names)
    tasks = "\n".join([task("a", 'npz("d.npz", classes=[2, 0], normalize=false, val=0.2)'),
                       task("b", 'npz("d.npz", classes=["eel", "dog"])')])
    data = load_all(make_spec(tmp_path, tasks, shape="1, 4, 4"))
    a = data["a"]
    assert a.labels == ["eel", "cat"] and data["b"].labels == ["eel", "dog"]
    assert [len(s[1]) for s in (a.train, a.val, a.test)] == [48, 12, 20]
    for xs, ys in (a.train, a.val, a.test):
        assert torch.equal(xs[:, 0, 0, 0].long(), torch.tensor([2, 0])[ys])
    # A file whose x_test repeats rows of x: those rows are test samples, and train no task.
    np.savez(tmp_path / "e.npz", x=x, y=y, x_test=x[:30], y_test=y[:30], labels=names)
    leaky = load_task_data(make_spec(tmp_path, task("a", 'npz("e.npz", classes=[2, 0], normalize=false)'), "1, 4, 4",
                                     name="e.part"), "a")
    test_rows = {r.numpy().tobytes() for r in leaky.test[0]}
    assert len(test_rows) == 20 and not test_rows & {r.numpy().tobytes() for r in leaky.train[0]}


def test_npz_shape_mismatch_and_missing_array(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 1, 4, 4), np.float32), y=np.arange(10) % 2)
    err = _expect_data_error(make_spec(tmp_path, task("a", 'npz("d.npz", classes=2)'), shape="1, 8, 8"))
    assert "npz samples have shape [1, 4, 4], but task 'a' reads input 'img' of shape [1, 8, 8]" in err.message
    assert "float[1, 4, 4]" in err.hint
    np.savez(tmp_path / "e.npz", x=np.zeros((10, 1, 4, 4), np.float32))
    err = _expect_data_error(make_spec(tmp_path, task("a", 'npz("e.npz", classes=2)'), shape="1, 4, 4"))
    assert "has no array 'y' (it has x)" in err.message and "numpy.savez" in err.hint


# ---- folder ---------------------------------------------------------------------------------------

def write_image_folder(root: Path, classes=("cat", "dog", "eel"), per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((12, 10, 3), 40 * k, dtype=np.uint8) + rng.integers(0, 20, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
    return root


def test_folder_source_resizes_and_selects(tmp_path):
    write_image_folder(tmp_path / "imgs")
    tasks = "\n".join([task("a", 'folder("imgs", classes=["eel", "cat"], normalize=false, test=0.3)'),
                       task("b", 'folder("imgs", classes=2)')])
    net = make_spec(tmp_path, tasks, shape="3, 8, 8")
    a = load_task_data(net, "a")
    assert a.labels == ["eel", "cat"] and a.train[0].shape[1:] == (3, 8, 8)
    assert [len(s[1]) for s in (a.train, a.val, a.test)] == [12, 2, 6]  # per class: 3 test, 1 val, 6 train
    for x, y in (a.train, a.val, a.test):
        level = x.mean(dim=(1, 2, 3)) * 255  # eel images are ~80 + noise, cat ~0 + noise
        assert torch.all((level > 70) == (y == 0))
    grey = make_spec(tmp_path, task("b", 'folder("imgs", classes=2)'), shape="1, 8, 8", name="g.part")
    b = load_task_data(grey, "b")
    assert b.labels == ["cat", "dog"] and b.train[0].shape[1:] == (1, 8, 8)


def test_folder_errors(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=3)
    err = _expect_data_error(make_spec(tmp_path, task("a", 'folder("imgs", classes=["cat", "zebra"])'), "3, 8, 8"))
    assert "no class 'zebra'" in err.message and "cat, dog, eel" in err.hint
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    err = _expect_data_error(make_spec(tmp_path, task("a", 'folder("imgs", classes=["dog"])'), "3, 8, 8"))
    assert f"cannot read image '{root / 'dog' / 'broken.png'}' (not an image Pillow recognises" in err.message
    assert "BytesIO" not in err.message  # Pillow's name for the stream, not the user's file
    err = _expect_data_error(make_spec(tmp_path, task("a", 'folder("pics", classes=2)'), "3, 8, 8"))
    assert "image folder 'pics' not found" in err.message


# ---- synthetic ------------------------------------------------------------------------------------

def test_synthetic_deterministic_and_learnable(tmp_path):
    tasks = "\n".join([task("a", "synthetic(classes=4, samples=400, noise=2.0)"),
                       task("b", "synthetic(classes=4, samples=400, noise=2.0)"),
                       task("c", "synthetic(classes=4, samples=400, noise=2.0, seed=5, normalize=false)"),
                       task("d", "synthetic(classes=4, samples=400, noise=2.0, seed=5, normalize=false)")])
    net = make_spec(tmp_path, tasks, shape="1, 8, 8")
    data, again = load_all(net), load_all(net)
    assert torch.equal(data["a"].train[0], again["a"].train[0])
    assert not torch.equal(data["a"].train[0], data["b"].train[0])  # default seed differs per task
    def samples(td):
        return {row.numpy().tobytes() for split in (td.train, td.val, td.test) for row in split[0]}

    assert samples(data["c"]) == samples(data["d"])  # explicit seed: same samples (split per task)
    a = data["a"]
    assert [len(s[1]) for s in (a.train, a.val, a.test)] == [288, 32, 80]
    clf = LogisticRegression(max_iter=500).fit(a.train[0].flatten(1).numpy(), a.train[1].numpy())
    assert clf.score(a.test[0].flatten(1).numpy(), a.test[1].numpy()) > 0.8  # chance is 0.25


def test_option_values_are_checked(tmp_path):
    with pytest.raises(SpecError) as info:  # `partc check` already refuses a bad value, at the option
        make_spec(tmp_path, task("a", "digits(classes=2, val=1.5)"), "1, 8, 8")
    assert "option val= must be a fraction in [0, 1), e.g. val=0.1, got 1.5" in info.value.message
    assert info.value.loc.line == 5 and info.value.loc.source_line[info.value.loc.column - 1:].startswith("val=1.5")
    net = make_spec(tmp_path, task("a", "digits(classes=2)"), "1, 8, 8")
    net.tasks["a"].data.args["limit"] = 0  # a network built without the checker: the loader checks too
    err = _expect_data_error(net)
    assert "option limit= must be a positive number of training samples" in err.message
    with pytest.raises(SpecError, match="augment=true needs an image input"):
        make_spec(tmp_path, task("a", "digits(classes=2, augment=true)"), "1, 8, 8").tasks["a"]  # fine on images
        make_spec(tmp_path, task("a", "digits(classes=2, augment=true)"), "64")
    net = make_spec(tmp_path, task("a", "digits(classes=2)"), "1, 8, 8")
    net.tasks["a"].data.args["augment"] = True
    net.inputs[net.tasks["a"].input].shape = (64,)
    err = _expect_data_error(net)
    assert "augment=true needs an image input" in err.message


def test_relative_paths_try_data_root_then_spec_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    rows = np.arange(160, dtype=np.float32).reshape(40, 4)  # distinct rows: equal rows would be one sample
    np.savez(tmp_path / "specs" / "d.npz", x=rows[:20], y=np.arange(20) % 2)
    net = make_spec(tmp_path, task("a", 'npz("d.npz", classes=2)'), shape="4", name="specs/s.part")
    assert len(load_task_data(net, "a").train[1]) == 14  # found beside the spec
    other = tmp_path / "other"
    other.mkdir()
    np.savez(other / "d.npz", x=rows, y=np.arange(40) % 2)
    assert len(load_task_data(net, "a", data_root=other).train[1]) == 28  # data_root wins


# ---- augmentation ---------------------------------------------------------------------------------

def _all_views(img: torch.Tensor, pad: int = 4) -> list[torch.Tensor]:
    """Every crop of the zero-padded image, and its mirror: the outputs augmentation may give."""
    c, h, w = img.shape
    padded = torch.nn.functional.pad(img, (pad, pad, pad, pad))
    crops = [padded[:, i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return crops + [crop.flip(-1) for crop in crops]


def test_augment_batch_crops_and_flips():
    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5  # no zeros inside
    out = augment_batch(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, augment_batch(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(out, augment_batch(x, torch.Generator().manual_seed(2)))
    chosen = []
    for img, aug in zip(x, out, strict=True):
        matches = [k for k, view in enumerate(_all_views(img)) if torch.equal(view, aug)]
        assert matches, "output is not a padded crop (or its mirror) of the input"
        chosen.append(matches[0])
    flipped = [k >= 81 for k in chosen]
    assert any(flipped) and not all(flipped) and len({k % 81 for k in chosen}) > 10


def test_task_data_pads_with_normalised_black(split_digits):
    _, data = split_digits
    td = data["d01"]
    x = torch.full((16, 1, 8, 8), 7.0)
    out = td.augment_batch(x, torch.Generator().manual_seed(0))
    padded = augment_batch(x, torch.Generator().manual_seed(0)) == 0  # same draws, zero padding
    assert padded.any() and torch.equal(out[~padded], x[~padded])
    assert torch.allclose(out[padded], torch.tensor(td.pad_value[0]))
    assert td.pad_value[0] == pytest.approx(-td.mean[0] / td.std[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_augment_batch_on_gpu_matches_cpu():
    x = torch.rand(32, 3, 16, 16)
    want = augment_batch(x, torch.Generator().manual_seed(3), fill=[0.5, -1.0, 2.0])
    got = augment_batch(x.cuda(), torch.Generator().manual_seed(3), fill=[0.5, -1.0, 2.0])  # CPU generator, GPU batch
    assert got.device.type == "cuda" and torch.equal(got.cpu(), want)
    on_device = augment_batch(x.cuda(), torch.Generator(device="cuda").manual_seed(3))
    assert on_device.shape == x.shape


# ---- split invariants -----------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 40), min_size=1, max_size=6), n=st.integers(0, 250))
def test_apportion_properties(counts, n):
    """limit='s class balance: an exact total, each class within one of its share, never more than it has."""
    take = data_splits.apportion(np.array(counts), n)
    assert take.sum() == min(n, sum(counts)) and np.all(take <= counts) and np.all(take >= 0)
    if sum(counts):
        share = min(n, sum(counts)) * np.array(counts) / sum(counts)
        assert np.all(np.abs(take - share) < 1 + 1e-9)


def test_class_names_are_not_taken_as_ids(tmp_path):
    root = write_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=2)
    assert root.is_dir()
    err = _expect_data_error(make_spec(tmp_path, task("a", 'folder("imgs", classes=["1"])'), "3, 8, 8"))
    assert "no class '1'" in err.message and "classes there: a, b" in err.hint


def test_digit_domains_data_script_writes_what_its_spec_reads(tmp_path):
    """specs/digit_domains.part reads three npz files that experiments/digit_domains_data.py writes:
    disjoint thirds of the digits (1797 in all), every class in each, each in its own look."""
    import subprocess
    import sys

    root = SPECS.parent
    out = tmp_path / "data" / "digit_domains"
    subprocess.run([sys.executable, str(root / "experiments" / "digit_domains_data.py"), "--out", str(out)],
                   check=True, capture_output=True, timeout=120)
    net = partc.load(SPECS / "digit_domains.part")
    data = load_all(net, data_root=tmp_path)
    assert list(data) == ["plain", "negative", "small"]
    sizes = {t: sum(len(getattr(d, split)[1]) for split in ("train", "val", "test")) for t, d in data.items()}
    assert sum(sizes.values()) == len(load_digits().target) and min(sizes.values()) > 590
    raw = {t: np.load(out / f"{t}.npz") for t in data}
    for t, d in data.items():
        assert d.labels == [str(i) for i in range(10)] and set(np.asarray(d.test[1]).tolist()) == set(range(10))
        assert raw[t]["x"].shape[1:] == (1, 8, 8) and 0 <= raw[t]["x"].min() and raw[t]["x"].max() <= 1
    # the looks differ: a dark background (plain), a light one (negative), small digits on noise
    corners = {t: float(raw[t]["x"][:, 0, 0, 0].mean()) for t in data}
    assert corners["plain"] == 0 and 0.02 < corners["small"] < 0.1 and abs(corners["negative"] - 0.9) < 0.01
