"""Make text from incident files safe to print: no terminal control sequences, no markup.

Input text (log lines, frames, file names) may come from a compromised machine; it must print
literally and never change the terminal or the ticket it lands in.
"""

from __future__ import annotations

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-byte ESC sequences, C1 controls.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, terminated or not
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC
    r"|\x1b[@-Z\\-_]"  # other Fe escapes
    r"|\x1b"  # a lone ESC
    r"|[\x80-\x9f]"  # C1 controls
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Invisible characters that reorder or hide text (bidi overrides, "Trojan Source"), shown visibly.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def clean_text(text: str) -> str:
    """Remove escape sequences; show other control characters as visible ``\\xNN`` escapes.

    Newlines and tabs are kept (multi-line text stays readable); bidi and zero-width characters
    are shown as ``\\uNNNN`` so text cannot be reordered or hidden on screen.
    """
    without_escapes = _ESCAPES.sub("", text)
    visible = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", without_escapes)
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", visible)


def _one_line(text: str) -> str:
    """Markdown is line-structured: a newline in input text could start a heading or a link."""
    return clean_text(text).replace("\r", "\\r").replace("\n", "\\n")


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~@&:])")


def markdown_text(text: str) -> str:
    """Clean text and escape every character Markdown (and ticket systems) could interpret.

    Escaping ``@``, ``:``, ``<`` and brackets keeps a crafted line from creating mentions,
    autolinks, images or HTML.
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _one_line(text))


def markdown_code(text: str) -> str:
    """Clean text for an inline code span (backticks cannot be escaped inside one: replaced)."""
    return _one_line(text).replace("`", "ˋ")
