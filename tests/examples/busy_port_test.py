#!/usr/bin/env python3
"""orders_service with a metrics port that is already taken: it must exit
with code 2 and a message naming the address and the flag, not abort.

Usage: busy_port_test.py PATH/TO/orders_service
"""
import socket
import subprocess
import sys


def main() -> int:
    binary = sys.argv[1]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        # The database is never reached: the metrics port is checked first.
        result = subprocess.run(
            [binary, "--pg=host=127.0.0.1 port=1", f"--metrics_port={port}"],
            capture_output=True, text=True, timeout=30)
    err = result.stderr
    problems = []
    if result.returncode != 2:
        problems.append(f"exit code {result.returncode}, want 2")
    if f"cannot serve /metrics on 127.0.0.1:{port}" not in err:
        problems.append("no 'cannot serve /metrics on 127.0.0.1:PORT'")
    if "--metrics_port" not in err:
        problems.append("the message does not name --metrics_port")
    if problems:
        print("busy_port_test: " + "; ".join(problems), file=sys.stderr)
        print("stderr was:\n" + err, file=sys.stderr)
        return 1
    print(f"busy_port_test: ok (port {port}): {err.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
