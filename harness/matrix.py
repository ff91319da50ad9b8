"""The conformance matrix: rule × stack, generated from report-mode runs (``docs/conformance-matrix.md``).

    python -m sipharness.harness.matrix            # writes docs/conformance-matrix.md and docs/<stack>.md
    python -m sipharness.harness.matrix --check    # exit 1 when the committed docs are not what the runs make
    python -m sipharness.harness.matrix trim FILE  # a run's JUnit XML without failure bodies (to commit)

Why a module of the package rather than a script under ci/: it reads the runs with the same
property names and verdicts as the plugin (:mod:`harness.report`: ``sipharness.outcome``,
``.rule``, ``.detail``, ``.scenario``, ``.not_expressible``; :func:`report.verdict`), the
scenario titles of :mod:`harness.coverage` and the translation table of :mod:`harness.translation`,
so no fact is spelt twice, and a project test checks it like any other code.

Inputs (all committed, so the docs can be checked against them): ``docs/evidence/runs/<stack>.xml``,
the ``--junitxml`` of one report-mode run per stack (trimmed: the failure bodies with their ladders
are left out, the one-line details stay); ``docs/evidence/<stack>/*.md``, excerpts of the stack's
own log that verify a kind of finding without the harness, each naming the tests it covers in a
``<!-- tests: GLOB ... -->`` line; ``docs/templates/<stack>.md``, the hand-written part of a stack's
page (how it is driven), to which its generated results are appended.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from . import report as rep
from .coverage import SCENARIOS
from .translation import markdown as translation_table

__all__ = ["STACKS", "Run", "read_run", "trim", "render_matrix", "render_stack_page", "generate", "main"]

#: columns of the matrix: DUT kind → name (the bundled phone is the reference every rule is written for)
STACKS = {"bundled": "bundled phone", "baresip": "baresip 1.0.0", "pjsua": "PJSIP 2.15.1", "linphone": "liblinphone 5.1.65"}
_EVIDENCE_TESTS = re.compile(r"<!--\s*tests:\s*(.*?)\s*-->", re.S)


@dataclass
class Evidence:
    path: str  # relative to docs/
    title: str
    patterns: list[str]

    def covers(self, nodeid: str) -> bool:
        return any(fnmatch.fnmatchcase(nodeid, p) for p in self.patterns)


@dataclass
class Run:
    """One stack's report-mode run: its results by nodeid, when it ran, and its evidence files."""

    stack: str
    results: dict[str, rep.TestResult] = field(default_factory=dict)
    timestamp: str = ""
    evidence: list[Evidence] = field(default_factory=list)

    def cell(self, nodeid: str) -> str:
        r = self.results.get(nodeid)
        if r is None:
            return "not run"
        word = rep.verdict(r)
        if word == "met":
            return "met"
        if word == "not expressible":
            return "not expressible: " + _keys(r.detail)
        if word == "skipped":
            return "skipped: " + _short(r.detail, 90)
        text = {"finding": "**finding**", "lab": "lab problem", "error": "harness error"}[word] + ": " + _short(r.detail)
        links = [f"[{e.title}]({e.path})" for e in self.evidence if e.covers(nodeid)]
        return text + (" (evidence: " + ", ".join(links) + ")" if links else "")

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("met", "finding", "not expressible", "skipped", "lab", "error"), 0)
        for r in self.results.values():
            out[rep.verdict(r)] += 1
        return out


def _short(text: str, limit: int = 160) -> str:
    line = " ".join((text or "").split()).replace("|", "\\|")
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _keys(reason: str) -> str:
    """``account.1.x = 1; account.1.y = 2`` out of a NotExpressible message."""
    body = reason.split(": ", 1)[1] if ": " in reason else reason
    keys = [part.split(" (", 1)[0].strip() for part in body.split("; ")]
    return ", ".join(f"`{k}`" for k in keys if k)


def _nodeid(case: ET.Element) -> str:
    classname, name = case.get("classname", ""), case.get("name", "")
    parts = classname.split(".")
    # pytest's junit: "suites.test_x" (module) or "suites.test_x.TestClass" (a class in it)
    for i in range(len(parts), 0, -1):
        if parts[i - 1].startswith("test_"):
            return "/".join(parts[:i]) + ".py::" + "::".join(parts[i:] + [name])
    return f"{classname}::{name}"


def read_run(path: str, stack: str) -> Run:
    """A run from its JUnit XML (pytest's ``--junitxml``, as rewritten by the plugin)."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    run = Run(stack, timestamp=(suites[0].get("timestamp", "") if suites else ""))
    for suite in suites:
        for case in suite.findall("testcase"):
            props = [(p.get("name"), p.get("value")) for p in case.iter("property")]
            skipped = case.find("skipped")
            failed = case.find("failure") is not None or case.find("error") is not None
            nodeid = _nodeid(case)
            fields = {"skipped": skipped is not None, "failed": failed}
            if skipped is not None and not any(k == rep.DETAIL_PROPERTY for k, _ in props):
                fields["detail"] = skipped.get("message", "")
            result = rep.result_of(nodeid, props, **fields)
            if result.not_expressible:
                result = rep.TestResult(**{**result.__dict__,
                                           "detail": dict(props).get(rep.NOT_EXPRESSIBLE_PROPERTY, result.detail)})
            run.results[nodeid] = result
    return run


def trim(path: str) -> None:
    """Rewrite a JUnit XML file without failure/error bodies and captured output (messages and properties stay)."""
    tree = ET.parse(path)
    for case in tree.getroot().iter("testcase"):
        for el in list(case):
            if el.tag in ("failure", "error", "skipped"):
                el.text = None
            elif el.tag in ("system-out", "system-err"):
                case.remove(el)
        for p in case.iter("property"):
            if p.get("name") == rep.PREFLIGHT_PROPERTY:
                p.set("value", re.sub(r"pid \d+", "pid N", p.get("value", "")))
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _evidence(docs: str, stack: str) -> list[Evidence]:
    folder = os.path.join(docs, "evidence", stack)
    out = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".md"):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                text = f.read()
            m = _EVIDENCE_TESTS.search(text)
            title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("# ")), name)
            out.append(Evidence(f"evidence/{stack}/{name}", title, m.group(1).split() if m else []))
    return out


def load(docs: str) -> dict[str, Run]:
    runs = {}
    for stack in STACKS:
        path = os.path.join(docs, "evidence", "runs", f"{stack}.xml")
        if os.path.isfile(path):
            run = read_run(path, stack)
            run.evidence = _evidence(docs, stack)
            runs[stack] = run
    return runs


def _headline(runs: dict[str, Run]) -> list[str]:
    lines = ["| stack | run | met | findings | not expressible | skipped | lab problems | harness errors |",
             "|---|---|---|---|---|---|---|---|"]
    for stack, name in STACKS.items():
        run = runs.get(stack)
        if run is None:
            lines.append(f"| {name} | not run | | | | | | |")
            continue
        c = run.counts()
        lines.append(f"| {name} | {run.timestamp[:16].replace('T', ' ')} | {c['met']} | {c['finding']} | "
                     f"{c['not expressible']} | {c['skipped']} | {c['lab']} | {c['error']} |")
    return lines


def _tests_by_scenario(runs: dict[str, Run]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {sid: [] for sid in SCENARIOS}
    for run in runs.values():
        for nodeid, r in run.results.items():
            sid = r.scenario if r.scenario in out else "other"
            if nodeid not in out.setdefault(sid, []):
                out[sid].append(nodeid)
    return {sid: sorted(ids) for sid, ids in out.items() if ids}


def render_matrix(runs: dict[str, Run]) -> str:
    present = [s for s in STACKS if s in runs]
    lines = ["# Conformance matrix: what each SIP stack does when its servers die", "",
             "Generated by `python -m sipharness.harness.matrix` from one report-mode run of the suites per stack "
             "(`docs/evidence/runs/<stack>.xml`, JUnit XML with the plugin's `sipharness.*` properties); do not edit "
             "by hand. Each cell is one test of `suites/` (a rule of [the SPEC](spec.md)) against one stack: **met**; "
             "**finding** (the rule it broke, and what it did instead); **not expressible** (the stack has no setting "
             "for a `.cfg` key the test needs: it was never asked, so this is not a finding; the keys are named); "
             "skipped (the test cannot run against a phone in another process). The third-party stacks ran in the "
             "lab-in-a-box: each in a private network namespace with the fake DNS on 127.0.0.53:53, on the real "
             "clock (SPEC §9 short values). Evidence links go to the stack's own log, read without the harness.", "",
             "## Headline", ""] + _headline(runs) + ["", "## Per scenario (met / findings / not expressible)", "",
             "| id | scenario | " + " | ".join(STACKS[s] for s in present) + " |",
             "|---|---|" + "---|" * len(present)]
    by_sid = _tests_by_scenario(runs)
    for sid, title in SCENARIOS.items():
        cells = []
        for s in present:
            v = [rep.verdict(runs[s].results[n]) for n in by_sid.get(sid, []) if n in runs[s].results]
            cells.append(f"{v.count('met')} / {v.count('finding')} / {v.count('not expressible')}"
                         + (f" ({v.count('skipped')} skipped)" if v.count("skipped") else "") if v else "–")
        lines.append(f"| {sid} | {title} | " + " | ".join(cells) + " |")
    lines += ["", "## Per rule", ""]
    for sid, ids in by_sid.items():
        lines += [f"### {sid}: {SCENARIOS.get(sid, 'tests without a scenario')}", "",
                  "| test | " + " | ".join(STACKS[s] for s in present) + " |", "|---|" + "---|" * len(present)]
        for nodeid in ids:
            lines.append(f"| `{nodeid.split('/', 1)[-1]}` | " + " | ".join(runs[s].cell(nodeid) for s in present) + " |")
        lines.append("")
    lines += ["## How each `.cfg` key reaches each stack", "",
              "`harness/translation.py` holds this table; a key marked not expressible makes the tests that write "
              "it (with another value than the accepted one, the SPEC §1 default) skip as *not expressible*.", "",
              translation_table().rstrip(), ""]
    ev = [(s, e) for s in present for e in runs[s].evidence]
    if ev:
        lines += ["## Evidence from the stacks' own logs", ""]
        lines += [f"- {STACKS[s]}: [{e.title}]({e.path})" for s, e in ev]
        lines.append("")
    return "\n".join(lines)


def render_stack_page(template: str, run: Run | None, stack: str) -> str:
    name = STACKS[stack]
    lines = [template.rstrip(), "", f"## What {name} got (generated by `python -m sipharness.harness.matrix`)", ""]
    if run is None:
        return "\n".join(lines + ["No run recorded yet (`docs/evidence/runs/" + stack + ".xml`).", ""])
    c = run.counts()
    lines += [f"One report-mode run ({run.timestamp[:16].replace('T', ' ')} UTC, `docs/evidence/runs/{stack}.xml`): "
              f"{c['met']} met, {c['finding']} findings, {c['not expressible']} not expressible, {c['skipped']} "
              f"skipped, {c['lab']} lab problems, {c['error']} harness errors. The whole matrix: "
              "[conformance-matrix.md](conformance-matrix.md).", "", "```"]
    lines += rep.rule_table(run.results.values(), SCENARIOS) + ["```", "", "### Findings (one line each: what it did)", ""]
    findings = [(n, r) for n, r in sorted(run.results.items()) if rep.verdict(r) == "finding"]
    lines += [f"- {r.rule or r.scenario}: `{n.split('/', 1)[-1]}`: {run.cell(n).removeprefix('**finding**: ')}"
              for n, r in findings] or ["None."]
    nes = [(n, r) for n, r in sorted(run.results.items()) if rep.verdict(r) == "not expressible"]
    lines += ["", "### Not expressible (never asked: not findings)", ""]
    lines += [f"- `{n.split('/', 1)[-1]}`: {_keys(r.detail)}" for n, r in nes] or ["None."]
    others = [(n, r) for n, r in sorted(run.results.items()) if rep.verdict(r) in ("lab", "error")]
    if others:
        lines += ["", "### Lab problems and harness errors", ""]
        lines += [f"- `{n.split('/', 1)[-1]}`: {run.cell(n)}" for n, r in others]
    if run.evidence:
        lines += ["", "### Evidence from its own log", ""]
        lines += [f"- [{e.title}]({e.path})" for e in run.evidence]
    return "\n".join(lines) + "\n"


def generate(docs: str) -> dict[str, str]:
    """Path → text of every generated document."""
    runs = load(docs)
    out = {os.path.join(docs, "conformance-matrix.md"): render_matrix(runs)}
    for stack in STACKS:
        template = os.path.join(docs, "templates", f"{stack}.md")
        if os.path.isfile(template):
            with open(template, encoding="utf-8") as f:
                out[os.path.join(docs, f"{stack}.md")] = render_stack_page(f.read(), runs.get(stack), stack)
    return out


def _default_docs() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["trim"]:
        for path in args[1:]:
            trim(path)
        return 0
    parser = argparse.ArgumentParser(prog="python -m sipharness.harness.matrix", description=__doc__.split("\n")[0])
    parser.add_argument("--docs", default=_default_docs(), help="the docs folder (default: the checkout's docs/)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated document differs from the file")
    opts = parser.parse_args(args)
    stale = []
    for path, text in generate(opts.docs).items():
        old = open(path, encoding="utf-8").read() if os.path.isfile(path) else None
        if old == text:
            continue
        if opts.check:
            stale.append(path)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {path}")
    if stale:
        print("not what the runs make (run python -m sipharness.harness.matrix): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
