"""Small specs for the train-stage tests (synthetic data: trains in a second on CPU).

TINY: three tasks of different sizes and class counts, BatchNorm, dropout,
augmentation on one task, a `sampling` ratio, AdamW with weight decay, and
segment 4 of every level on no task's path.
Private segments: a -> l1[0], l3[0]; b -> l2[2], l3[2]; c -> l1[3], l2[3], l3[3].
PLAIN: the same routes without BatchNorm or dropout (no cross-row coupling).
OWNED: TINY with task-owned BatchNorm (task_batchnorm): each task its own copy in every segment.
"""

TINY = """
network tiny {
  input img: float[2, 8, 8]
  seed 3
  segment blk(c) { conv(c, k=3, pad=1); batchnorm; relu }
  level l1 = 5 x blk(6)
  level l2 = 5 x blk(6) residual then maxpool(2)
  level l3 = 5 x blk(8) then avgpool
  task a { data synthetic(classes=3, samples=90, augment=true) path l1[0, 1] l2[0, 1] l3[0, 1]
           head { flatten; dropout(0.3) } }
  task b { data synthetic(classes=2, samples=50) path l1[1, 2] l2[1, 2] l3[1, 2] sampling 2 }
  task c { data synthetic(classes=6, samples=120) path l1[2, 3] l2[0, 3] l3[3] }
  train { epochs 3; batch 8; optimizer adamw(lr=0.01, weight_decay=0.1); schedule cosine }
}
"""

PLAIN = """
network plain {
  input img: float[2, 8, 8]
  seed 3
  segment blk(c) { conv(c, k=3, pad=1); relu }
  level l1 = 5 x blk(6)
  level l2 = 5 x blk(6) residual then maxpool(2)
  level l3 = 5 x blk(8) then avgpool
  task a { data synthetic(classes=3, samples=90) path l1[0, 1] l2[0, 1] l3[0, 1] }
  task b { data synthetic(classes=2, samples=50) path l1[1, 2] l2[1, 2] l3[1, 2] }
  task c { data synthetic(classes=4, samples=120) path l1[2, 3] l2[0, 3] l3[3] }
  train { epochs 2; batch 8; optimizer adam(lr=0.01) }
}
"""

OWNED = TINY.replace("network tiny", "network tiny_owned").replace("batchnorm", "task_batchnorm")

PRIVATE = {"a": [("l1", 0), ("l3", 0)], "b": [("l2", 2), ("l3", 2)], "c": [("l1", 3), ("l2", 3), ("l3", 3)]}
UNUSED = [("l1", 4), ("l2", 4), ("l3", 4)]


def segment_state(state_dict, level, index):
    prefix = f"levels.{level}.{index}."
    return {k: v for k, v in state_dict.items() if k.startswith(prefix)}


def own_state(state_dict, task):
    """The task's own copies of per-task layers: levels.<level>.<i>.<position>.<task>.<weight, bias, statistics>."""
    return {k: v for k, v in state_dict.items() if k.startswith("levels.") and k.split(".")[4:5] == [task]}


def head_state(state_dict, task):
    return {k: v for k, v in state_dict.items() if k.startswith(f"heads.{task}.")}


def same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
