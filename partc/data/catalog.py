"""What data sources a spec may name, their arguments and their classes.

Torch-free, read by `partc check`: the checker validates a task's `data`
call against this table and sizes the task's head from the classes it
selects. The loaders themselves live beside this file (`partc.data.load`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CIFAR10_LABELS = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]

CIFAR100_LABELS = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy
bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach
couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail
snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()

# Options every source accepts (the loaders apply them).
COMMON_OPTIONS = {
    "classes": "class subset: a count, a list or range of labels, or a list of names",
    "val": "validation fraction of the training part (default 0.1)",
    "test": "test fraction where the source has no test split (default 0.2)",
    "augment": "true: random crop (padding 4) and horizontal flip on training images",
    "normalize": "true (default): per-task mean/std normalisation",
    "limit": "use at most this many training samples (quick runs)",
}

# Defaults the loaders use for options a spec leaves out.
OPTION_DEFAULTS: dict[str, Any] = {"val": 0.1, "test": 0.2, "augment": False, "normalize": True, "limit": None}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# option -> (accepts the value?, what a valid value is). `classes` is checked by select_classes.
OPTION_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "val": (lambda v: _is_number(v) and 0 <= v < 1, "a fraction in [0, 1), e.g. val=0.1"),
    "test": (lambda v: _is_number(v) and 0 <= v < 1, "a fraction in [0, 1), e.g. test=0.2"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "normalize": (lambda v: isinstance(v, bool), "true or false"),
    "limit": (lambda v: _is_int(v) and v > 0, "a positive number of training samples, e.g. limit=500"),
    "size": (
        lambda v: (_is_int(v) and v > 0) or (isinstance(v, list) and len(v) == 2 and all(_is_int(i) and i > 0 for i in v)),
        "an image size in pixels: size=32 or size=[height, width]",
    ),
    "samples": (lambda v: _is_int(v) and v > 0, "a positive number of samples, e.g. samples=1000"),
    "seed": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "noise": (lambda v: _is_number(v) and v >= 0, "a non-negative number (the noise's standard deviation)"),
}


def check_option(name: str, value: Any) -> str | None:
    """None when `value` is valid for option `name`, else what a valid value is."""
    rule = OPTION_VALUES.get(name)
    if rule is None or rule[0](value):
        return None
    return f"option {name}= must be {rule[1]}, got {value!r}"


@dataclass(frozen=True)
class Source:
    name: str
    positional: tuple[str, ...]  # required positional arguments (paths)
    labels: list[str] | None  # the source's class names, when fixed
    options: tuple[str, ...] = ()  # extra keyword options of this source
    doc: str = ""


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source("digits", (), [str(i) for i in range(10)], doc="scikit-learn's bundled 8x8 digits"),
        Source("cifar10", ("root",), CIFAR10_LABELS, doc="CIFAR-10, python format, in a local folder"),
        Source("cifar100", ("root",), CIFAR100_LABELS, doc="CIFAR-100, python format, in a local folder"),
        Source("npz", ("file",), None, doc="a .npz file with arrays x and y"),
        Source("folder", ("root",), None, ("size",), doc="one sub-folder of images per class"),
        Source(
            "synthetic", (), None, ("samples", "seed", "noise"),
            doc="random class prototypes plus noise, for tests and benchmarks",
        ),
    ]
}


def select_classes(source: Source, classes: Any) -> list[str]:
    """Class labels a task uses, from its `classes=` value; raise ValueError."""
    if classes is None:
        if source.labels is None:
            raise ValueError(f"data source '{source.name}' needs classes=... (a count or a list)")
        return list(source.labels)
    if isinstance(classes, bool):
        raise ValueError("classes must be a count, a list or a range, not true/false")
    if isinstance(classes, int):
        if classes < 1:
            raise ValueError(f"a task needs at least one class, got classes={classes}")
        if source.labels is not None and classes > len(source.labels):
            raise ValueError(f"{source.name} has {len(source.labels)} classes, asked for {classes}")
        return list(source.labels[:classes]) if source.labels else [str(i) for i in range(classes)]
    values = classes.values() if hasattr(classes, "values") and not isinstance(classes, dict) else classes
    if not isinstance(values, list) or not values:
        raise ValueError("classes must be a count, a non-empty list or a range")
    if len(set(values)) != len(values):
        raise ValueError(f"classes lists a class twice: {values}")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if source.labels is not None:
            bad = [v for v in values if not 0 <= v < len(source.labels)]
            if bad:
                raise ValueError(
                    f"{source.name} has classes 0..{len(source.labels) - 1}; {bad[0]} is out of range"
                )
            return [source.labels[v] for v in values]
        return [str(v) for v in values]
    if all(isinstance(v, str) for v in values):
        if source.labels is not None:
            unknown = [v for v in values if v not in source.labels]
            if unknown:
                raise ValueError(f"{source.name} has no class named '{unknown[0]}'")
        return list(values)
    raise ValueError("classes must be all integers or all names")
