"""The static report: one self-contained HTML file (page, tables, maps, galleries).

``tmescope.jobs.report.write_report`` joins the store, the model and these pieces; callers add
their own parts as :class:`ReportSection` objects.
"""

from tmescope.viz.report.page import ReportSection

__all__ = ["ReportSection"]
