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


def clean_text(text: str) -> str:
    """Remove escape sequences; show other control characters as visible ``\\xNN`` escapes."""
    without_escapes = _ESCAPES.sub("", text)
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", without_escapes)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~@&:])")


def markdown_text(text: str) -> str:
    """Clean text and escape every character Markdown (and ticket systems) could interpret.

    Escaping ``@``, ``:``, ``<`` and brackets keeps a crafted line from creating mentions,
    autolinks, images or HTML.
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", clean_text(text))


def markdown_code(text: str) -> str:
    """Clean text for an inline code span (backticks cannot be escaped inside one: replaced)."""
    return clean_text(text).replace("`", "ˋ")
