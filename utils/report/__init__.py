"""The report of a run: figures (`plots`), number formats (`units`), tables (`tables`), the verdict lines each
notebook contributes (`headlines`), Markdown and HTML rendering (`render`), and the page itself (`document`)."""

from utils.report.document import REPORT_HTML, REPORT_MD, html_path, write_report

__all__ = ["REPORT_HTML", "REPORT_MD", "html_path", "write_report"]
