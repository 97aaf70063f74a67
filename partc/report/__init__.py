"""Report stage: what the tasks share, how alike their representations are, and whether sharing helps.

    build_report(run_dir, out_dir) -> Report   (report.html, report.json, *.png)

Loaded lazily: importing `partc.report` (the CLI does, to register the
command) must not pull in torch or matplotlib.
"""

__all__ = ["Report", "build_report"]


def __getattr__(name: str):
    if name in __all__:
        from partc.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'partc.report' has no attribute '{name}'")
