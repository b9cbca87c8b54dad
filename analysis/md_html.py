"""Markdown -> a complete HTML page, with markdown-it-py (CommonMark plus GitHub tables; raw HTML escaped)."""

from __future__ import annotations

import html

from markdown_it import MarkdownIt

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #bbb;padding:3px 8px}"
    "th{background:#eee}pre{background:#f5f5f5;padding:0.8em;overflow-x:auto}img{max-width:100%}"
)
_PARSER = MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_to_html(text: str, title: str = "") -> str:
    """A complete HTML page (UTF-8, a small style sheet) for Markdown ``text``."""
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>"
    return f"<!DOCTYPE html>\n<html><head>{head}</head>\n<body>\n{_PARSER.render(text)}</body></html>\n"
