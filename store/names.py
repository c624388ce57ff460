"""One naming rule for speakers, groups and resources, applied by the store at every entry point,
so enroll, verify, remove, claims, grants, HTTP paths and the CLI cannot disagree about a name.

- A name is NFC-normalised and stripped of surrounding whitespace; that is how it is shown.
- Refused: an empty name, over 200 characters, control characters, invisible format characters
  (zero-width spaces and joiners, bidi overrides, byte-order marks), line or paragraph
  separators, and for speakers a leading ``@`` (or a look-alike: ``＠``, ``﹫``), which always
  means a group; a group is written with one plain ``@`` (``@@ops`` and ``＠staff`` are refused).
- Two names are the same name when they differ only by case, width, compatibility form or runs
  of inner whitespace (their :func:`name_key` agrees): ``Alice`` finds ``alice``, and enrolling
  ``ＡＬＩＣＥ`` next to ``alice`` is refused as the same speaker.

>>> speaker_name("  Chlo\\u0065\\u0301  ")  # NFC: e + combining accent becomes one character
'Chloé'
>>> name_key("Chloé") == name_key("CHLOÉ")
True
>>> speaker_name("@staff")
Traceback (most recent call last):
...
store.errors.InvalidNameError: invalid speaker name '@staff': a leading @ names a group, not a speaker
>>> principal("@Staff")
('group', 'Staff')
"""

from __future__ import annotations

import unicodedata

from .errors import InvalidNameError

MAX_LENGTH = 200
_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned character",
}


def _clean(raw: object, kind: str) -> str:
    if not isinstance(raw, str):
        raise InvalidNameError(f"invalid {kind} name {raw!r}: a name is text")
    name = unicodedata.normalize("NFC", raw).strip()
    if not name:
        raise InvalidNameError(f"invalid {kind} name {raw!r}: it is empty")
    if len(name) > MAX_LENGTH:
        raise InvalidNameError(f"invalid {kind} name {name[:40]!r}...: over {MAX_LENGTH} characters")
    for ch in name:
        what = _REFUSED_CATEGORIES.get(unicodedata.category(ch))
        if what:
            raise InvalidNameError(f"invalid {kind} name {raw!r}: contains {what} (U+{ord(ch):04X})")
    return name


def _marked(name: str) -> bool:
    """Whether a name starts with ``@`` or a character that reads as one (``＠``, ``﹫``)."""
    return unicodedata.normalize("NFKC", name[:1]) == "@"


def speaker_name(raw: object) -> str:
    """The display form of a speaker's name, or :class:`InvalidNameError`.

    >>> speaker_name("＠staff")
    Traceback (most recent call last):
    ...
    store.errors.InvalidNameError: invalid speaker name '＠staff': a leading @ names a group, not a speaker
    """
    name = _clean(raw, "speaker")
    if _marked(name):
        raise InvalidNameError(f"invalid speaker name {name!r}: a leading @ names a group, not a speaker")
    return name


def group_name(raw: object) -> str:
    """A group's name without its ``@`` (``"@staff"`` and ``"staff"`` are the same group).

    >>> group_name("@staff"), group_name("staff")
    ('staff', 'staff')
    >>> group_name("@@ops")
    Traceback (most recent call last):
    ...
    store.errors.InvalidNameError: invalid group name '@@ops': a group is written with one plain @
    """
    name = _clean(raw, "group")
    if _marked(name) and not name.startswith("@"):
        raise InvalidNameError(f"invalid group name {raw!r}: a group is written with one plain @")
    name = name[1:].strip() if name.startswith("@") else name
    if not name or _marked(name):
        raise InvalidNameError(f"invalid group name {raw!r}: a group is written with one plain @")
    return name


def resource_name(raw: object) -> str:
    """A door, phone line or app: the same rule, ``@`` allowed."""
    return _clean(raw, "resource")


def principal(raw: object) -> tuple[str, str]:
    """Who a grant is for: ``("group", name)`` for ``@name``, else ``("speaker", name)``."""
    if isinstance(raw, str) and _marked(raw.strip()):
        return "group", group_name(raw)
    return "speaker", speaker_name(raw)


def name_key(name: str) -> str:
    """The identity of a name: compatibility form, case-folded, inner whitespace collapsed.

    >>> name_key("Ｍａｒｙ  Ann") == name_key("mary ann")
    True
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join(folded.split())
