"""Untrusted text as a line of output can show it.

Names, resources and reasons come from callers; printed or logged as they are, a newline or an
escape sequence in one could forge a line ("... ALLOW alice") or move the terminal's cursor.
Everything a caller sent is shown through :func:`printable`: control and invisible characters
escaped, one line, bounded length.
"""

from __future__ import annotations

import unicodedata

ESCAPED = {"Cc", "Cf", "Zl", "Zp", "Co", "Cn"}  # control, format, separators, private use, unassigned
# (a lone surrogate stands for an undecodable byte of a file name, >= 0x80: printed as that byte)


def printable(text: str, limit: int = 200) -> str:
    """``text`` with every control or invisible character as an escape, cut to ``limit`` characters.

    >>> printable("front-door\\n2026-12-05 ALLOW alice\\x1b[2K")
    'front-door\\\\n2026-12-05 ALLOW alice\\\\x1b[2K'
    >>> printable("Chloé"), printable("x" * 300)[-4:]
    ('Chloé', 'x...')
    """
    out = "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in ESCAPED else ch for ch in str(text)
    )
    return out if len(out) <= limit else out[: limit - 3] + "..."
