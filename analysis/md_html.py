"""A small Markdown -> HTML converter for the subset the report writes (used when ``markdown`` is missing).

Supported: ATX headings, paragraphs, GitHub tables, fenced code blocks, ``-`` bullet lists, and inline
images, links, ``code`` and **bold**. Everything else is escaped text.
"""

from __future__ import annotations

import html
import re

_INLINE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)|\[([^\]]+)\]\(([^)\s]+)\)|`([^`]+)`|\*\*([^*]+)\*\*")
STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #bbb;padding:3px 8px}"
    "th{background:#eee}pre{background:#f5f5f5;padding:0.8em;overflow-x:auto}img{max-width:100%}"
)


def inline(text: str) -> str:
    """Escape text and convert images, links, inline code and bold."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        alt, src, label, href, code, bold = m.groups()
        if src is not None:
            out.append(f'<img alt="{html.escape(alt)}" src="{html.escape(src)}">')
        elif href is not None:
            out.append(f'<a href="{html.escape(href)}">{html.escape(label)}</a>')
        elif code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        else:
            out.append(f"<strong>{html.escape(bold)}</strong>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def markdown_to_html(text: str, title: str = "") -> str:
    """A complete HTML page for Markdown ``text``."""
    body, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            body.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1 : end]))}</code></pre>")
            i = end + 1
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            level = len(m.group(1))
            body.append(f"<h{level}>{inline(m.group(2).strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            end = _block_end(lines, i, lambda s: s.startswith("|"))
            body.append(_table(lines[i:end]))
            i = end
        elif line.startswith("- "):
            end = _block_end(lines, i, lambda s: s.startswith("- "))
            body.append("<ul>" + "".join(f"<li>{inline(s[2:])}</li>" for s in lines[i:end]) + "</ul>")
            i = end
        elif line.strip():
            end = _block_end(
                lines, i, lambda s: bool(s.strip()) and not s.startswith(("#", "|", "- ", "```"))
            )
            body.append(f"<p>{inline(' '.join(s.strip() for s in lines[i:end]))}</p>")
            i = end
        else:
            i += 1
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>"
    return f"<!DOCTYPE html>\n<html><head>{head}</head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"


def _block_end(lines: list[str], start: int, belongs: object) -> int:
    end = start + 1
    while end < len(lines) and belongs(lines[end]):  # type: ignore[operator]
        end += 1
    return end


def _cells(row: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    return [p.strip().replace("\\|", "|") for p in parts]


def _table(rows: list[str]) -> str:
    header, body = _cells(rows[0]), rows[1:]
    if body and re.fullmatch(r"\|?[\s:|-]+\|?", body[0]):
        body = body[1:]
    out = ["<table>", "<tr>" + "".join(f"<th>{inline(c)}</th>" for c in header) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in body]
    return "\n".join(out + ["</table>"])
