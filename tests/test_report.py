"""`partc report`: report.json agrees with the IR and the run, the HTML is whole, degraded runs still report."""

from __future__ import annotations

import base64
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

import partc
from partc.cli import main
from partc.report import build_report
from partc.report.analysis import accuracy
from partc.report.cka import linear_cka
from partc.report.evaldata import RANDOM_PROBE, TEST_PROBE
from partc.run import load_checkpoint, load_trained_model, run_paths
from tests.report_runs import SHARED_SPEC, make_run


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These networks are tiny: torch's intra-op threads only add synchronisation, which stalls on a
    busy shared machine (a run trained here took 33 s with 2 threads under load, 2 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A trained run with sharing, its no-sharing baseline, and the report of the first."""
    root = tmp_path_factory.mktemp("runs")
    base = make_run(root / "base", no_sharing=True)
    run = make_run(root / "run", baseline="../base")
    report = build_report(run, root / "report")
    return {"root": root, "run": run, "base": base, "report": report,
            "json": json.loads(report.json.read_text()), "net": partc.load(run / "spec.part")}


def _copy_run(runs, tmp_path) -> Path:
    return Path(shutil.copytree(runs["run"], tmp_path / "run"))


# ---------------------------------------------------------------- structure agrees with the IR
def test_structure_numbers_come_from_the_ir(runs):
    net, s = runs["net"], runs["json"]["structure"]
    assert s["tasks"] == list(net.tasks)
    for level_json, level in zip(s["levels"], net.levels):
        users = [net.segment_users(level.name, i) for i in range(level.count)]
        assert [set(u) for u in level_json["users"]] == [set(u) for u in users]
        assert level_json["shared"] == sum(len(u) > 1 for u in users)
        assert level_json["private"] == sum(len(u) == 1 for u in users)
        assert level_json["used"] == sum(bool(u) for u in users)
    for t in net.tasks:
        p = s["params"][t]
        assert p["total"] == net.task_params(t)
        assert p["shared"] == net.task_shared_params(t)
        assert p["shared"] + p["task_owned"] + p["private_segments"] + p["stem_head"] == p["total"]
    assert (s["total_params"], s["used_params"], s["shared_params"]) == (net.total_params, net.used_params,
                                                                         net.shared_params)
    # The compiled model has exactly the parameters the IR counts on each route.
    model = partc.compile(net)
    for t in net.tasks:
        assert sum(p.numel() for p in model.task_parameters(t)) == s["params"][t]["total"]


def test_sharing_matrices_by_hand(runs):
    s = runs["json"]["structure"]
    tasks = s["tasks"]
    a, b, c = tasks.index("a"), tasks.index("b"), tasks.index("c")
    # From SHARED_SPEC: a = l1[0,1] l2[0,1] l3[0,1], b = l1[1,2] l2[1,2] l3[1,2], c = l1[0,3] l2[2,3] l3[0,3].
    assert s["shared_segments_by_level"]["l1"][a][b] == 1  # segment 1
    assert s["shared_segments_by_level"]["l2"][a][c] == 0
    assert s["shared_segments"][a][b] == 3 and s["shared_segments"][a][c] == 2 and s["shared_segments"][b][c] == 1
    assert s["shared_segments"][a][a] == 6
    assert s["path_jaccard"][a][b] == pytest.approx(3 / 9)  # 3 common of 6 + 6 - 3
    assert s["path_jaccard"][a][a] == 1.0
    m = np.array(s["shared_segments"])
    assert (m == m.T).all()


# ---------------------------------------------------------------- results, lesion, transfer
def test_results_and_curves_come_from_the_run_files(runs):
    d = runs["json"]
    written = json.loads(run_paths(runs["run"])["results"].read_text())
    assert d["results"]["source"] == "results.json"
    for t, m in written["tasks"].items():
        assert d["results"]["tasks"][t]["top1"] == m["top1"]
        assert d["results"]["tasks"][t]["samples"] == m["samples"]
    assert d["curves"]["a"]["train"]["epoch"] == [1, 2]
    assert set(d["curves"]["photo"]) == {"train", "val"}


def test_lesion_trained_accuracy_matches_the_trainers_test_accuracy(runs):
    d = runs["json"]
    for t, m in d["lesion"].items():
        assert m["trained_top1"] == pytest.approx(d["results"]["tasks"][t]["top1"], abs=1e-6)
        assert m["shared_segments"] == sum(
            len(runs["net"].segment_users(lv, i)) > 1 for lv, ix in runs["net"].tasks[t].path.items() for i in ix)


def test_lesion_resets_exactly_the_shared_segments_to_init(runs):
    """Recompute one task's reset accuracy by building the mixed state dict by hand."""
    net, model, _ = load_trained_model(runs["run"])
    init = load_checkpoint(run_paths(runs["run"])["init"])["model"]
    mixed = model.state_dict()
    shared = [f"levels.{lv}.{i}." for lv, ix in net.tasks["a"].path.items() for i in ix
              if len(net.segment_users(lv, i)) > 1]
    for key in mixed:
        if any(key.startswith(prefix) for prefix in shared):
            mixed[key] = init[key]
    model.load_state_dict(mixed)
    from partc.data.load import load_task_data

    x, y = load_task_data(net, "a").test
    expected = accuracy(model, "a", x, y, torch.device("cpu"))["top1"]
    assert runs["json"]["lesion"]["a"]["reset_top1"] == pytest.approx(expected)
    assert runs["json"]["lesion"]["a"]["reset_top1"] < runs["json"]["lesion"]["a"]["trained_top1"]


def test_a_run_without_sharing_has_nothing_to_reset(runs, tmp_path):
    d = json.loads(build_report(runs["base"], tmp_path / "r").json.read_text())
    for m in d["lesion"].values():
        assert m["shared_segments"] == 0 and m["reset_top1"] == m["trained_top1"]
    assert d["structure"]["shared_params"] == 0


def test_transfer_against_one_baseline_run_gives_no_verdict(runs):
    """One run each: the difference, paired by the train seed, but no interval and so no verdict."""
    d = runs["json"]
    base = json.loads(run_paths(runs["base"])["results"].read_text())
    assert Path(d["baseline"]["run"]).resolve() == runs["base"].resolve() and d["baseline"]["kind"] == "run"
    for t, m in d["transfer"]["tasks"].items():
        assert m["baseline_top1"] == base["tasks"][t]["top1"] and m["pairs"] == ["5"]  # SHARED_SPEC's seed
        assert m["mean"] == pytest.approx(d["results"]["tasks"][t]["top1"] - base["tasks"][t]["top1"])
        assert m["ci"] is None and m["verdict"].startswith("no interval from one pair of runs")
    html = runs["report"].html.read_text()
    assert "<td>sharing helps</td>" not in html and "<td>sharing hurts</td>" not in html
    assert d["transfer"]["overall"]["verdict"] in html


# ---------------------------------------------------------------- CKA on the common probe
def test_cka_matrices(runs):
    cka = runs["json"]["cka"]
    tasks = cka["tasks"]
    grey = [tasks.index(t) for t in ("a", "b", "c")]
    photo = tasks.index("photo")
    assert cka["probes"] == [{"input": "grey", "tasks": ["a", "b", "c"], "kind": TEST_PROBE, "samples": 90,
                              "from_tasks": {"a": 30, "b": 30, "c": 30}}]
    for level in cka["levels"]:
        m = cka["matrices"][level]
        for i in grey:
            assert m[i][i] == pytest.approx(1.0)
            for j in grey:
                assert 0.0 <= m[i][j] <= 1.0 + 1e-9 and m[i][j] == pytest.approx(m[j][i])
        assert all(v is None for v in m[photo])  # photo reads another input: no common samples


def test_cka_value_recomputed_from_features(runs):
    """Rebuild the probe from each task's test split (re-normalised per task) and compare one entry."""
    net, model, _ = load_trained_model(runs["run"])
    from partc.data.load import load_all
    from partc.report.evaldata import TaskTest, renormalise

    data = load_all(net)
    gen = torch.Generator().manual_seed(0)  # build_report's default seed, same draw order
    parts = []
    for t in ("a", "b", "c"):
        x, y = data[t].test
        parts.append((TaskTest(x, y, torch.tensor(data[t].mean), torch.tensor(data[t].std)),
                      x[torch.randperm(len(y), generator=gen)[:256 // 3]]))
    target = {t: TaskTest(*data[t].test, torch.tensor(data[t].mean), torch.tensor(data[t].std)) for t in ("a", "c")}
    with torch.no_grad():
        fa = model.features(torch.cat([renormalise(x, src, target["a"]) for src, x in parts]), "a")["l2"]
        fc = model.features(torch.cat([renormalise(x, src, target["c"]) for src, x in parts]), "c")["l2"]
    tasks = runs["json"]["cka"]["tasks"]
    shown = runs["json"]["cka"]["matrices"]["l2"][tasks.index("a")][tasks.index("c")]
    assert shown == pytest.approx(linear_cka(fa, fc), abs=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_numbers(runs, tmp_path):
    d = json.loads(build_report(runs["run"], tmp_path / "gpu", device="cuda").json.read_text())
    for t, m in runs["json"]["lesion"].items():
        assert d["lesion"][t]["trained_top1"] == pytest.approx(m["trained_top1"], abs=0.05)
    for level, matrix in runs["json"]["cka"]["matrices"].items():
        for row, gpu_row in zip(matrix, d["cka"]["matrices"][level]):
            assert [v is None for v in row] == [v is None for v in gpu_row]
            assert [v for v in gpu_row if v is not None] == pytest.approx([v for v in row if v is not None], abs=1e-3)


# ---------------------------------------------------------------- the HTML page
class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tags, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


ALL_FIGURES = {"usage", "sharing", "sharing_by_level", "params", "accuracy", "curves", "cka", "cka_references", "lesion",
               "transfer"}


def assert_self_contained(report, figures: set[str]) -> _Page:
    """The page embeds exactly these figures, as data URIs, and needs nothing else (no script, link or URL)."""
    html = report.html.read_text()
    page = _parse(html)
    pngs = sorted(report.out_dir.glob("*.png"))
    assert {p.stem for p in pngs} == figures
    for png in pngs:
        assert "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode() in page.images, png.name
    assert len(page.images) == len(pngs)
    assert "script" not in page.tags and "link" not in page.tags
    assert all(link.startswith(("data:", "#")) for link in page.links)
    assert "http://" not in html and "https://" not in html
    assert json.loads(report.json.read_text())["figures"] == {p.stem: p.name for p in pngs}
    return page


def test_html_embeds_every_figure_and_needs_nothing_else(runs):
    assert_self_contained(runs["report"], ALL_FIGURES)


def test_html_shows_the_numbers_of_report_json(runs):
    html = runs["report"].html.read_text()
    d = runs["json"]
    assert f"{d['structure']['total_params']:,}" in html
    for m in d["lesion"].values():
        assert f"{100 * m['reset_top1']:.1f}%" in html
    assert "Problems" not in html  # a complete run has none


# ---------------------------------------------------------------- task-owned BatchNorm
def test_task_owned_batchnorm_in_structure_figures_and_lesion(tmp_path):
    """A run whose segments hold task_batchnorm: the split counts each task's own copies apart (block(8)'s
    conv 8*1*9+8 = 80 on l1 held once, 2*8 = 16 per task), the page shows them, and the lesion resets a
    task's shared weights but keeps its own BatchNorm trained."""
    spec = SHARED_SPEC.replace("batchnorm", "task_batchnorm").replace("epochs 2", "epochs 1")
    run = make_run(tmp_path / "run", spec)
    report, d, _ = _report(run, tmp_path)
    net = partc.load(run / "spec.part")
    s = d["structure"]
    assert s["levels"][0]["params_text"] == "80 + 16/task" and s["levels"][0]["task_params_per_segment"] == [16] * 4
    assert s["task_owned_params"] == net.task_owned_params == sum(p["task_owned"] for p in s["params"].values())
    assert s["params"]["a"] == net.param_split("a").as_dict() and s["params"]["a"]["task_owned"] == 2 * (16 + 16 + 32)
    html = report.html.read_text()
    assert "own per-task layers" in html and f"{s['task_owned_params']:,} in the tasks' own per-task layers" in html
    assert {"usage", "params"} <= set(report.figures)

    model = load_trained_model(run)[1]
    init = load_checkpoint(run_paths(run)["init"])["model"]
    mixed = model.state_dict()
    shared = [f"levels.{lv}.{i}." for lv, ix in net.tasks["a"].path.items() for i in ix
              if len(net.segment_users(lv, i)) > 1]
    for key in mixed:  # levels.l1.1.0.weight is shared; levels.l1.1.1.a.weight is a's own
        if any(key.startswith(prefix) for prefix in shared) and key.split(".")[4:5] not in (["a"], ["b"], ["c"]):
            mixed[key] = init[key]
    model.load_state_dict(mixed)
    from partc.data.load import load_task_data

    x, y = load_task_data(net, "a").test
    assert d["lesion"]["a"]["reset_top1"] == pytest.approx(accuracy(model, "a", x, y, torch.device("cpu"))["top1"])


# ---------------------------------------------------------------- degraded runs
def _report(run: Path, tmp_path: Path):
    report = build_report(run, tmp_path / "out")
    return report, json.loads(report.json.read_text()), _parse(report.html.read_text())


def test_missing_metrics_and_results(runs, tmp_path):
    run = _copy_run(runs, tmp_path)
    run_paths(run)["metrics"].unlink()
    run_paths(run)["results"].unlink()
    report, d, page = _report(run, tmp_path)
    assert any("metrics.jsonl is missing" in p for p in report.problems)
    assert d["results"]["tasks"] == {} and d["curves"] == {}
    assert "accuracy" not in report.figures and "curves" not in report.figures
    assert "cka" in report.figures and "usage" in report.figures  # the rest still renders
    assert len(page.images) == len(report.figures)
    assert "metrics.jsonl is missing" in report.html.read_text()


def test_damaged_metrics_lines_are_named_and_the_rest_is_used(runs, tmp_path):
    run = _copy_run(runs, tmp_path)
    metrics = run_paths(run)["metrics"]
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(lines[:5] + ["{not json", '{"epoch": 1}'] + lines[5:]) + "\n")
    run_paths(run)["results"].write_text("{\"tasks\": [1, 2")  # truncated
    report, d, _ = _report(run, tmp_path)
    assert any("metrics.jsonl:6: not a JSON line" in p for p in report.problems)
    assert any("metrics.jsonl:7: missing epoch/task/split" in p for p in report.problems)
    assert any("results.json is damaged" in p for p in report.problems)
    assert d["results"]["source"] == "metrics.jsonl" and d["results"]["epoch"] == 2
    assert set(d["results"]["tasks"]) == {"a", "b", "c", "photo"}


def test_truncated_checkpoint(runs, tmp_path):
    run = _copy_run(runs, tmp_path)
    last = run_paths(run)["last"]
    last.write_bytes(last.read_bytes()[:1000])
    shutil.copytree(runs["report"].out_dir, tmp_path / "out")  # a full report was written here before
    report, d, page = _report(run, tmp_path)
    assert not (tmp_path / "out" / "cka.png").exists()  # no stale figure of the earlier report stays
    assert any("corrupt or truncated" in p and "no CKA or lesion test" in p for p in report.problems)
    assert "cka" not in d and "lesion" not in d
    assert {"usage", "accuracy", "curves"} <= set(report.figures)
    assert "corrupt or truncated" in report.html.read_text()
    # run.json's baseline "../base" is relative to the run directory, and this copy has none beside it.
    assert any(p.startswith("baseline run") and p.endswith("does not exist") for p in report.problems)


def test_missing_init_checkpoint_skips_the_lesion_and_the_untrained_reference(runs, tmp_path):
    run = _copy_run(runs, tmp_path)
    run_paths(run)["init"].unlink()
    report, d, _ = _report(run, tmp_path)
    assert any("initial weights unavailable" in p for p in report.problems)
    assert "lesion" not in d and "cka" in d and d["cka"]["references"]["init"] is None


def test_only_the_spec_left(runs, tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    shutil.copy(run_paths(runs["run"])["spec"], run / "spec.part")
    report, d, page = _report(run, tmp_path)
    assert set(report.figures) == {"usage", "sharing", "sharing_by_level", "params"}
    assert d["structure"] == runs["json"]["structure"]
    text = " ".join(report.problems)
    assert "run.json is missing" in text and "metrics.jsonl is missing" in text and "last.pt' does not exist" in text


def test_missing_test_data_falls_back_to_a_marked_random_probe(tmp_path):
    npz = tmp_path / "grey.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, x=rng.standard_normal((60, 1, 8, 8)).astype(np.float32), y=np.arange(60) % 2)
    spec = SHARED_SPEC.replace("synthetic(classes=3, samples=150, seed=1, noise=0.6)", f'npz("{npz}", classes=2)')
    spec = spec.replace("synthetic(classes=3, samples=150, seed=2, noise=0.6)", f'npz("{npz}", classes=2)')
    spec = spec.replace("synthetic(classes=6, samples=150, seed=3, noise=0.6)", f'npz("{npz}", classes=2)')
    run = make_run(tmp_path / "run", spec.replace("epochs 2", "epochs 1"))
    npz.unlink()
    report, d, _ = _report(run, tmp_path)
    assert d["cka"]["probes"][0]["kind"] == RANDOM_PROBE
    assert any("random normal" in p for p in report.problems)
    assert any("task 'a': test data not loaded" in p for p in report.problems)
    assert set(d["lesion"]) == {"photo"}  # the only task whose data is still there


# ---------------------------------------------------------------- the command
def test_cli_writes_the_report_and_warns_about_problems(runs, tmp_path, capsys):
    run = _copy_run(runs, tmp_path)
    run_paths(run)["metrics"].unlink()
    assert main(["report", str(run), "-o", str(tmp_path / "out"), "--baseline", str(runs["base"])]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "metrics.jsonl is missing" in captured.err
    assert "report.html" in captured.out
    assert (tmp_path / "out" / "report.html").is_file() and (tmp_path / "out" / "usage.png").is_file()


def test_cli_refuses_a_bad_probe_size(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path), "-o", str(tmp_path / "out"), "--probe-size", "1"])
    assert exit_.value.code == 2
    assert "CKA needs at least 2 samples" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cli_cuda_without_a_gpu_is_a_user_error(runs, tmp_path, capsys):
    assert main(["report", str(runs["run"]), "-o", str(tmp_path / "out"), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["no_dir", "no_spec"])
def test_cli_without_a_run_is_a_user_error(tmp_path, capsys, case):
    run = tmp_path / "run"
    if case == "no_spec":
        run.mkdir()
        (run / "run.json").write_text("{}")
    assert main(["report", str(run), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert ("does not exist" if case == "no_dir" else "spec.part is missing") in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
