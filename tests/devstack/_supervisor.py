"""A small supervisor for tests: the devstack's own spawning and signal handling, with short
child processes instead of services. Writes the children's pids to argv[1] once they run.

`python -m tests.devstack._supervisor PIDFILE [slow]`: "slow" children take 60 s to stop
after SIGTERM (so that a second Ctrl+C arrives while the supervisor waits for them), and
write their index to PIDFILE with the suffix ".stopping" when it comes."""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

from devstack.processes import stop_on_signals
from devstack.stack import Stack, StackConfig

SLEEPER = "import time; time.sleep(600)"
# The slow child notes in the file named by $STOPPING that its SIGTERM came (the supervisor
# is stopping), then takes its time.
SLOW_TO_STOP = (
    "import os, signal, time\n"
    "def stopping(*_):\n"
    "    open(os.environ['STOPPING'], 'a').write(os.environ['CHILD'] + '\\n')\n"
    "    time.sleep(60)\n"
    "signal.signal(signal.SIGTERM, stopping)\n"
    "time.sleep(600)\n"
)


def main() -> int:
    pid_file = Path(sys.argv[1])
    code = SLOW_TO_STOP if sys.argv[2:] == ["slow"] else SLEEPER
    # Ctrl+C raises KeyboardInterrupt, as in a terminal's foreground job, even when the tests run
    # as a background job (a shell starts those with SIGINT ignored, and Python keeps that).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stop_on_signals()
    stack = Stack(StackConfig(data_dir=Path(tempfile.mkdtemp(prefix="supervisor-")), demo_kb=None))
    try:
        for index in range(3):
            stack._spawn(
                f"child-{index}", [sys.executable, "-c", code],
                env={"CHILD": str(index), "STOPPING": str(pid_file.with_suffix(".stopping"))},
            )
        time.sleep(0.5)  # the slow ones install their SIGTERM handler
        pid_file.write_text(" ".join(str(process.pid) for process in stack.processes.values()))
        while True:
            stack.supervise()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop(grace_s=120)


if __name__ == "__main__":
    sys.exit(main())
