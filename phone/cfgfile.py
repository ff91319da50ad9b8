"""The vendor ``.cfg`` text format: read it line by line into checked settings, write it back (SPEC §1).

Why hand-written: the vendor format looks like INI but is not. There are no sections, keys are
case-sensitive and dotted (``account.1.sip_server.2.port``), ``#`` starts a comment only at the
start of a line (a password may contain ``#`` or ``;``), the first line is a ``#!version:``
marker, and there are no continuation lines or interpolation. ``configparser`` would lowercase
keys, demand a section header and treat ``:``/``;`` specially, so a twenty-line tokenizer is
simpler and exact.

This module knows the text, not the phone: it turns lines into :class:`Parsed` settings (each a
row of ``parameters.PARAMETERS`` with its account/server index and parsed value) plus the
unknown keys, and every problem into a :class:`ConfigIssue` at ``file:line``. ``config.py``
applies them to a ``PhoneConfig`` (all or nothing) and decides what to write.

Choices where the SPEC and the guide are silent (all [interp]):

- Unknown keys (real provisioning files carry hundreds) are kept verbatim, in file order, last
  value wins, with one warning per key per file (none for a key the base config already kept).
- An empty value for a non-string key (integer, address, ``srv_select``) resets it to its
  default, as vendor phones do; for ``invite_retry_counts`` the default is "unset".
- Whitespace trimmed around keys and values is space, tab and CR; lines end at LF (CRLF works).
  A UTF-8 BOM is skipped. A missing ``#!version:1.0.0.1`` first line is a warning.
- A key set twice: the later line wins (SPEC §1), with a warning naming both lines.
- A control character inside a key or value (NUL, a CR that does not end the line, ESC ...;
  TAB is allowed) is an error at that line: no phone field needs one, and a CR or NUL in a
  password or address is a provisioning mistake that would otherwise be sent on the wire.
- Bounds: a file of more than :data:`MAX_CONFIG_BYTES` or a line of more than
  :data:`MAX_LINE_CHARS` is refused with its size (real provisioning files are well under
  200 KB), so memory stays proportionate; only the first :data:`MAX_UNKNOWN_WARNINGS`
  unknown keys get a warning each, then one warning counts the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from sipharness.phone.parameters import InvalidValue, Parameter, match_key

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_LINE_CHARS",
    "MAX_UNKNOWN_WARNINGS",
    "VERSION_LINE",
    "ConfigError",
    "ConfigIssue",
    "Parsed",
    "format_cfg",
    "read_cfg",
    "read_setting",
]

VERSION_LINE = "#!version:1.0.0.1"  # SPEC §1 [seed-vendor convention]

_WS = " \t\r"  # what is trimmed around keys and values [interp]
MAX_CONFIG_BYTES = 2 * 1024 * 1024  # [interp] a .cfg larger than this is refused (real ones: < 200 KB)
MAX_LINE_CHARS = 8192  # [interp] a longer line is refused
MAX_UNKNOWN_WARNINGS = 100  # unknown keys warned one by one; the rest in one count
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0/C1 controls but TAB
_UNKNOWN = "unknown key, kept but not used"


# --------------------------------------------------------------------------- issues / errors


@dataclass(frozen=True)
class ConfigIssue:
    """One problem (error or warning) found at ``filename:line``; ``message`` carries the range."""

    filename: str
    line: int
    key: str
    value: str
    message: str

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}"
        if self.key:
            value = self.value if len(self.value) <= 300 else self.value[:297] + "..."
            return f"{where}: {self.key} = {value}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """A configuration was refused; ``errors`` lists every problem found (nothing was applied)."""

    def __init__(self, errors: list[ConfigIssue]):
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    def __reduce__(self):
        return (type(self), (self.errors,))


# --------------------------------------------------------------------------- reading


@dataclass
class Parsed:
    """What a text (or one ``set``) asks for: the settings in order, the unknown keys, the issues."""

    errors: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)
    sets: list[tuple[Parameter, int | None, int | None, Any]] = field(default_factory=list)
    unknown: dict[str, str] = field(default_factory=dict)  # key → last value, in first-seen order
    lines: dict[str, int] = field(default_factory=dict)  # key → the line that last set it
    unknown_warned: int = 0
    unknown_silent: int = 0


def read_cfg(text: str | bytes, filename: str, known_unknown: dict[str, str], *,
             max_bytes: int = MAX_CONFIG_BYTES, max_line: int = MAX_LINE_CHARS) -> Parsed:
    """The settings of a whole ``.cfg`` text, or one :class:`ConfigError` listing every error.

    A text of more than ``max_bytes`` (UTF-8) is refused whole; a line of more than ``max_line``
    characters is an error at its line. ``known_unknown``: unknown keys already kept (no warning)."""
    size = len(text) if isinstance(text, (bytes, bytearray)) else _utf8_size(text, max_bytes)
    if size > max_bytes:
        raise ConfigError([ConfigIssue(filename, 0, "", "", f"{size} bytes or more (valid: a .cfg of at most "
                                                            f"{max_bytes} bytes)")])
    if isinstance(text, (bytes, bytearray)):
        text = _decode(bytes(text), filename)
    parsed = _parse_text(text, filename, known_unknown, max_line)
    if parsed.errors:
        raise ConfigError(parsed.errors)
    return parsed


def read_setting(key: Any, text: str, known_unknown: dict[str, str]) -> Parsed:
    """One ``key = text`` as if it were a file line (issues located as ``<set>:0``), or ConfigError."""
    issues: list[ConfigIssue] = []
    k = key.strip(_WS) if isinstance(key, str) else ""
    v = text.strip(_WS)
    if not k or k.startswith("#") or any(c in k for c in "=\n"):
        issues.append(ConfigIssue("<set>", 0, str(key), v,
                                  "not a valid key (valid: non-empty, no '=', no newline, not starting with '#')"))
    elif "\n" in v:
        issues.append(ConfigIssue("<set>", 0, k, v, "value spans lines (valid: one line of text)"))
    elif _control(k + "=" + v) is not None:
        issues.append(ConfigIssue("<set>", 0, k, _CONTROL.sub("?", v),
                                  f"{_control(k + '=' + v)} (valid: text without control characters; TAB allowed)"))
    if issues:
        raise ConfigError(issues)
    parsed = Parsed()
    _parse_entry(k, v, "<set>", 0, parsed, known_unknown)
    if parsed.errors:
        raise ConfigError(parsed.errors)
    return parsed


def _parse_entry(key: str, value: str, filename: str, lineno: int, out: Parsed,
                 known_unknown: dict[str, str]) -> None:
    before = out.lines.get(key)
    if before is not None:  # SPEC §1: later lines override earlier ones; said, not silent
        out.warnings.append(ConfigIssue(filename, lineno, key, value,
                                        f"also set at line {before}: this later line wins"))
    if lineno:
        out.lines[key] = lineno
    match = match_key(key)
    if match is None or match[1] is not None:
        if key not in out.unknown and key not in known_unknown:
            if out.unknown_warned < MAX_UNKNOWN_WARNINGS:
                out.unknown_warned += 1
                why = f"{match[1]}: " if match is not None else ""
                out.warnings.append(ConfigIssue(filename, lineno, key, value, why + _UNKNOWN))
            else:
                out.unknown_silent += 1
        out.unknown[key] = value
        return
    param, _, x, y = match
    if value == "":
        out.sets.append((param, x, y, param.default))  # [interp] empty = default, as vendor phones do
        return
    try:
        parsed, warning = param.parse(value)
    except InvalidValue as exc:
        out.errors.append(ConfigIssue(filename, lineno, key, value, f"{exc} (valid: {param.range_text})"))
        return
    if warning:
        out.warnings.append(ConfigIssue(filename, lineno, key, value, f"{warning} (valid: {param.range_text})"))
    out.sets.append((param, x, y, parsed))


def _lines(text: str):
    """(line number, line) without splitting the whole text at once (memory: one line at a time)."""
    start, lineno, n = 0, 1, len(text)
    while start <= n:
        end = text.find("\n", start)
        if end < 0:
            end = n
        yield lineno, text[start:end]
        start, lineno = end + 1, lineno + 1


def _control(text: str) -> str | None:
    """A description of the first control character in ``text`` (TAB aside), or None."""
    m = _CONTROL.search(text)
    if m is None:
        return None
    names = {"\x00": "NUL", "\r": "CR", "\x1b": "ESC", "\x7f": "DEL"}
    ch = m.group()
    return f"{names.get(ch, 'control character')} (U+{ord(ch):04X}) at column {m.start() + 1}"


def _parse_text(text: str, filename: str, known_unknown: dict[str, str], max_line: int) -> Parsed:
    out = Parsed()
    if text.startswith("\ufeff"):
        text = text[1:]
    first = text[:text.find("\n")] if "\n" in text[:max_line + 1] else text[:max_line + 1]
    if first.strip(_WS) != VERSION_LINE:
        out.warnings.append(ConfigIssue(filename, 1, "", "",
                                        f"first line is not {VERSION_LINE!r} (vendor convention); accepted"))
    for lineno, raw in _lines(text):
        if len(raw) > max_line:
            out.errors.append(ConfigIssue(filename, lineno, "", "",
                                          f"line of {len(raw)} characters (valid: at most {max_line})"))
            continue
        line = raw.strip(_WS)
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq:
            shown = line if len(line) <= 60 else line[:57] + "..."
            out.errors.append(ConfigIssue(filename, lineno, "", "",
                                          f"{shown!r} is not a comment and has no '=' "
                                          "(valid: 'key = value', '# comment' or a blank line)"))
            continue
        key, value = key.strip(_WS), value.strip(_WS)
        if not key:
            out.errors.append(ConfigIssue(filename, lineno, "", value, "empty key before '=' (valid: 'key = value')"))
            continue
        bad = _control(key + "=" + value)
        if bad is not None:
            out.errors.append(ConfigIssue(filename, lineno, key, _CONTROL.sub("?", value),
                                          f"{bad} (valid: text without control characters; TAB allowed)"))
            continue
        _parse_entry(key, value, filename, lineno, out, known_unknown)
    if out.unknown_silent:
        out.warnings.append(ConfigIssue(filename, 0, "", "",
                                        f"{out.unknown_silent} more unknown keys (not listed one by one), "
                                        "kept but not used"))
    return out


def _decode(data: bytes, filename: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigIssue(filename, line, "", "",
                                       f"not UTF-8 at byte offset {exc.start} (valid: UTF-8 text)")]) from None


def _utf8_size(text: str, limit: int) -> int:
    """The UTF-8 size of ``text`` if it may be within ``limit``, else a number above it (cheap)."""
    if len(text) > limit:
        return len(text)
    if len(text) * 4 <= limit or text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------- writing


def format_cfg(entries: Iterable[tuple[str, str]], comment: str) -> str:
    """``.cfg`` text: the version line, ``comment`` (a ``#`` line), then one ``key = value`` a line."""
    out = [VERSION_LINE, comment]
    out.extend(f"{key} = {value}" for key, value in entries)
    return "\n".join(out) + "\n"
