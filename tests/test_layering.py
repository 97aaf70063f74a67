"""Dependencies point one way: a module imports only its own stage, earlier stages and neutral modules.

`STAGES` is the pipeline's order, in one place (docs/ARCHITECTURE.md points
here). Every `import partc...` in the package, at module level or inside a
function, is read from the source with `ast` and checked against it, so a
back-edge (a stage importing a later stage, the package face or the CLI)
fails CI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "partc"

# In pipeline order. A module belongs to the entry with the longest matching prefix.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("partc.version", "partc.errors", "partc.values", "partc.seeds", "partc.lazy", "partc.argtypes",
                    "partc.devices", "partc.layers", "partc.ir", "partc.onnxrt", "partc.stats", "partc.data.catalog",
                    "partc.train.settings")),
    ("language", ("partc.language",)),
    ("check", ("partc.passes", "partc.spec", "partc.summary", "partc.dot", "partc.ir_text", "partc.fmt")),
    ("compile", ("partc.compiler",)),
    ("codegen", ("partc.codegen",)),
    ("data", ("partc.data",)),
    ("run", ("partc.run",)),
    ("train", ("partc.train",)),
    ("export", ("partc.export",)),
    ("serve", ("partc.serve",)),
    ("report", ("partc.report",)),
    ("face", ("partc", "partc.cli", "partc.__main__")),  # the package face and the CLI: nothing imports them
]


def stage_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(STAGES):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"module {module} is in no stage of STAGES"
    return rank


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every partc import in the file, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "partc"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "partc":
            if node.module == "partc":  # `from partc import x`: x may be a submodule
                found += [(node.lineno, f"partc.{a.name}" if (PACKAGE / a.name).exists() or
                           (PACKAGE / f"{a.name}.py").exists() else "partc") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_stage():
    for path in MODULES:
        stage_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_back_along_the_pipeline(path):
    here = module_name(path)
    rank = stage_of(here)
    face = len(STAGES) - 1
    for line, target in imports_of(path):
        there = stage_of(target)
        if rank == face:
            continue  # the face and the CLI may import any stage
        assert there <= rank, (f"{path.relative_to(ROOT)}:{line}: {here} ({STAGES[rank][0]}) imports {target} "
                               f"({STAGES[there][0]}), a later stage")


def test_the_check_catches_a_back_edge(tmp_path):
    bad = PACKAGE / "compiler" / "model.py"
    fake = tmp_path / "partc" / "compiler" / "model.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(bad.read_text() + "\nfrom partc.train import runner\n")
    here = "partc.compiler.model"
    assert any(stage_of(t) > stage_of(here) for _, t in imports_of(fake))
