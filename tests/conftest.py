"""Shared test fixtures: the repository root and expected-output files.

`pytest --update-expected` rewrites every expectation file a test compares
against (error cases' `.err`, golden summaries and IR dumps) from the
current output, instead of failing on a difference. Review the diff after.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Every check in the tests (and in the processes they start) verifies the IR after every pass.
os.environ["PARTC_VERIFY_PASSES"] = "1"


def pytest_addoption(parser):
    parser.addoption(
        "--update-expected",
        action="store_true",
        default=False,
        help="rewrite expected-output files (tests/cases/errors/*.err, tests/golden/*) from the current output",
    )


@pytest.fixture
def expect(request):
    """`expect(path, actual)`: compare `actual` with the file's text, or rewrite the file."""
    update = request.config.getoption("--update-expected")

    def check(path: Path, actual: str) -> None:
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text(encoding="utf-8") != actual:
                path.write_text(actual, encoding="utf-8")
            return
        assert path.exists(), f"{path.relative_to(ROOT)} is missing; run pytest --update-expected"
        expected = path.read_text(encoding="utf-8")
        assert actual == expected, f"output differs from {path.relative_to(ROOT)} (pytest --update-expected rewrites it)"

    return check


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one torch thread, and on a busy machine far faster."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def in_root(monkeypatch):
    """Run the test from the repository root, so spec paths print relative."""
    monkeypatch.chdir(ROOT)
    return ROOT


# Trained-and-exported runs shared by the export and serve tests (made once per session).
@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    from tests.export_helpers import exported_run

    return exported_run("split_digits", tmp_path_factory)


@pytest.fixture(scope="session")
def mixed(tmp_path_factory):
    from tests.export_helpers import exported_run

    return exported_run("mixed_inputs", tmp_path_factory, layout="triton")
