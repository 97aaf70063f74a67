"""Report stage: what the tasks share, how alike their representations are, and whether sharing helps.

    build_report(run_dir, out_dir) -> Report   (report.html, report.json, *.png)
"""

from partc.report.build import Report, build_report

__all__ = ["Report", "build_report"]
