"""Many stopped fake hypervisors with named vCPU threads, for the benchmarks (FakeHypervisors.ts).

Usage: fake-fleet.py N THREADS
Forks N children. Each names itself `vcpu-fake` (not a hypervisor's name: discovery must not list them, a
static listing does; with QEMU's `qemu-system-x86` it would, as QEMU, and a collector over discovery would
read both fleets), starts THREADS threads named like QEMU's vCPU threads (`CPU 0/KVM` ...: prctl PR_SET_NAME from inside each), and stops itself
(SIGSTOP stops every thread), so its counters hold still. Prints the children's pids as one JSON line
once all are stopped, then waits for stdin to close; each child dies with this process (PR_SET_PDEATHSIG).
Forking from one interpreter keeps 1,000 of them cheap (copy-on-write), unlike 1,000 interpreters.
"""

import ctypes
import gc
import json
import os
import signal
import sys
import threading

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1

libc = ctypes.CDLL(None, use_errno=True)


def set_name(name):
    if libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl PR_SET_NAME {name}")


def child(parent, threads):
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the launcher died before the line above
        os._exit(1)
    set_name("vcpu-fake")
    named = []
    for vcpu in range(threads):
        ready = threading.Event()

        def run(name=f"CPU {vcpu}/KVM", ready=ready):
            set_name(name)
            ready.set()
            threading.Event().wait()

        threading.Thread(target=run, daemon=True).start()
        named.append(ready)
    for ready in named:
        ready.wait()
    os.kill(os.getpid(), signal.SIGSTOP)
    threading.Event().wait()


def main(n, threads):
    threading.stack_size(256 * 1024)
    gc.freeze()  # fewer pages copied on write in the children
    parent = os.getpid()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                child(parent, threads)
            finally:
                os._exit(1)
        # returns once the child has stopped itself (or died)
        _, status = os.waitpid(pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            raise SystemExit(f"fake {pid} exited before stopping (status {status})")
        pids.append(pid)
    print(json.dumps(pids), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
