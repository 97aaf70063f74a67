"""Report stage: what the tasks share, how alike their representations are, and whether sharing helps.

    build_report(run_dir, out_dir) -> Report   (report.html, report.json, *.png)

Loaded lazily: importing `partc.report` (the CLI does, to register the
command) must not pull in torch or matplotlib.
"""

from partc.lazy import lazy_attributes

_LAZY = {"Report": "partc.report.build", "build_report": "partc.report.build"}
__all__ = sorted(_LAZY)
__getattr__ = lazy_attributes(__name__, _LAZY)
