"""A memcached text-protocol client: 500 sets, 500 gets, prints the sum of the values
(sweep driver; argv[1] is the port of a memcached started just before)."""
import socket
import sys
import time

port = int(sys.argv[1])
for _ in range(100):
    try:
        sock = socket.create_connection(("127.0.0.1", port))
        break
    except OSError:
        time.sleep(0.05)
f = sock.makefile("rwb")
for i in range(500):
    v = b"v%d" % (i * i)
    f.write(b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(v), v))
    f.flush()
    assert f.readline() == b"STORED\r\n"
total = 0
for i in range(500):
    f.write(b"get k%d\r\n" % i)
    f.flush()
    f.readline()
    total += int(f.readline()[1:])
    f.readline()
print(total)
