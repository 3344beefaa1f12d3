"""A copy between descriptors (splice, sendfile, tee, copy_file_range) into relive's own
stdout or stderr. A write there is made with no other task running (the user sees those
in the order they complete), but a copy whose input is a pipe waits for its writer first:
`producer | grep -c pattern` with relive's stdout on /dev/null hung, because grep drains
its input with splice into /dev/null and the producer was never let run."""
from __future__ import annotations

import subprocess
import sys

from conftest import describe, run_relive

PRODUCER = ("import os, time\n"
            "for i in range(5):\n"
            "    os.write(1, b'a json/\\n')\n"
            "    time.sleep(0.05)\n")


def test_a_pipe_drained_by_splice_into_dev_null_records_and_replays(tmp_path):
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    trace = tmp_path / "t"
    quiet = dict(capture_output=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                 stdin=subprocess.DEVNULL, timeout=60)
    rec = run_relive("record", "-o", trace, "sh", "-c",
                     f"{sys.executable} {script} | grep -c json/", **quiet)
    assert rec.returncode == 0, describe(rec)
    rep = run_relive("replay", "--autopilot", trace, **quiet)
    assert rep.returncode == 0 and b"diverged" not in rep.stderr, describe(rep)
