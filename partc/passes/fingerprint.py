"""Pass fingerprint: `net.spec_hash`, a hash of what the checked network means.

It hashes the network's text form without locations, comments or layout
(`partc.ir_text.meaning`): inputs, the bound layers and shapes of every
level, each task's data, route, stem and head, and the train settings. So
reformatting a spec, adding a comment or writing a default explicitly keeps
the hash (and `--resume` works), while any change of what is computed or
trained changes it. `net.source_hash` keeps the hash of the raw text, which
runs of older partc versions recorded.
"""

from __future__ import annotations

import hashlib

from partc.errors import PartError
from partc.ir import Network
from partc.ir_text import meaning
from partc.language import ast


def fingerprint(net: Network, tree: ast.Network) -> list[PartError]:
    net.spec_hash = hashlib.sha256(meaning(net).encode("utf-8")).hexdigest()[:16]
    net.graph.graph["spec_hash"] = net.spec_hash
    return []
