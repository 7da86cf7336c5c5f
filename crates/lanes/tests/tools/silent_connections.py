"""Opens N TCP connections to HOST:PORT that never send a byte, holds them for SECONDS,
then exits. Prints how many connects were started. Loopback only (the tests' daemon)."""
import resource
import socket
import sys
import time

host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
assert host.startswith("127."), "loopback targets only"
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((host, port))
    held.append(s)
print(len(held), flush=True)
time.sleep(seconds)
