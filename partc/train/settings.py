"""What a `train { }` block may say: every setting, optimizer and schedule with its valid values (torch-free).

`partc check` validates a spec's train block against these tables (through
`check_setting`), so a spec it accepts is never refused by `partc train`
for a reason in the spec; `partc.train.config` only converts the checked
values into a `TrainConfig`. Adding a setting, an optimizer argument or a
schedule means adding a row here. Like `partc.data.catalog`, this module
is read by the checker and imports nothing of the train stage.

Values arrive as the checker's plain data: numbers, strings, booleans,
lists, an enum word as its name (`fused`), a call as
`{"name": ..., "args": [...], "kwargs": {...}}`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from partc.values import is_int, is_number

MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 20


@dataclass(frozen=True)
class Rule:
    """A valid value: `accepts(value)`, and `expect`, what a valid value is, for messages."""

    accepts: Callable[[Any], bool]
    expect: str
    choices: tuple[str, ...] = ()  # enum words, for "did you mean"


def whole(lo: int, hi: int, what: str) -> Rule:
    return Rule(lambda v: is_int(v) and lo <= v <= hi, f"{what} from {lo:,} to {hi:,}")


def number(lo: float, *, above: bool = False, below: float | None = None, what: str = "a number") -> Rule:
    def accepts(v: Any) -> bool:
        return is_number(v) and (v > lo if above else v >= lo) and (below is None or v < below)

    bound = f"{'>' if above else '>='} {lo:g}" + (f" and < {below:g}" if below is not None else "")
    return Rule(accepts, f"{what} {bound}")


def one_of(*words: str) -> Rule:
    return Rule(lambda v: isinstance(v, str) and v in words, " or ".join(words), words)


BOOLEAN = Rule(lambda v: isinstance(v, bool), "true or false")
PROBABILITY_PAIR = Rule(lambda v: isinstance(v, list) and len(v) == 2 and all(is_number(b) and 0 <= b < 1 for b in v),
                        "a list of two numbers in [0, 1), e.g. [0.9, 0.999]")
MILESTONES = Rule(lambda v: isinstance(v, list) and bool(v) and all(is_int(m) and 0 < m <= MAX_EPOCHS for m in v),
                  "a non-empty list of positive epoch numbers, e.g. [20, 30]")


@dataclass(frozen=True)
class CallShape:
    """A setting written as a call (`adam(lr=1e-3)`): its keyword arguments and which may be positional."""

    arguments: dict[str, Rule]
    positional: tuple[str, ...] = ()  # in order
    example: str = ""


_ADAM = {"lr": number(0, above=True, what="a learning rate"), "weight_decay": number(0, what="a weight decay"),
         "betas": PROBABILITY_PAIR, "eps": number(0, above=True, what="an epsilon")}
OPTIMIZERS: dict[str, CallShape] = {
    "adam": CallShape(_ADAM, ("lr",), "adam(lr=1e-3)"),
    "adamw": CallShape(_ADAM, ("lr",), "adamw(lr=1e-3, weight_decay=0.01)"),
    "sgd": CallShape({"lr": number(0, above=True, what="a learning rate"), "weight_decay": number(0, what="a weight decay"),
                      "momentum": number(0, what="a momentum"), "nesterov": BOOLEAN,
                      "dampening": number(0, what="a dampening")}, ("lr",), "sgd(lr=0.1, momentum=0.9)"),
}
SCHEDULES: dict[str, CallShape] = {
    "constant": CallShape({}, (), "constant"),
    "cosine": CallShape({}, (), "cosine"),
    "step": CallShape({"milestones": MILESTONES, "gamma": number(0, above=True, what="a factor")}, ("milestones",),
                      "step([20, 30, 40], gamma=0.5)"),
}
DEFAULT_LR = 1e-3
DEFAULT_GAMMA = 0.1

# Per-task settings (`task t { ... weight 2 }`): a loss weight and a batch-size factor.
TASK_SETTINGS: dict[str, Rule] = {
    "weight": number(0, above=True, below=1e6, what="a loss weight"),
    "sampling": number(0, above=True, below=1e4, what="a batch-size factor"),
}


@dataclass(frozen=True)
class Setting:
    name: str
    rule: Rule | None  # None: a call of one of `calls`
    default: Any
    example: str
    doc: str
    calls: dict[str, CallShape] | None = None


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    Setting("epochs", whole(1, MAX_EPOCHS, "a whole number of epochs"), 10, "epochs 60", "passes over the largest task"),
    Setting("batch", whole(1, MAX_BATCH, "a batch size"), 32, "batch 32", "samples per task per step"),
    Setting("optimizer", None, "adam", "optimizer adam(lr=1e-3)", "adam, adamw or sgd with arguments", OPTIMIZERS),
    Setting("schedule", None, "constant", "schedule step([20, 30, 40], gamma=0.5)",
            "learning-rate schedule over epochs: constant, cosine or step([...], gamma=...)", SCHEDULES),
    Setting("mode", one_of("fused", "interleaved"), "fused", "mode fused", "one step over all tasks, or the paper's rounds"),
    Setting("batchnorm", one_of("per_task", "joint"), "per_task", "batchnorm per_task",
            "batch statistics of a shared segment in fused mode: each task's own, or all rows together"),
    Setting("steps_per_task", whole(1, MAX_BATCH, "a number of steps"), 10, "steps_per_task 10",
            "consecutive steps of one task in interleaved mode"),
    Setting("epoch_policy", one_of("largest", "smallest"), "largest", "epoch_policy largest",
            "an epoch is one pass of the largest (smaller tasks cycle) or the smallest task"),
    Setting("seed", whole(0, 2**63 - 1, "a seed"), None, "seed 0", "training seed (default: the network's seed)"),
]}


@dataclass(frozen=True)
class Problem:
    """What is wrong with a setting: the message, the argument at fault (None: the whole value), a hint."""

    message: str
    argument: str | int | None = None  # a keyword name, or a positional index
    hint: str = ""
    choice: str | None = None  # a misspelt word, for "did you mean"
    choices: tuple[str, ...] = ()


def check_setting(name: str, value: Any, show: Callable[[Any], str]) -> Problem | None:
    """None when `value` is valid for train setting `name`; else the problem. `show` prints values."""
    setting = SETTINGS[name]
    if setting.calls is None:
        if setting.rule.accepts(value):
            return None
        word = value if isinstance(value, str) and setting.rule.choices else None
        return Problem(f"train setting '{name}' must be {setting.rule.expect}, got {show(value)}",
                       hint=f"e.g. {setting.example}", choice=word, choices=setting.rule.choices)
    call = {"name": value, "args": [], "kwargs": {}} if isinstance(value, str) else value
    kinds = ", ".join(setting.calls)
    if not isinstance(call, dict) or call.get("name") not in setting.calls:
        word = call.get("name") if isinstance(call, dict) else value if isinstance(value, str) else None
        return Problem(f"train setting '{name}' must be one of {kinds}, got {show(value)}", hint=f"e.g. {setting.example}",
                       choice=word, choices=tuple(setting.calls))
    shape = setting.calls[call["name"]]
    usage = f"write {shape.example}"
    if len(call["args"]) > len(shape.positional):
        took = f"at most {len(shape.positional)} positional argument(s) ({', '.join(shape.positional)})" \
            if shape.positional else "no positional arguments"
        return Problem(f"{call['name']} takes {took}, got {len(call['args'])}", len(shape.positional), usage)
    given = dict(zip(shape.positional, call["args"], strict=False))
    for key, v in call["kwargs"].items():
        if key not in shape.arguments:
            valid = ", ".join(shape.arguments) or "none"
            return Problem(f"{name} {call['name']} has no argument '{key}' (its arguments: {valid})", key, usage,
                           choice=key, choices=tuple(shape.arguments))
        if key in given:
            return Problem(f"{name} {call['name']} got '{key}' twice", key, usage)
        given[key] = v
    for key, v in given.items():
        rule = shape.arguments[key]
        if not rule.accepts(v):
            where = key if key in call["kwargs"] else shape.positional.index(key)
            return Problem(f"{call['name']} {key} must be {rule.expect}, got {show(v)}", where, usage)
    return None


def setting_value(train: dict[str, Any], name: str) -> Any:
    """A checked train block's value of `name`, or the setting's default."""
    return train.get(name, SETTINGS[name].default)


def call_arguments(value: Any, calls: dict[str, CallShape]) -> tuple[str, dict[str, Any]]:
    """(name, keyword arguments with positionals named) of a checked call-valued setting."""
    call = {"name": value, "args": [], "kwargs": {}} if isinstance(value, str) else value
    shape = calls[call["name"]]
    return call["name"], dict(zip(shape.positional, call["args"], strict=False)) | dict(call["kwargs"])
