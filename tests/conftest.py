"""Test-wide settings: decisions recorded by the commands under test go to a fresh audit
store in a temporary folder, never to the user's own (``~/.local/share/cds-rules``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_AUDIT_DIR = Path(tempfile.mkdtemp(prefix="cds-rules-audit-"))


def pytest_configure() -> None:
    os.environ["CDS_RULES_AUDIT_URL"] = f"sqlite:///{_AUDIT_DIR / 'audit.sqlite'}"
    os.environ.pop("CDS_RULES_AUDIT_REDACT", None)
