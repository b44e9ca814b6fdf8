#!/usr/bin/env python3
"""Sends frames into a TAP from the host side only (an AF_PACKET socket), for a TAP a VMM already holds.

usage: tap-send.py DEV COUNT PAYLOAD_BYTES
The TAP must be up. Each frame is a broadcast 14-byte header (ethertype 0x88B5) plus PAYLOAD_BYTES; what the
VMM does with them (reads them: tx packets; does not: tx dropped once the queue is full) is the TAP's to count.
Prints {"sent": n, "frame_bytes": b}.
"""
import json, socket, sys

dev, count, payload = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
raw.bind((dev, 0))
sent = 0
for _ in range(count):
    try:
        raw.send(b"\xff" * 6 + bytes.fromhex("020000000002") + b"\x88\xb5" + b"s" * payload)
        sent += 1
    except OSError:
        pass  # a full queue may refuse the send; the TAP's counters say what happened
print(json.dumps({"sent": sent, "frame_bytes": 14 + payload}))
