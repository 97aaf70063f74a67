"""Seed groups (`partc train --seeds`) and the report over them: means, spreads, paired intervals, CKA references."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch

import partc
from partc.cli import main
from partc.errors import TrainError
from partc.report import build_report
from partc.run import load_checkpoint, read_group, run_paths
from partc.train import train
from partc.train.seeds import parse_seeds, train_group
from tests.report_runs import SHARED_SPEC
from tests.test_report import ALL_FIGURES, assert_self_contained

SEEDS = [1, 2, 3]
T_975_DF2 = 4.302652729911275  # Student's t, two-sided 95%, 2 degrees of freedom


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: extra threads only wait on each other on a busy machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    """A shared seed group of 3, its no-sharing group, and the report of one against the other."""
    root = tmp_path_factory.mktemp("groups")
    spec = root / "demo.part"
    spec.write_text(SHARED_SPEC.replace("epochs 2", "epochs 1"), encoding="utf-8")
    net = partc.load(spec)
    shared = train_group(net, root / "shared", SEEDS, device="cpu", quiet=True)
    base = train_group(net, root / "base", SEEDS, device="cpu", quiet=True, no_sharing=True)
    report = build_report(root / "shared", root / "report", baseline=root / "base")
    return {"root": root, "spec": spec, "net": net, "shared": shared, "base": base, "report": report,
            "json": json.loads(report.json.read_text())}


def _info(run: Path) -> dict:
    return json.loads(run_paths(run)["info"].read_text())


def test_a_group_varies_the_train_seed_and_nothing_else(groups):
    root = groups["root"]
    info, problems = read_group(root / "shared")
    assert problems == [] and info["seeds"] == SEEDS and info["members"] == {"1": "seed-1", "2": "seed-2", "3": "seed-3"}
    infos = {s: _info(root / "shared" / f"seed-{s}") for s in SEEDS}
    assert [infos[s]["seed"] for s in SEEDS] == SEEDS
    assert len({i["spec_hash"] for i in infos.values()}) == 1  # the same network: same paths
    digests = {json.dumps(i["splits"], sort_keys=True) for i in infos.values()}
    base_digests = {json.dumps(_info(root / "base" / f"seed-{s}")["splits"], sort_keys=True) for s in SEEDS}
    assert len(digests) == 1 and digests == base_digests  # the same data splits, shared or not
    first, second = (load_checkpoint(run_paths(root / "shared" / f"seed-{s}")["init"])["model"] for s in (1, 2))
    assert any(not torch.equal(first[k], second[k]) for k in first if first[k].is_floating_point())
    assert _info(root / "base" / "seed-1")["no_sharing"] is True


def test_resume_keeps_finished_members_and_adds_seeds(groups, tmp_path):
    group = Path(shutil.copytree(groups["root"] / "shared", tmp_path / "g"))
    before = run_paths(group / "seed-1")["last"].read_bytes()
    results = train_group(groups["net"], group, [4], resume=True, device="cpu", quiet=True)
    assert sorted(results) == [1, 2, 3, 4] and read_group(group)[0]["seeds"] == [1, 2, 3, 4]
    assert run_paths(group / "seed-1")["last"].read_bytes() == before  # finished: not trained again
    assert results[1]["tasks"] == groups["shared"][1]["tasks"]
    assert _info(group / "seed-4")["seed"] == 4


def test_group_refusals_are_user_errors(groups, tmp_path, capsys):
    spec, shared = str(groups["spec"]), str(groups["root"] / "shared")
    copy = str(shutil.copytree(shared, tmp_path / "g"))
    assert main(["train", spec, "--seeds", "1,2", "--out", copy, "-q"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["train", spec, "--seeds", "1", "--out", copy, "--resume", "--no-sharing", "-q"]) == 2
    assert "drop --no-sharing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", spec, "--seeds", "3..1"])
    assert "runs backwards" in capsys.readouterr().err
    assert parse_seeds("1..3,10") == [1, 2, 3, 10]


def test_report_json_carries_means_spreads_and_paired_intervals(groups):
    d, root = groups["json"], groups["root"]
    assert d["format"] == "partc-report/2" and d["group"]["seeds"] == SEEDS
    members = {s: json.loads(run_paths(root / "shared" / f"seed-{s}")["results"].read_text()) for s in SEEDS}
    bases = {s: json.loads(run_paths(root / "base" / f"seed-{s}")["results"].read_text()) for s in SEEDS}
    for task, entry in d["results"]["tasks"].items():
        values = [members[s]["tasks"][task]["top1"] for s in SEEDS]
        assert entry["top1"] == pytest.approx(statistics.mean(values))
        assert entry["top1_std"] == pytest.approx(statistics.stdev(values))
        assert entry["top1_by_seed"] == {str(s): v for s, v in zip(SEEDS, values)}
        t = d["transfer"]["tasks"][task]
        differences = [members[s]["tasks"][task]["top1"] - bases[s]["tasks"][task]["top1"] for s in SEEDS]
        assert t["pairs"] == ["1", "2", "3"] and t["values"] == pytest.approx(differences)
        half = T_975_DF2 * statistics.stdev(differences) / 3 ** 0.5 if len(set(differences)) > 1 else 0.0
        assert t["ci"] == pytest.approx([statistics.mean(differences) - half, statistics.mean(differences) + half])
        excludes_zero = t["ci"][0] > 0 or t["ci"][1] < 0
        assert (t["verdict"] in ("sharing helps", "sharing hurts")) == excludes_zero
        if not excludes_zero:
            assert t["verdict"] == "no detectable difference at n=3"
    overall = d["transfer"]["overall"]
    assert overall["values"] == pytest.approx([members[s]["mean_top1"] - bases[s]["mean_top1"] for s in SEEDS])
    assert any("n=3" in line for line in d["transfer"]["statements"])


def test_report_json_carries_the_cka_references(groups):
    cka = groups["json"]["cka"]
    refs = cka["references"]
    assert set(refs) == {"init", "baseline", "noise_floor"} and all(refs[k] for k in refs)
    assert set(refs["baseline"]["by_seed"]) == set(refs["init"]["by_seed"]) == {"1", "2", "3"}
    for level, row in cka["comparison"]["levels"].items():
        trained = [cka["by_seed"][s][level] for s in ("1", "2", "3")]
        assert row["trained"]["mean"] == pytest.approx(statistics.mean(trained))
        assert row["vs_baseline"]["values"] == pytest.approx(
            [cka["by_seed"][s][level] - refs["baseline"]["by_seed"][s][level] for s in ("1", "2", "3")])
        assert row["vs_init"]["n"] == 3 and row["vs_init"]["ci"] is not None
        assert row["noise_floor"]["mean"] < row["trained"]["mean"]  # permuted rows: far less alike
    statements = " ".join(cka["comparison"]["statements"])
    assert "untrained network" in statements and "no-sharing baseline" in statements
    assert "does not show that a task uses another task's features" in statements


def test_group_report_html_renders_every_figure_and_the_words(groups):
    report = groups["report"]
    assert_self_contained(report, ALL_FIGURES)
    html = report.html.read_text()
    d = groups["json"]
    assert d["transfer"]["overall"]["verdict"] in html and "Lesion: reliance on shared segments" in html
    assert "seed group" in html and "mean ± standard deviation over 3 seeds" in html
    assert report.problems == []


def test_runs_from_before_splits_by_sample_are_flagged(groups, tmp_path):
    run = Path(shutil.copytree(groups["root"] / "shared" / "seed-1", tmp_path / "old"))
    info = _info(run)
    del info["splits"]
    run_paths(run)["info"].write_text(json.dumps(info))
    report = build_report(run, tmp_path / "r")
    assert any("trained before partc split data by sample" in p for p in report.problems)
    with pytest.raises(TrainError) as err:
        train(groups["net"], run, resume=True, device="cpu", quiet=True, epochs=2)
    assert "before partc split data by sample" in err.value.message
