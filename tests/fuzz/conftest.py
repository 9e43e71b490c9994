"""Fuzz / fault-injection targets (issue 13): every target counts the cases it ran and the cases that
failed; the counts are printed at the end of the run (and written as JSON to $LARA_FUZZ_REPORT if set).

Default run: a CI-sized sample per target with a fixed seed (hypothesis `derandomize`).
`python -m pytest tests/fuzz -m fuzz`: the full counts (FULL_CASES below)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pytest

_RECORDS: dict[str, "FuzzRecord"] = {}


@dataclass
class FuzzRecord:
    target: str
    cases: int = 0
    failures: int = 0
    examples: list = field(default_factory=list)      # first failing cases (description, problem)

    def ok(self) -> None:
        self.cases += 1

    def fail(self, case: str, problem: str) -> None:
        self.cases += 1
        self.failures += 1
        if len(self.examples) < 5:
            self.examples.append((case, problem))

    def check(self) -> None:
        """Fail the test if any case failed, listing the first ones."""
        assert self.failures == 0, (f"{self.target}: {self.failures} of {self.cases} cases failed; first: "
                                    + "; ".join(f"[{c}] {p}" for c, p in self.examples))


@pytest.fixture
def fuzz_record(request):
    name = request.node.name
    rec = _RECORDS.setdefault(name, FuzzRecord(name))
    return rec


def pytest_terminal_summary(terminalreporter):
    if not _RECORDS:
        return
    terminalreporter.section("fuzz / fault-injection targets (cases run / failures)")
    for r in _RECORDS.values():
        terminalreporter.write_line(f"{r.target}: {r.cases} cases, {r.failures} failures")
    out = os.environ.get("LARA_FUZZ_REPORT")
    if out:
        with open(out, "w") as f:
            json.dump({r.target: {"cases": r.cases, "failures": r.failures, "examples": r.examples}
                       for r in _RECORDS.values()}, f, indent=2)
