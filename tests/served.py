"""One way to learn where a `plan serve` process listens: the URL it prints on stderr."""
from __future__ import annotations

import re
import subprocess
import time

_URL = re.compile(r"on (http://127\.0\.0\.1:\d+)/v1")


def wait_for_url(proc: subprocess.Popen, timeout_s: float) -> str | None:
    """The http://127.0.0.1:PORT that ``proc`` (started with ``--port 0``, text stderr) announces, or None when
    it exits or ``timeout_s`` passes first."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            return None
        if m := _URL.search(line):
            return m.group(1)
    return None
