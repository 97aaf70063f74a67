"""The shipped specs check, and their paper-given parameter counts hold."""

from pathlib import Path

import pytest

import partc
from partc.passes import verify

SPECS = sorted(Path(__file__).resolve().parent.parent.joinpath("specs").glob("*.part"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_shipped_spec_checks(spec):
    net = partc.load(spec)
    assert verify(net) == []


def test_paper_parameter_counts():
    net = partc.load(Path(__file__).resolve().parent.parent / "specs" / "cifar100_part.part")
    assert net.total_params == 132_038_244
    assert {net.task_params(t) for t in net.tasks} == {44_000_778}
    per_segment = [lv.segment_params(0) for lv in net.levels]
    assert per_segment == [1920, 74112, 74112, 221952, 295680, 886272, 1181184, 3542016, 4721664]


def test_cli_start_up_imports_no_heavy_library():
    """`partc check` and `partc serve` start fast and run where torch is absent."""
    import subprocess
    import sys

    code = "import sys, partc.cli; partc.cli.build_parser(); print(sorted({'torch', 'matplotlib', 'onnx'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


def test_the_checkers_reserved_names_cover_the_installed_torch():
    """partc check refuses names nn.ModuleDict uses, from a torch-free list kept in step with torch."""
    from torch import nn

    from partc.passes.resolve import TORCH_RESERVED

    public = {n for n in dir(nn.ModuleDict()) if not n.startswith("_")}
    assert public <= TORCH_RESERVED, sorted(public - TORCH_RESERVED)
