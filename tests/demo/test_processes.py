"""Children are stopped with their whole process group, also on SIGTERM of the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from otel_adaprof.demo.processes import Children, descendants_alive

SPAWN_GRANDCHILD = textwrap.dedent("""
    import subprocess, sys, time
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    print(p.pid, flush=True)
    time.sleep(120)
""")


def test_stop_all_kills_children_and_grandchildren():
    with Children() as kids:
        proc = kids.start("parent", [sys.executable, "-c", SPAWN_GRANDCHILD], stdout_pipe=True)
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        assert descendants_alive([proc.pid, grandchild]) == [proc.pid, grandchild]
    # killed; the orphaned grandchild is reaped by init a moment later (on a busy machine,
    # with the suite on four workers, it was still listed right after the block)
    deadline = time.monotonic() + 5
    while descendants_alive([proc.pid, grandchild]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert descendants_alive([proc.pid, grandchild]) == []


def test_sigterm_to_the_parent_still_cleans_up(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from otel_adaprof.demo.processes import Children
        with Children() as kids:
            p = kids.start("c", [sys.executable, "-c", {SPAWN_GRANDCHILD!r}], stdout_pipe=True)
            print(p.pid, p.stdout.readline().decode().strip(), flush=True)
            time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    pids = [int(x) for x in parent.stdout.readline().split()]
    assert len(descendants_alive(pids)) == 2
    parent.send_signal(signal.SIGTERM)
    parent.wait(20)
    deadline = time.monotonic() + 5
    while descendants_alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert descendants_alive(pids) == []
    parent.stdout.close()
    assert os.path.exists("/proc/self")
