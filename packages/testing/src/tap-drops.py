#!/usr/bin/env python3
"""Makes a TAP drop frames on their way into the "guest": the guest holds the TAP's fd but never reads it.

usage: tap-drops.py DEV COUNT PAYLOAD_BYTES
The TAP's queue is cut to 2 frames (txqueuelen, before the fd is attached: the queue is sized then), then
COUNT frames are sent into the TAP through an AF_PACKET socket: those beyond the queue are dropped by the TAP
(its tx_dropped grows: guest receive backpressure). Prints {"sent_to_guest": n, "frame_bytes": b}.
"""
import fcntl, json, os, socket, struct, subprocess, sys, time

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
ETHERTYPE = b"\x88\xb5"

dev, count, payload = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
subprocess.run(["ip", "link", "set", "dev", dev, "txqueuelen", "2"], check=True)
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TAP | IFF_NO_PI))
subprocess.run(["ip", "link", "set", "dev", dev, "up"], check=True)
time.sleep(0.2)
guest_mac = bytes.fromhex("020000000001")
host_mac = bytes.fromhex(open(f"/sys/class/net/{dev}/address").read().strip().replace(":", ""))
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
raw.bind((dev, 0))
sent = 0
for _ in range(count):
    try:
        raw.send(guest_mac + host_mac + ETHERTYPE + b"d" * payload)
        sent += 1
    except OSError:
        pass  # a full queue may also refuse the send; the TAP's own counters say what happened
print(json.dumps({"sent_to_guest": sent, "frame_bytes": 14 + payload}))
