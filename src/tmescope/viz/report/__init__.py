"""The static report: an index page and a page per sample (page, tables, maps, galleries).

``tmescope.jobs.report.write_report`` joins the store, the model and these pieces; callers add
their own parts as :class:`ReportSection` (the index) or :class:`ReportPart` (the index and each
sample's page) objects.
"""

from tmescope.viz.report.page import ReportPart, ReportSection

__all__ = ["ReportPart", "ReportSection"]
