"""A tiny child process for supervisor tests: listens on TCP, writes a port file, ticks.

Usage: python ticker.py PORT_FILE [--port N] [--ignore-term] [--spawn-child] [--exit-now CODE]
       [--no-port-file] [--crash-after-ticks N]
Every 50 ms it prints "tick N" to stdout; each TCP connection gets "pong\\n" and is closed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port_file")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--spawn-child", action="store_true")
    parser.add_argument("--exit-now", type=int, default=None)
    parser.add_argument("--no-port-file", action="store_true")
    parser.add_argument("--crash-after-ticks", type=int, default=None)
    args = parser.parse_args()
    if args.exit_now is not None:
        print("exiting at once as asked", file=sys.stderr)
        return args.exit_now
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if args.spawn_child:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen(16)
    port = server.getsockname()[1]
    if not args.no_port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"host": "127.0.0.1", "port": port, "pid": os.getpid()}, f)
        os.replace(tmp, args.port_file)

    def serve() -> None:
        for _ in range(100_000):
            conn, _ = server.accept()
            conn.sendall(b"pong\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    for n in range(100_000):
        if args.crash_after_ticks is not None and n >= args.crash_after_ticks:
            print("crashing on purpose", file=sys.stderr, flush=True)
            os._exit(7)
        print(f"tick {n}", flush=True)
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
