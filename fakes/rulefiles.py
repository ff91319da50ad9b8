"""Fault rules in files: TOML and JSON, both a list of tables named ``rule`` (the grammar: :mod:`fakes.rules`).

TOML is read with :mod:`tomllib` and written by the small emitter here (rules are flat:
strings, numbers, lists of numbers, one table of headers; a writer is a few lines and needs
no dependency); JSON with :mod:`json`. A CLI's ``--script FILE`` builds on
:func:`load_rules_file`. Errors name the place: ``faults.toml:7: rule 2: unknown field 'firts'``
(the line of the rule's ``[[rule]]`` header; JSON names the rule's position).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from sipharness.fakes.rules import Rule, RuleError

__all__ = ["load_rules", "load_rules_file", "load_rules_into", "dump_rules", "rule_lines"]

_MAX_FILE = 1024 * 1024  # a file of rules is a few lines; a runaway one is refused with its size


def load_rules(text: str, *, format: str = "toml", source: str = "<rules>") -> list[Rule]:
    """Rules from a TOML or JSON text holding a list of tables named ``rule``.

    Errors raise :class:`RuleError` naming ``source:line`` (the line of the rule's
    ``[[rule]]`` header in TOML; JSON names the rule's position).
    """
    fmt = format.lower()
    if fmt == "toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise RuleError(f"{source}: not TOML: {e}") from None
    elif fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RuleError(f"{source}:{e.lineno}: not JSON: {e.msg}") from None
    else:
        raise RuleError(f"format {format!r}: expected 'toml' or 'json'")
    if not isinstance(data, dict):
        raise RuleError(f"{source}: expected a table with a list named 'rule'")
    extra = sorted(set(data) - {"rule"})
    if extra:
        raise RuleError(f"{source}: unknown top-level key{'s' if len(extra) > 1 else ''} "
                        f"{', '.join(map(repr, extra))} (rules go in a list named 'rule')")
    items = data.get("rule", [])
    if not isinstance(items, list):
        raise RuleError(f"{source}: 'rule' must be a list of tables ([[rule]] in TOML)")
    lines = rule_lines(text, fmt)
    out = []
    for i, item in enumerate(items):
        try:
            out.append(Rule.from_dict(item))
        except (RuleError, TypeError) as e:
            where = f"{source}:{lines[i]}" if i in lines else source
            raise RuleError(f"{where}: rule {i + 1}: {e}") from None
    return out


def load_rules_file(path: str) -> list[Rule]:
    """Rules from ``path`` (``.json``: JSON, anything else: TOML)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return load_rules(text, format="json" if str(path).lower().endswith(".json") else "toml", source=str(path))


def load_rules_into(ruleset: Any, path: str) -> list[Any]:
    """Add the rules of the file ``path`` to a fake's ``ruleset`` (``srv.script``, ``dns.faults``), checked
    against its dialect (``--script FILE`` of the CLIs). Errors raise :class:`RuleError` naming ``path:line``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(_MAX_FILE + 1)
    except (OSError, UnicodeDecodeError) as e:
        raise RuleError(f"{path}:0: cannot read the rules: {getattr(e, 'strerror', None) or e}") from None
    if len(text) > _MAX_FILE:
        raise RuleError(f"{path}:0: larger than {_MAX_FILE} characters: not a file of rules")
    return ruleset.load(text, format="json" if str(path).lower().endswith(".json") else "toml", source=str(path))


def dump_rules(rules: Iterable[Rule], *, format: str = "toml") -> str:
    """The rules as TOML (``[[rule]]`` tables) or JSON (``{"rule": [...]}``); load_rules reads both back."""
    dicts = [r.to_dict() for r in rules]
    fmt = format.lower()
    if fmt == "json":
        return json.dumps({"rule": dicts}, indent=2, ensure_ascii=False) + "\n"
    if fmt != "toml":
        raise RuleError(f"format {format!r}: expected 'toml' or 'json'")
    out = ["# sipharness fault rules: the first matching rule, in this order, wins"]
    for d in dicts:
        out.append("")
        out.append("[[rule]]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in d.items())
    return "\n".join(out) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # finite (the Rule checked): "10.0", "1e-05" are TOML floats
    if isinstance(value, str):
        # a JSON string is a TOML basic string once DEL (allowed raw in JSON) is escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise RuleError(f"cannot write {value!r} to TOML")


def rule_lines(text: str, fmt: str) -> dict[int, int]:
    """Index of each rule → its line in the text (TOML: its ``[[rule]]`` header)."""
    if fmt != "toml":
        return {}
    lines: dict[int, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if re.match(r"^\s*\[\[\s*rule\s*\]\]\s*(#.*)?$", line):
            lines[len(lines)] = lineno
    return lines
