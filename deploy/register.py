"""Register the sample accounts through the API and run a first polling cycle.

`python -m deploy.register` (the compose `demo` profile runs it once the API
is healthy). Reads API_URL and API_ADMIN_TOKEN; accounts that exist already
are left as they are, so running it again is harmless.
"""

from __future__ import annotations

import os
import sys

from deploy.api_client import ApiClient

READY_TIMEOUT_SECONDS = 120.0
CYCLE_TIMEOUT_SECONDS = 300.0


def main() -> None:
    client = ApiClient(
        os.environ.get("API_URL", "http://127.0.0.1:8000"),
        os.environ["API_ADMIN_TOKEN"],
    )
    client.wait_ready(READY_TIMEOUT_SECONDS)
    created = client.register_sample_accounts()
    print(f"registered accounts: {', '.join(created) or 'none new'}", flush=True)

    task = client.wait_for_task(client.start_cycle(), CYCLE_TIMEOUT_SECONDS)
    print(f"polling cycle {task['task_id']}: {task['status']}", flush=True)
    sys.exit(0 if task["status"] == "succeeded" else 1)


if __name__ == "__main__":
    main()
