"""Documents as blocks: one list of ``(kind, ...)`` tuples rendered as Markdown and as a
self-contained HTML page, both written atomically.

Blocks: ``("h1"|"h2"|"p", text)``, ``("ul", items)``, ``("table", header, rows)``,
``("figure", caption, relative_path)`` and ``("scene", caption, relative_path)``. Text may
mark bold with double asterisks and code with backquotes, as in Markdown. The HTML page embeds
its PNG figures (base64) and frames the interactive scenes, which stay separate pages next to
it. The reports of ``compare``, the study and the sweep are all written this way.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from ..util import atomic_path

__all__ = ["render_markdown", "render_html", "write_document", "provenance_line"]


def provenance_line(summary: dict[str, Any]) -> str:
    """One sentence: when, by which command, with which versions, how long, what was reused."""
    prov = summary["provenance"]
    return (f"Made {prov['created']} by `{prov['command']}` with "
            + ", ".join(f"{k} {v}" for k, v in prov["versions"].items())
            + f"; {summary['seconds']:.0f} s"
            + (f", reused: {', '.join(summary['reused_steps'])}"
               if summary.get("reused_steps") else "") + ".")


def render_markdown(blocks: list[tuple]) -> str:
    """Markdown of blocks ``("h1"|"h2"|"p", text)``, ``("ul", items)``,
    ``("table", header, rows)`` and ``("figure", caption, relative_path)``."""
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "figure":
            lines += [f"**{block[1]}**", "", f"![{block[1]}]({block[2]})", ""]
        elif kind == "scene":
            lines += [f"[Interactive 3-D scene]({block[2]}): {block[1]}", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}td:first-child,th:first-child
{text-align:left}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}
figure{margin:1.5em 0}figcaption{color:#555;font-size:.92em}code{background:#f5f5f5}
iframe{width:100%;height:560px;border:1px solid #eee}"""


def render_html(blocks: list[tuple], base: Path, title: str) -> str:
    """A self-contained HTML page of the same blocks; figures (relative to ``base``) are
    embedded as base64 PNG; interactive scenes, separate pages next to it, are shown in a
    frame with a link."""
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{_CSS}</style></head><body>"]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                           for row in block[2])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "figure":
            data = base64.b64encode((base / block[2]).read_bytes()).decode()
            parts.append(f"<figure><img alt='{esc(block[1])}' src='data:image/png;base64,"
                         f"{data}'><figcaption>{esc(block[1])}</figcaption></figure>")
        elif kind == "scene":
            href = esc(Path(block[2]).as_posix())
            parts.append(f"<figure class='scene'><iframe src='{href}' title='{esc(block[1])}'>"
                         f"</iframe><figcaption>{esc(block[1])} <a href='{href}'>Open it on its "
                         f"own page</a> ({href}, next to this report).</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _inline(text: str) -> str:
    """Escape, then turn **bold** and `code` into tags."""
    out = html.escape(text)
    for mark, tag in (("**", "b"), ("`", "code")):
        pieces = out.split(mark)
        out = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(pieces))
    return out


def write_document(blocks: list[tuple], out: Path, stem: str, title: str) -> dict[str, Path]:
    """Write ``<stem>.md`` and ``<stem>.html`` atomically; returns their paths."""
    files = {f"{stem}_md": out / f"{stem}.md", f"{stem}_html": out / f"{stem}.html"}
    with atomic_path(files[f"{stem}_md"]) as tmp:
        tmp.write_text(render_markdown(blocks))
    with atomic_path(files[f"{stem}_html"]) as tmp:
        tmp.write_text(render_html(blocks, out, title))
    return files
