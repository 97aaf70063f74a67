"""Behaviour of the checked IR: invariants, constraints on random draws,
task subgraphs and parameter counts computed by hand."""

from __future__ import annotations

import re

import pytest

import partc
from partc.ir import task_subgraph
from partc.passes import verify

from .conftest import ROOT

VALID_SPECS = sorted((ROOT / "specs").glob("*.part")) + sorted((ROOT / "tests" / "cases" / "specs").glob("*.part"))
CASES = ROOT / "tests" / "cases" / "specs"


@pytest.mark.parametrize("spec", VALID_SPECS, ids=lambda p: p.stem)
def test_verify_finds_nothing_on_valid_specs(spec):
    assert verify(partc.load(spec)) == []


def test_verify_notices_a_broken_graph():
    net = partc.load(CASES / "hand_counted.part")
    net.graph.nodes["l1[0]"]["tasks"] = frozenset()  # task a flows through it, but the node forgets
    problems = verify(net)
    assert any("l1[0]" in p for p in problems), problems


# ---- private and share constraints steer the random draws ----

CONSTRAINED = (CASES / "constrained_draws.part").read_text(encoding="utf-8")


def _with_seed(text: str, seed: int) -> str:
    return re.sub(r"seed \d+", f"seed {seed}", text)


def _private_holds(net, task: str, level: str) -> bool:
    mine = set(net.tasks[task].path[level])
    return all(not mine & set(t.path[level]) for name, t in net.tasks.items() if name != task)


def _share_holds(net, a: str, b: str, level: str) -> bool:
    return bool(set(net.tasks[a].path[level]) & set(net.tasks[b].path[level]))


@pytest.mark.parametrize("seed", range(0, 40, 3))
def test_private_and_share_hold_on_random_draws(seed):
    net = partc.loads(_with_seed(CONSTRAINED, seed), "constrained")
    assert _private_holds(net, "a", "l1")
    for i in net.tasks["a"].path["l1"]:
        assert net.segment_users("l1", i) == {"a"}
    assert _share_holds(net, "b", "c", "l1") and _share_holds(net, "b", "c", "l2")
    # the explicit path is taken as written; the draws steer around it
    assert net.tasks["e"].path["l1"] == (0, 1, 2)
    assert all(len(t.path["l1"]) == (3 if n in ("d", "e") else 2) for n, t in net.tasks.items())


SHARE_OF_FOUR = """
network four {
  input x: float[4]
  seed SEED
  level l1 = 12 x linear(4)
  level l2 = 12 x linear(4)
  task a { data synthetic(classes=2) path random(2) }
  task b { data synthetic(classes=2) path random(2) }
  task c { data synthetic(classes=2) path random(2) }
  task d { data synthetic(classes=2) path random(2) }
  share a, b, c, d
}
"""


@pytest.mark.parametrize("seed", range(0, 60, 7))
def test_a_share_of_four_tasks_gets_one_segment_common_to_all(seed):
    net = partc.loads(SHARE_OF_FOUR.replace("SEED", str(seed)), "four")
    for level in ("l1", "l2"):
        common = set.intersection(*(set(t.path[level]) for t in net.tasks.values()))
        assert common, (level, {n: t.path[level] for n, t in net.tasks.items()})


def test_the_constraints_are_what_steers_the_draws():
    """Without the constraints, the same seeds break them: the test above is not vacuous."""
    free = CONSTRAINED.replace("private a at l1", "").replace("share b, c at l1..l2", "")
    nets = [partc.loads(_with_seed(free, seed), "free") for seed in range(0, 40, 3)]
    assert not all(_private_holds(net, "a", "l1") for net in nets)
    assert not all(_share_holds(net, "b", "c", "l1") and _share_holds(net, "b", "c", "l2") for net in nets)


def test_constrained_tasks_keep_their_unconstrained_levels_free():
    """private a at l1 says nothing about l2: a's draw there is its plain ranking."""
    net = partc.loads(CONSTRAINED, "constrained")
    free = partc.loads(CONSTRAINED.replace("private a at l1", "").replace("share b, c at l1..l2", ""), "free")
    assert net.tasks["a"].path["l3"] == free.tasks["a"].path["l3"]
    assert net.tasks["d"].path["l3"] == free.tasks["d"].path["l3"]


# ---- task subgraphs ----

@pytest.mark.parametrize("spec", VALID_SPECS, ids=lambda p: p.stem)
def test_task_subgraph_holds_only_the_tasks_route(spec):
    net = partc.load(spec)
    for name, task in net.tasks.items():
        sub = task_subgraph(net, name)
        segments = {n for n in sub.nodes if net.graph.nodes[n]["op"] == "segment"}
        assert segments == {lv.segment_node(i) for lv in net.levels for i in task.path[lv.name]}
        assert all(name in tasks for _, _, tasks in sub.edges(data="tasks"))
        heads = {n for n in sub.nodes if net.graph.nodes[n]["op"] in ("head", "stem")}
        assert heads == {task.head_node} | ({task.stem_node} if task.stem is not None else set())
        assert {n for n in sub.nodes if n.startswith("input:")} == {f"input:{task.input}"}


# ---- parameter counts, by hand (see the comments in hand_counted.part) ----
# l1 segment: conv(4, k=3) on [1, 8, 8] = 4*1*9 + 4 = 40, batchnorm(4) = 8  -> 48
# l2 segment: conv(4, k=3, pad=1) on [4, 6, 6] = 4*4*9 + 4                 -> 148
# l3 segment: conv(2, k=3, bias=false) on [4, 3, 3] = 2*4*9                 -> 72
# heads: a 3 classes from 2 features = 2*3 + 3 = 9; b and c 2*2 + 2 = 6
# stem c: conv(1, k=3, stride=2, pad=1) on [3, 16, 16] = 1*3*9 + 1 = 28

@pytest.fixture(scope="module")
def counted():
    return partc.load(CASES / "hand_counted.part")


def test_segment_params_by_hand(counted):
    assert [[lv.segment_params(i) for i in range(lv.count)] for lv in counted.levels] == [[48, 48, 48], [148, 148], [72, 72]]
    assert [lv.shape for lv in counted.levels] == [(4, 6, 6), (4, 3, 3), (2, 1, 1)]


def test_stem_and_head_params_by_hand(counted):
    t = counted.tasks
    assert (t["a"].head_params, t["b"].head_params, t["c"].head_params) == (9, 6, 6)
    assert (t["a"].stem_params, t["b"].stem_params, t["c"].stem_params) == (0, 0, 28)
    assert [layer.op for layer in t["a"].head] == ["flatten", "linear"]


def test_task_params_by_hand(counted):
    # a: l1[0, 1] 96 + l2[0] 148 + l3[0, 1] 144 + head 9
    # b: l1[1, 2] 96 + l2[0, 1] 296 + l3[1] 72 + head 6
    # c: stem 28 + l1[2] 48 + l2[1] 148 + l3[0] 72 + head 6
    assert {name: counted.task_params(name) for name in counted.tasks} == {"a": 397, "b": 470, "c": 302}


def test_shared_params_by_hand(counted):
    # shared segments: l1[1] (a, b), l1[2] (b, c), l2[0] (a, b), l2[1] (b, c), l3[0] (a, c), l3[1] (a, b)
    assert counted.shared_params == 48 + 48 + 148 + 148 + 72 + 72
    # per task: the shared ones on its path; a's l1[0] is private to it
    assert {name: counted.task_shared_params(name) for name in counted.tasks} == {
        "a": 48 + 148 + 72 + 72, "b": 48 + 48 + 148 + 148 + 72, "c": 48 + 148 + 72}
    assert counted.segment_users("l1", 0) == {"a"}


def test_total_params_by_hand(counted):
    segments = 3 * 48 + 2 * 148 + 2 * 72
    assert counted.total_params == segments + 9 + 6 + 6 + 28 == 633
    assert counted.used_params == 633  # every segment is on some path


def test_unused_segments_are_not_used_params():
    text = (CASES / "hand_counted.part").read_text(encoding="utf-8").replace("level l2 = 2 x", "level l2 = 3 x")
    net = partc.loads(text, "unused")
    assert net.total_params == 633 + 148
    assert net.used_params == 633
    assert net.segment_users("l2", 2) == frozenset()
