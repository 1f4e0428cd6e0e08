"""Self-contained HTML reports (tables + matplotlib figures embedded as PNG) shared by every area."""

from poolvisor.reporting.html import Figure, Report, Table, new_figure

__all__ = ["Figure", "Report", "Table", "new_figure"]
