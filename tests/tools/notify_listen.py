#!/usr/bin/env python3
"""A stand-in for systemd's notify socket, for tests/integration/test_deploy.sh.

    python3 tests/tools/notify_listen.py SOCKET SECONDS [READYZ_URL]

Binds an AF_UNIX datagram socket at SOCKET (a path, or @name for the
abstract namespace, as $NOTIFY_SOCKET spells it) and prints every datagram
it receives, one line each: milliseconds since it started, a tab, then the
message with its newlines written as '|'.  When a message holds READY=1 and
READYZ_URL is given, it at once asks that URL and prints "readyz STATUS"
(the node promises /readyz answers 200 by the time it says READY=1).
It stops after SECONDS, or 1 s after a STOPPING=1, and prints "bound"
first so the test knows when to start the node.
"""
import os
import socket
import sys
import time
import urllib.error
import urllib.request


def main():
    path, seconds = sys.argv[1], float(sys.argv[2])
    readyz = sys.argv[3] if len(sys.argv) > 3 else None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = "\0" + path[1:] if path.startswith("@") else path
    if not path.startswith("@") and os.path.exists(path):
        os.unlink(path)
    sock.bind(address)
    print("bound", flush=True)
    start = time.monotonic()
    deadline = start + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            break
        now_ms = int((time.monotonic() - start) * 1000)
        text = data.decode("utf-8", "replace")
        print("%d\t%s" % (now_ms, text.replace("\n", "|")), flush=True)
        lines = text.split("\n")
        if "READY=1" in lines and readyz:
            try:
                with urllib.request.urlopen(readyz, timeout=5) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError:
                status = 0
            print("readyz %d" % status, flush=True)
        if "STOPPING=1" in lines:
            deadline = min(deadline, time.monotonic() + 1.0)
    if not path.startswith("@"):
        os.unlink(path)


if __name__ == "__main__":
    main()
