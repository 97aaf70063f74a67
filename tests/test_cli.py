"""The `partc` command, run in-process through `partc.cli.main`."""

from __future__ import annotations

import re
import shutil

import pytest

import partc
from partc.cli import main
from partc.dot import task_colours

from .conftest import ROOT

SPLIT = "specs/split_digits.part"


def run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ---- check ----

def test_check_prints_levels_paths_and_totals(in_root, capsys):
    code, out, err = run(["check", SPLIT], capsys)
    net = partc.load(SPLIT)
    assert (code, err) == (0, "".join(w.render() + "\n" for w in net.warnings))  # unused segments, on stderr
    assert out.startswith(f"network split_digits  ({SPLIT}, spec {net.spec_hash}, seed 7)\n")
    assert "4 levels x 8 segments, 5 tasks" in out
    assert "paths (segment indices per level; * = private to the task)" in out
    for name, task in net.tasks.items():
        row = next(line for line in out.splitlines() if line.startswith(f"{name}  ") and "," in line)
        cells = row.split()
        assert [c.replace("*", "") for c in cells[1:]] == [",".join(map(str, task.path[lv])) for lv in task.path]
        assert f"{net.task_params(name):,}" in next(line for line in out.splitlines()
                                                    if line.startswith(f"{name}  ") and "digits" in line)
    assert out.rstrip().endswith(f"total parameters: {net.total_params:,}   used by some task: {net.used_params:,}   "
                                 f"in shared segments: {net.shared_params:,}")


def test_check_marks_private_segments(in_root, capsys):
    _, out, _ = run(["check", "tests/cases/specs/hand_counted.part"], capsys)
    assert re.search(r"^a\s+0\*,1\s+0\s+0,1$", out, re.M), out  # l1[0] is a's alone


def test_check_dump_has_a_line_per_node_and_edge(in_root, capsys):
    code, out, err = run(["check", "--dump", SPLIT], capsys)
    net = partc.load(SPLIT)
    assert (code, err) == (0, "".join(w.render() + "\n" for w in net.warnings))
    lines = out.splitlines()
    assert lines[0] == "network split_digits seed=7"
    assert sum(line.startswith("node ") for line in lines) == net.graph.number_of_nodes()
    assert sum(line.startswith("edge ") for line in lines) == net.graph.number_of_edges()


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, _ = run([], capsys)
    assert code == 2 and "usage: partc" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"partc {partc.__version__}"


# ---- graph ----

def test_graph_writes_dot_with_every_task_and_used_segment(in_root, tmp_path, capsys):
    out_file = tmp_path / "sub" / "net.dot"
    code, out, err = run(["graph", "specs/mixed_inputs.part", "-o", str(out_file)], capsys)
    assert (code, err, out) == (0, "", f"wrote {out_file}\n")
    dot = out_file.read_text(encoding="utf-8")
    net = partc.load("specs/mixed_inputs.part")

    assert dot.startswith('digraph "mixed_inputs" {\n') and dot.endswith("}\n")
    assert dot.count("{") == dot.count("}")
    for task, colour in task_colours(net).items():
        assert colour in dot, task
        assert f'"head:{task}"' in dot
    declared = set(re.findall(r'^\s*"([^"]+)" \[', dot, re.M))
    for lv in net.levels:
        for i in range(lv.count):
            if net.segment_users(lv.name, i):
                assert lv.segment_node(i) in declared
    assert "stem:photos" in declared
    edges = re.findall(r'^\s*"([^"]+)" -> "([^"]+)" \[color="([^"]+)"\];$', dot, re.M)
    assert len(edges) == net.graph.number_of_edges()
    for u, v, colours in edges:
        assert u in declared and v in declared
        tasks = net.graph.edges[u, v]["tasks"]
        assert set(colours.split(":")) == {task_colours(net)[t] for t in tasks}


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's 'dot' program is not installed")
def test_graph_renders_svg_with_graphviz(in_root, tmp_path, capsys):
    out_file = tmp_path / "net.svg"
    code, _, err = run(["graph", SPLIT, "-o", str(out_file)], capsys)
    assert (code, err) == (0, "")
    assert "<svg" in out_file.read_text(encoding="utf-8")


def test_graph_svg_without_graphviz_says_how_to_install(in_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out_file = tmp_path / "net.svg"
    code, out, err = run(["graph", SPLIT, "-o", str(out_file)], capsys)
    assert code == 2 and out == ""
    assert err == (
        f"error: cannot render '{out_file}': Graphviz's 'dot' program is not installed\n"
        "hint: install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz), "
        "or write DOT with -o net.dot\n"
    )
    assert not out_file.exists()


@pytest.mark.parametrize("name, what", [("net.jpeg", "unknown format '.jpeg'"), ("net", "no format suffix")])
def test_graph_unknown_format(in_root, tmp_path, capsys, name, what):
    code, out, err = run(["graph", SPLIT, "-o", str(tmp_path / name)], capsys)
    assert code == 2 and out == ""
    assert err == (f"error: cannot draw to '{tmp_path / name}': {what}\n"
                   "hint: use a file ending in .dot, .svg, .png or .pdf\n")


def test_graph_into_an_unwritable_place(in_root, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run(["graph", SPLIT, "-o", str(blocker / "net.dot")], capsys)
    assert code == 2
    assert err.startswith(f"error: cannot write '{blocker / 'net.dot'}'") and "Traceback" not in err


def test_graph_of_an_invalid_spec_exits_2(in_root, tmp_path, capsys):
    code, _, err = run(["graph", "tests/cases/errors/unknown_layer.part", "-o", str(tmp_path / "x.dot")], capsys)
    assert code == 2
    assert err == (ROOT / "tests/cases/errors/unknown_layer.err").read_text(encoding="utf-8")
    assert not (tmp_path / "x.dot").exists()


def test_help_imports_no_pipeline_stage_and_codegen_still_loads_its_functions():
    """`partc --help` stays fast (bench/startup.py): the package faces load their stages on first use."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from partc import codegen
    from partc.codegen import generate, render_model

    root = Path(__file__).resolve().parent.parent
    probe = ("import runpy, sys; sys.argv = ['partc', '--help']\n"
             "try: runpy.run_module('partc', run_name='__main__')\nexcept SystemExit: pass\n"
             "print(sorted(m for m in ('networkx', 'lark', 'jinja2', 'torch', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr
    assert callable(generate) and callable(render_model) and codegen.generate is generate
