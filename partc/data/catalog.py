"""What data sources a spec may name, their arguments and their classes.

Torch-free, read by `partc check`: the checker validates a task's `data`
call against this table and sizes the task's head from the classes it
selects. The loaders themselves live beside this file (`partc.data.load`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from typing import Any

from partc.errors import ClassesError
from partc.values import byte_text, is_int, is_number

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
    "perspective": "with augment=true: random perspective of this distortion scale, p=0.5 (default 0: off)",
    "normalize": "true (default): per-task mean/std normalisation",
    "limit": "use at most this many training samples (quick runs)",
    "label_noise": "this fraction of each class's training labels replaced by another class (studies; default 0)",
}

# Options only some sources take (`Source.options` names them).
SOURCE_OPTIONS = {
    "size": "folder: the images' [height, width] in pixels (default: the input's)",
    "samples": "synthetic: how many samples (default 200 per class)",
    "seed": "synthetic: the generator's seed (default: derived from the network's seed and the task)",
    "noise": "synthetic: standard deviation of the noise on each class prototype (default 1.0)",
}

# Defaults the loaders use for options a spec leaves out.
OPTION_DEFAULTS: dict[str, Any] = {
    "val": 0.1, "test": 0.2, "augment": False, "perspective": 0.0, "normalize": True, "limit": None, "label_noise": 0.0,
}


# option -> (accepts the value?, what a valid value is). `classes` is checked by select_classes.
OPTION_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "val": (lambda v: is_number(v) and 0 <= v < 1, "a fraction in [0, 1), e.g. val=0.1"),
    "test": (lambda v: is_number(v) and 0 <= v < 1, "a fraction in [0, 1), e.g. test=0.2"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "perspective": (lambda v: is_number(v) and 0 <= v < 1, "a distortion scale in [0, 1), e.g. perspective=0.5"),
    "normalize": (lambda v: isinstance(v, bool), "true or false"),
    "limit": (lambda v: is_int(v) and v > 0, "a positive number of training samples, e.g. limit=500"),
    "label_noise": (lambda v: is_number(v) and 0 <= v < 1, "a fraction in [0, 1), e.g. label_noise=0.2"),
    "size": (
        lambda v: (is_int(v) and v > 0) or (isinstance(v, list) and len(v) == 2 and all(is_int(i) and i > 0 for i in v)),
        "an image size in pixels: size=32 or size=[height, width]",
    ),
    "samples": (lambda v: is_int(v) and v > 0, "a positive number of samples, e.g. samples=1000"),
    "seed": (lambda v: is_int(v) and v >= 0, "a non-negative integer"),
    "noise": (lambda v: is_number(v) and v >= 0, "a non-negative number (the noise's standard deviation)"),
}


def check_option(name: str, value: Any) -> str | None:
    """None when `value` is valid for option `name`, else what a valid value is (the caller shows the value)."""
    rule = OPTION_VALUES.get(name)
    if rule is None or rule[0](value):
        return None
    return f"option {name}= must be {rule[1]}"


SYNTHETIC_SAMPLES_PER_CLASS = 200  # synthetic data's default samples= is this times its classes
MAX_SYNTHETIC_BYTES = 8 * 2**30  # what generated samples may take in memory, as float32


def check_size(source: Source, options: dict[str, Any], input_shape: tuple[int, ...], classes: int
               ) -> tuple[str, str, str] | None:
    """What a source would generate, within reason: None, or (option at fault, problem, hint).

    Only synthetic data's size is known before it is read: samples (default
    200 per class) times the input's elements, as float32.
    """
    if source.name != "synthetic" or classes < 1:
        return None
    samples = options.get("samples", SYNTHETIC_SAMPLES_PER_CLASS * classes)
    if samples < classes:
        return ("samples", f"synthetic data needs at least one sample per class: samples={samples} < {classes} classes",
                f"use samples={SYNTHETIC_SAMPLES_PER_CLASS * classes} (the default)")
    size = samples * prod(input_shape) * 4
    if size > MAX_SYNTHETIC_BYTES:
        return ("samples", f"{samples:,} synthetic samples of shape {list(input_shape)} would take {byte_text(size)}, "
                f"more than partc generates ({byte_text(MAX_SYNTHETIC_BYTES)})",
                "ask for fewer samples=..., or fewer classes (the default is 200 samples per class)")
    return None


def check_combination(source: Source, options: dict[str, Any], input_shape: tuple[int, ...]) -> tuple[str, str, str] | None:
    """Rules across a task's data options and its input: None, or (option at fault, problem, hint).

    The checker applies them to specs; the loader to networks built by other means.
    """
    if options.get("perspective") and not options.get("augment"):
        return "perspective", "perspective= applies only with augment=true", "add augment=true"
    if options.get("augment") and len(input_shape) != 3:
        return ("augment", f"augment=true needs an image input [C, H, W], but the task's input has shape "
                f"{list(input_shape)}", "drop augment=true")
    if "test" in options and source.own_test_split:
        return ("test", f"{source.name} has its own test split, so test= does not apply",
                "drop test=...; val= takes the validation part from the training split")
    if source.shape is not None and tuple(input_shape) != source.shape and \
            not (len(input_shape) == 1 and input_shape[0] == prod(source.shape)):
        shown = ", ".join(map(str, source.shape))
        return ("", f"{source.name} samples have shape [{shown}], but the task's input has shape {list(input_shape)}",
                f"declare the input as float[{shown}] (or float[{prod(source.shape)}] to flatten)")
    return None


@dataclass(frozen=True)
class Source:
    name: str
    positional: tuple[str, ...]  # required positional arguments (paths)
    labels: list[str] | None  # the source's class names, when fixed
    options: tuple[str, ...] = ()  # extra keyword options of this source
    doc: str = ""
    shape: tuple[int, ...] | None = None  # every sample's shape, when the source fixes it
    own_test_split: bool = False  # the source ships its test split (test= does not apply)


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source("digits", (), [str(i) for i in range(10)], doc="scikit-learn's bundled 8x8 digits", shape=(1, 8, 8)),
        Source("cifar10", ("root",), CIFAR10_LABELS, doc="CIFAR-10, python format, in a local folder",
               shape=(3, 32, 32), own_test_split=True),
        Source("cifar100", ("root",), CIFAR100_LABELS, doc="CIFAR-100, python format, in a local folder",
               shape=(3, 32, 32), own_test_split=True),
        Source("npz", ("file",), None, doc="a .npz file with arrays x and y"),
        Source("folder", ("root",), None, ("size",), doc="one sub-folder of images per class"),
        Source(
            "synthetic", (), None, ("samples", "seed", "noise"),
            doc="random class prototypes plus noise, for tests and benchmarks",
        ),
    ]
}


MAX_CLASSES = 100_000


def select_classes(source: Source, classes: Any) -> list[str]:
    """Class labels a task uses, from its `classes=` value; raise ClassesError.

    With no `classes=`, a source with fixed classes gives them all and one
    without (npz, folder, synthetic) gives none: the caller reports that.
    """
    fixed = source.labels
    if classes is None:
        return list(fixed) if fixed is not None else []
    if isinstance(classes, bool):
        raise ClassesError("classes must be a count, a list or a range, not true/false", hint=_CLASSES_USAGE)
    if isinstance(classes, int):
        if classes < 1:
            raise ClassesError(f"a task needs at least one class, got classes={classes}", hint=_CLASSES_USAGE)
        if fixed is not None and classes > len(fixed):
            raise ClassesError(f"{source.name} has {len(fixed)} classes, asked for {classes}",
                               hint=f"ask for 1..{len(fixed)} classes, or list them")
        if classes > MAX_CLASSES:
            raise ClassesError(f"classes={classes} is more than partc supports", hint=f"use at most {MAX_CLASSES:,} classes")
        return list(fixed[:classes]) if fixed else [str(i) for i in range(classes)]
    values = classes.values() if hasattr(classes, "values") and not isinstance(classes, dict) else classes
    if not isinstance(values, list) or not values:
        raise ClassesError("classes must be a count, a non-empty list or a range", hint=_CLASSES_USAGE)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if fixed is not None:
            bad = [v for v in values if not 0 <= v < len(fixed)]
            if bad:
                raise ClassesError(f"class {bad[0]} is out of range: {source.name} has classes 0..{len(fixed) - 1}",
                                   hint=f"use class indices 0..{len(fixed) - 1}")
    elif all(isinstance(v, str) for v in values):
        if fixed is not None:
            unknown = [v for v in values if v not in fixed]
            if unknown:
                close = difflib.get_close_matches(unknown[0], fixed, n=1)
                raise ClassesError(f"{source.name} has no class named '{unknown[0]}'",
                                   hint=f"did you mean '{close[0]}'?" if close else
                                   f"{source.name}'s classes are named like '{fixed[0]}' and '{fixed[1]}', "
                                   f"or use indices 0..{len(fixed) - 1}")
    else:
        raise ClassesError("classes must be all integers or all names", hint=_CLASSES_USAGE)
    if len(set(values)) != len(values):
        seen: set = set()
        twice = next(v for v in values if v in seen or seen.add(v))
        raise ClassesError(f"classes lists '{twice}' twice", hint="list each class once")
    if all(isinstance(v, int) for v in values):
        return [fixed[v] for v in values] if fixed is not None else [str(v) for v in values]
    return list(values)


_CLASSES_USAGE = "write classes=N (a count), classes=[0, 3, 7], classes=0..9 or classes=[\"cat\", \"dog\"]"
