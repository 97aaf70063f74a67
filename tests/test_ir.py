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


# ---- task-owned BatchNorm, by hand (see the comments in hand_counted_task_bn.part) ----
# Held once per segment: block(4) conv 4*1*9 + 4 = 40; mixed(4) conv 4*4*9 + 4 = 148 + batchnorm 2*4 = 8 -> 156;
# task_batchnorm alone: 0. Each task_batchnorm(4): 2*4 = 8, once per task routed through its segment.
# Users: l1[0] a; l1[1] a, b; l1[2] b, c; l2[0] a, b; l2[1] b, c; l3[0] a; l3[1] a, b, c.
# Heads: a 4*3 + 3 = 15, b and c 4*2 + 2 = 10.

@pytest.fixture(scope="module")
def owned():
    return partc.load(CASES / "hand_counted_task_bn.part")


def test_task_owned_segment_params_by_hand(owned):
    assert [[lv.segment_params(i) for i in range(lv.count)] for lv in owned.levels] == [[40] * 3, [156] * 2, [0] * 2]
    assert [[lv.segment_per_task_params(i) for i in range(lv.count)] for lv in owned.levels] == [[8] * 3, [8] * 2, [8] * 2]
    compiled = [[owned.segment_params(lv.name, i) for i in range(lv.count)] for lv in owned.levels]
    assert compiled == [[40 + 8, 40 + 2 * 8, 40 + 2 * 8], [156 + 2 * 8, 156 + 2 * 8], [8, 3 * 8]]
    assert [owned.graph.nodes[f"l1[{i}]"]["params"] for i in range(3)] == [48, 56, 56]


def test_task_owned_route_params_by_hand(owned):
    # a: l1[0] 40 + 8 (private), l1[1] 40 + 8, l2[0] 156 + 8, l3[0] 0 + 8 (private), l3[1] 0 + 8, head 15
    assert owned.param_split("a").as_dict() == {
        "total": 291, "shared": 40 + 156 + 0, "task_owned": 5 * 8, "private_segments": 40 + 0, "stem_head": 15}
    # b: l1[1] 40 + 8, l1[2] 40 + 8, l2[0] 156 + 8, l2[1] 156 + 8, l3[1] 0 + 8, head 10: all shared
    assert owned.param_split("b").as_dict() == {
        "total": 442, "shared": 40 + 40 + 156 + 156, "task_owned": 5 * 8, "private_segments": 0, "stem_head": 10}
    # c: l1[2] 40 + 8, l2[1] 156 + 8, l3[1] 0 + 8, head 10
    assert owned.param_split("c").as_dict() == {
        "total": 230, "shared": 40 + 156, "task_owned": 3 * 8, "private_segments": 0, "stem_head": 10}
    assert {t: owned.task_params(t) for t in owned.tasks} == {"a": 291, "b": 442, "c": 230}
    assert {t: owned.task_shared_params(t) for t in owned.tasks} == {"a": 196, "b": 392, "c": 196}
    assert owned.param_split("a").private == 40 + 40  # private segments' own weights and its own layers


def test_task_owned_network_params_by_hand(owned, counted):
    held_once = 3 * 40 + 2 * 156 + 2 * 0
    task_owned = 8 * (1 + 2 + 2) + 8 * (2 + 2) + 8 * (1 + 3)  # per level: users of each segment
    assert owned.task_owned_params == task_owned == 104
    assert owned.total_params == held_once + task_owned + 15 + 10 + 10 == 571
    assert owned.used_params == 571
    assert owned.shared_params == 40 + 40 + 156 + 156 + 0  # l1[1], l1[2], l2[0], l2[1], l3[1]: their weights held once
    assert owned.has_per_task_layers and not counted.has_per_task_layers and counted.task_owned_params == 0


def test_an_unused_segment_holds_no_task_owned_layers(owned):
    text = (CASES / "hand_counted_task_bn.part").read_text(encoding="utf-8").replace("l1 = 3 x", "l1 = 4 x")
    net = partc.loads(text, "unused")
    assert net.segment_users("l1", 3) == frozenset()
    assert net.segment_params("l1", 3) == 40  # its conv exists; no task owns a BatchNorm there
    assert net.total_params == 571 + 40 and net.used_params == 571
