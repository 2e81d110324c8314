"""Renders the run report's blocks to Markdown and to one self-contained HTML page.

Blocks: ("heading", level, text), ("paragraph", text), ("list", [text, ...]),
("table", header, rows, note), ("figure", relative_path, caption). Text may hold `code`,
**bold** and [links](href); everything else is literal. The HTML embeds the figures as base64 PNG
and needs no Markdown library, so the two renderings never disagree.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path


def _markdown_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[tuple]) -> str:
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "heading":
            lines += [f"{'#' * block[1]} {block[2]}", ""]
        elif kind == "paragraph":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            _, header, rows, note = block
            lines.append("| " + " | ".join(_markdown_cell(cell) for cell in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in rows]
            lines.append("")
            if note:
                lines += [f"_{note}_", ""]
        elif kind == "figure":
            _, source, caption = block
            lines += [f"![{caption}]({source})", "", f"*{caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)|(?<![\w*])_(.+?)_(?![\w*])")


def render_inline(text: str) -> str:
    """HTML for the inline subset the report writes: `code`, **bold**, _italic_, [text](href)."""
    out, last = [], 0
    for match in INLINE.finditer(str(text)):
        out.append(html.escape(text[last : match.start()]))
        code, bold, label, href, italic = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{render_inline(bold)}</strong>")
        elif label is not None:
            out.append(f'<a href="{html.escape(href, quote=True)}">{render_inline(label)}</a>')
        else:
            out.append(f"<em>{render_inline(italic)}</em>")
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 980px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #ddd; padding-bottom: .15em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f1f1f1; padding: 0 .2em; border-radius: 3px; font-size: .92em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; margin-top: .3em; }
.note { font-size: .9em; color: #555; }
"""


def render_html(blocks: list[tuple], run_dir: Path, title: str) -> str:
    """One self-contained HTML page: inline CSS, figures as base64 data URIs, no external source."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
    ]
    for block in blocks:
        kind = block[0]
        if kind == "heading":
            parts.append(f"<h{block[1]}>{render_inline(block[2])}</h{block[1]}>")
        elif kind == "paragraph":
            parts.append(f"<p>{render_inline(block[1])}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{render_inline(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            _, header, rows, note = block
            head = "".join(f"<th>{render_inline(cell)}</th>" for cell in header)
            body = "".join("<tr>" + "".join(f"<td>{render_inline(cell)}</td>" for cell in row) + "</tr>" for row in rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            if note:
                parts.append(f'<p class="note">{render_inline(note)}</p>')
        elif kind == "figure":
            _, source, caption = block
            try:
                encoded = base64.b64encode((run_dir / source).read_bytes()).decode("ascii")
            except OSError:
                parts.append(f'<p class="note">{render_inline(caption)} (figure <code>{html.escape(source)}</code> is missing)</p>')
                continue
            parts.append(
                f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(caption, quote=True)}">'
                f"<figcaption>{render_inline(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
