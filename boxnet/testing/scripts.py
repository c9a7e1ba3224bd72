"""Small programs that tests and benchmarks run inside containers (`python3 -c`), each with its arguments."""

from __future__ import annotations

# ARGS: COUNT SECONDS. Opens COUNT TCP connections to the embedded DNS, prints how many opened, holds them.
HOLD_DNS_CONNECTIONS = ("python3", "-c", "import socket, sys, time\n"
                        "held = []\n"
                        "for _ in range(int(sys.argv[1])):\n"
                        "  try: held.append(socket.create_connection(('127.0.0.11', 53), timeout=2))\n"
                        "  except OSError: pass\n"
                        "print(len(held), flush=True); time.sleep(float(sys.argv[2]))")  # fmt: skip

# ARGS: SECONDS. Sends questions to the embedded DNS as fast as it can, never reading; prints how many.
FLOOD_DNS = ("python3", "-c", "import socket, sys, time\n"
             "q = bytes.fromhex('abcd01000001000000000000') + b'\\x05flood\\x00\\x00\\x01\\x00\\x01'\n"
             "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False); n = 0\n"
             "end = time.monotonic() + float(sys.argv[1])\n"
             "while time.monotonic() < end:\n"
             "  try: s.sendto(q, ('127.0.0.11', 53)); n += 1\n"
             "  except BlockingIOError: pass\n"
             "print(n)")  # fmt: skip
