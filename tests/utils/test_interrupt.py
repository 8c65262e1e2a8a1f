"""Ctrl-C / SIGTERM stop a command even when Python swallows the KeyboardInterrupt (pvr.utils.interrupt)."""
import os
import subprocess
import sys
import textwrap
import time

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def run(code: str, timeout: float = 30, **env) -> tuple[subprocess.CompletedProcess, float]:
    t = time.time()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": SRC, **env})
    return proc, time.time() - t


# A __del__ that receives the signal: Python runs the handler inside it and swallows what it raises.
SWALLOW = """
    import os, signal, time
    from pvr.utils import interrupt

    class Bar:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            t = time.time()
            while time.time() - t < 0.2:  # the handler runs here, inside __del__
                pass

    {install}
    Bar()  # deleted at once: the KeyboardInterrupt is "ignored"
    try:
        for step in range(200):
            {check}
            time.sleep(0.01)
        print("loop finished")
    except KeyboardInterrupt:
        print(f"stopped at step {{step}}")
"""


def test_a_swallowed_interrupt_is_raised_again_by_check():
    proc, _ = run(SWALLOW.format(install="interrupt.install()", check="interrupt.check()"))
    assert "Exception ignored" in proc.stderr and "KeyboardInterrupt" in proc.stderr  # it really was swallowed
    assert proc.stdout.strip() == "stopped at step 0", proc.stdout + proc.stderr


def test_without_the_handler_the_same_interrupt_is_lost():
    """The failure the module exists for: Python's default handler loses the Ctrl-C."""
    proc, _ = run(SWALLOW.format(install="", check="interrupt.check()"))
    assert "Exception ignored" in proc.stderr
    assert proc.stdout.strip() == "loop finished"


def test_a_clean_up_that_hangs_is_ended_after_the_grace_period():
    code = """
        import os, signal, time
        from pvr.utils import interrupt
        interrupt.install()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            time.sleep(60)  # a clean-up that never ends
    """
    proc, dt = run(code, PVR_STOP_GRACE="1")
    assert proc.returncode == 130 and dt < 15
    assert "still stopping 1 s after SIGTERM" in proc.stderr


def test_a_second_signal_exits_at_once():
    code = """
        import os, signal, time
        from pvr.utils import interrupt
        interrupt.install()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(60)
    """
    proc, dt = run(code)
    assert proc.returncode == 130 and dt < 15
    assert "SIGINT again" in proc.stderr


def test_check_is_a_no_op_unless_installed():
    from pvr.utils import interrupt

    interrupt.check()  # library use (tests, notebooks): nothing installed, nothing raised
    assert not interrupt.requested()
