"""Invalid-ruleset golden cases: each file states the errors it must produce in its header.

See ``tests/invalid_rulesets/README.md`` for the format.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_rules.errors import CdsRulesError

__all__ = ["assert_errors_match", "case_header", "cases"]


def case_header(path: Path) -> dict[str, Any]:
    """The YAML of a case's leading comment, from its first ``expected:``/``xfail:`` line."""
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line[2:] if line.startswith("# ") else line[1:]
        if lines or text.startswith(("expected:", "xfail:")):
            lines.append(text)
    header = yaml.safe_load("\n".join(lines)) or {}
    expected = header.get("expected")
    if not expected or not all("code" in item and "line" in item for item in expected):
        raise ValueError(f"{path}: the header needs `expected:` errors with `code` and `line`")
    return dict(header)


def cases(folder: Path) -> list[Any]:
    params = []
    for path in sorted(folder.glob("*.yaml")):
        header = case_header(path)
        marks = []
        if "xfail" in header:
            marks.append(pytest.mark.xfail(strict=True, reason=header["xfail"]))
        params.append(pytest.param(path, header["expected"], id=path.stem, marks=marks))
    return params


def assert_errors_match(errors: Sequence[CdsRulesError], expected: list[dict[str, Any]]) -> None:
    """Every expected error is reported, nothing else; each compared on the keys it states."""

    def order(item: dict[str, Any]) -> tuple[int, str, int]:
        return (item.get("line") or 0, item["code"], item.get("column") or 0)

    actual = sorted((error.to_dict() for error in errors), key=order)
    wanted = sorted(expected, key=order)
    assert [(a["code"], a["line"]) for a in actual] == [(w["code"], w["line"]) for w in wanted], (
        "\n".join(str(error) for error in errors)
    )
    assert [{key: a[key] for key in w} for a, w in zip(actual, wanted, strict=True)] == wanted
