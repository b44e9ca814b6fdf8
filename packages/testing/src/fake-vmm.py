"""A stand-in hypervisor process for the process-side tests: named threads, memory, disk writes.

Options (each may be repeated or left out):
  --thread NAME[:busy]   start a thread named NAME (prctl PR_SET_NAME from inside it); busy ones spin
  --unnamed N            start N threads that keep the process's name (QEMU without debug-threads=on)
  --alloc-mib N          allocate and touch N MiB of anonymous memory
  --hugetlb N            map N hugetlb pages (MAP_HUGETLB) and touch each

It prints one JSON line {"pid", "threads": {name: tid}, "hugetlb_error"} once ready, then reads commands
from stdin, answering each with one JSON line:
  write DIR MIB          write MIB MiB to a new file in DIR with O_DIRECT, then fsync
  replace NAME           end the thread NAME and start another with the same name
  add NAME               start one more (idle) thread named NAME
"""

import ctypes
import json
import mmap
import os
import sys
import threading

PR_SET_NAME = 15
MAP_HUGETLB = 0x40000
MIB = 1024 * 1024
HUGE_PAGE = 2 * MIB

libc = ctypes.CDLL(None, use_errno=True)
threads = {}  # name -> (tid, stop event)
keep = []  # memory kept alive


def named_thread(name, busy):
    ready = threading.Event()
    stop = threading.Event()
    box = {}

    def run():
        if libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0) != 0:
            box["error"] = os.strerror(ctypes.get_errno())
        box["tid"] = threading.get_native_id()
        ready.set()
        if busy:
            n = 0
            while not stop.is_set():
                for _ in range(10000):
                    n += 1
        else:
            stop.wait()

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    if "error" in box:
        raise SystemExit(f"prctl failed: {box['error']}")
    threads[name] = (box["tid"], stop)
    return box["tid"]


def unnamed_thread():
    ready = threading.Event()
    stop = threading.Event()

    def run():
        # Python 3.14+ names threads itself: give this one the process's name back.
        comm = open("/proc/self/comm", "rb").read().strip()
        libc.prctl(PR_SET_NAME, comm, 0, 0, 0)
        ready.set()
        stop.wait()

    threading.Thread(target=run, daemon=True).start()
    ready.wait()


def write_direct(directory, mib):
    buffer = mmap.mmap(-1, MIB)  # page-aligned, as O_DIRECT requires
    buffer.write(b"\xa5" * MIB)
    path = os.path.join(directory, f"disk-{os.getpid()}-{len(os.listdir(directory))}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    try:
        for _ in range(mib):
            os.write(fd, buffer)
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"path": path, "bytes": mib * MIB}


def main(argv):
    hugetlb_error = None
    i = 0
    while i < len(argv):
        option, value = argv[i], argv[i + 1]
        i += 2
        if option == "--thread":
            name, _, mode = value.partition(":")
            named_thread(name, mode == "busy")
        elif option == "--unnamed":
            for _ in range(int(value)):
                unnamed_thread()
        elif option == "--alloc-mib":
            block = bytearray(int(value) * MIB)
            for offset in range(0, len(block), 4096):
                block[offset] = 1
            keep.append(block)
        elif option == "--hugetlb":
            size = int(value) * HUGE_PAGE
            try:
                huge = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_HUGETLB)
                for offset in range(0, size, HUGE_PAGE):
                    huge[offset] = 1
                keep.append(huge)
            except OSError as error:
                hugetlb_error = str(error)
        else:
            raise SystemExit(f"unknown option {option}")
    tids = {name: tid for name, (tid, _) in threads.items()}
    print(json.dumps({"pid": os.getpid(), "threads": tids, "hugetlb_error": hugetlb_error}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "write":
            try:
                answer = write_direct(words[1], int(words[2]))
            except OSError as error:
                answer = {"error": str(error)}
        elif words[0] == "replace":
            old_tid, stop = threads.pop(words[1])
            stop.set()
            # the old thread is gone once its task directory is
            while os.path.exists(f"/proc/self/task/{old_tid}"):
                threading.Event().wait(0.01)
            answer = {"old": old_tid, "new": named_thread(words[1], False)}
        elif words[0] == "add":
            answer = {"new": named_thread(words[1], False)}
        else:
            answer = {"error": f"unknown command {words[0]}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
