"""Where the tests find the OCI runtime-spec schema: ``../shared/oci-runtime-spec`` (the
workplace's copy, which the issues name) when this checkout sits beside it, else the copy in
``tests/oci-runtime-spec/`` (the same files, checked equal when both are there)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_OCI_SCHEMA = REPO.parent / "shared" / "oci-runtime-spec"
VENDORED_OCI_SCHEMA = REPO / "tests" / "oci-runtime-spec"
OCI_SCHEMA = (SHARED_OCI_SCHEMA if (SHARED_OCI_SCHEMA / "config-schema.json").is_file()
              else VENDORED_OCI_SCHEMA)
