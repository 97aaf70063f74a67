"""A large generated spec for the speed benchmarks: many tasks, levels and segments.

    from bench.large_spec import large_spec
    text = large_spec(tasks=200, levels=50, segments=64, path=8)

Small segments (conv + batchnorm + relu on an 8x8 image with 8 channels) keep
the compiled model in memory; the size is in the routing, not the tensors.
"""

from __future__ import annotations


def large_spec(tasks: int = 200, levels: int = 50, segments: int = 64, path: int = 8,
               channels: int = 8, size: int = 8, name: str = "large") -> str:
    lines = [
        f"network {name} {{",
        f"  input image: float[{channels}, {size}, {size}]",
        "  seed 1",
        "  segment block(c) { conv(c, k=3, pad=1); batchnorm; relu }",
    ]
    for i in range(1, levels + 1):
        then = "relu, avgpool" if i == levels else "relu"
        lines.append(f"  level l{i} = {segments} x block({channels}) residual then {then}")
    for t in range(tasks):
        lines.append(f"  task t{t} {{ data synthetic(classes={2 + t % 9}) path random({path}) }}")
    lines.append("  train { epochs 1; batch 32 }")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(large_spec(), end="")
