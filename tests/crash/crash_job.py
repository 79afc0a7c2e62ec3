"""The feed job the crash tests kill and rerun: stage a fixed set of records, then submit.

    python crash_job.py JOB_FILE API_URL ACCESS_ID SECRET_KEY N_INDICATORS [ACTION]

Running it again on the same job file resumes: staging the same records again changes
nothing, and submit_all finishes what the job file says is pending.
"""

import sys

from streambatch import Batch
from streambatch.client import ApiConfig, Client, RetryPolicy

OWNER = "Demo Organization"
GROUPS = 20
DOCUMENTS = 8


def doc_content(xid: str) -> bytes:
    return f"content of {xid}\n".encode() * 50


def indicators(n: int):
    for i in range(n):
        value = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" if i % 2 else f"host{i}.crash.example.com"
        yield {"type": "Address" if i % 2 else "Host", "summary": value, "rating": i % 6, "confidence": i % 101,
               "tag": [{"name": f"tag{i % 3}"}], "attribute": [{"type": "Description", "value": f"record {i}"}],
               "associatedGroups": [{"groupXid": f"crash-group-{i % GROUPS}"}]}


def main() -> None:
    job, url, access_id, secret_key, n = sys.argv[1:6]
    action = sys.argv[6] if len(sys.argv) > 6 else "Create"
    client = Client(ApiConfig(url, access_id, secret_key),
                    retry=RetryPolicy(attempts=30, backoff=0.05, max_backoff=0.5, total=60))
    with Batch(OWNER, job, client=client, action=action, max_records=100, buffer_size=400, poll_interval=0.02,
               file_content=doc_content) as batch:
        for g in range(GROUPS):
            group = batch.adversary(f"crash adversary {g}", xid=f"crash-group-{g}")
            group.tag("crash")
            if g:
                group.association(f"crash-group-{g - 1}")
            batch.save(group)
        for d in range(DOCUMENTS):
            doc = batch.document(f"crash document {d}", f"doc{d}.txt", xid=f"crash-doc-{d}")
            doc.association(f"crash-group-{d}")
            batch.save(doc)
        batch.save_all(indicators(int(n)))
        batch.poll_policy.max_interval = 0.2
        batch.submit_all()


if __name__ == "__main__":
    main()
