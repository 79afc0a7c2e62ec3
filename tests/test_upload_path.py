"""The Document/Report upload path carries the xid as the incumbent sends it: reserved
characters a path segment may hold (``:`` above all, as in ``fid:doc:2``) raw, the rest
percent-encoded; the upload lands either way."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_helpers import make_batch, tc  # noqa: F401

from streambatch.emulator import Emulator


@pytest.mark.parametrize("xid, sent", [
    ("fid:doc:2", "fid:doc:2"),
    ("doc@feed;v=1,x", "doc@feed;v=1,x"),
    ("doc with spaces", "doc%20with%20spaces"),
    ("doc?#%", "doc%3F%23%25"),
    ("dóc", "d%C3%B3c"),
])
def test_document_upload_path(tc: Emulator, tmp_path: Path, xid: str, sent: str) -> None:
    with make_batch(tc, tmp_path / "job.sqlite") as batch:
        batch.save(batch.document("Doc", "doc.txt", file_content=b"hello", xid=xid))
        batch.submit_all()
    uploads = [r for r in tc.requests if r["path"].endswith("/upload")]
    assert len(uploads) == 1
    assert uploads[0]["raw_uri"].split("?")[0] == f"/api/v2/groups/documents/{sent}/upload"
    stored = tc.store.group(tc.owner, xid)
    assert stored is not None and stored.get("fileName") == "doc.txt"
    assert tc.store.document(tc.owner, xid) == b"hello"
