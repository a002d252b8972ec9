#!/usr/bin/env python3
"""The first-come drop's rush (tests/bench/bench_drop_rush.sh): REQUESTS
reservations of one unit each, spread evenly over ONE_S seconds, from
ADDRS loopback source addresses (127.0.1.x, 127.0.2.x ...), each with its
own device id, against POST /api/holds of the node at PORT.  Prints one
line: "rush: requests=N answered=A p50_ms=.. p99_ms=.. max_ms=.. s201=..
s409=.. other=.. last_201_ms=.." (last_201_ms: when, from the start, the
last unit went) and exits 0 when every request was answered.  With a
sixth argument PATH, the CLOCK_MONOTONIC ns of the last 201 is written
there at the end (wsprobe --ref-file: the phones' sold-out times)."""
import asyncio, json, sys, time

port, requests, addrs, sku = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
spread_s = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
ref_path = sys.argv[6] if len(sys.argv) > 6 else None
lat, codes, last201, last201_ns = [], {}, [0.0], [0]

async def one(i, t0):
    await asyncio.sleep(spread_s * i / requests)
    a = i % addrs
    src = "127.0.%d.%d" % (1 + a // 250, 1 + a % 250)
    body = json.dumps({"lines": [{"sku": sku, "qty": 1}], "device": "phone-%d" % i}).encode()
    req = (b"POST /api/holds HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    start = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0)), 10)
        w.write(req)
        await w.drain()
        data = await asyncio.wait_for(r.read(), 10)
        w.close()
        status = int(data.split(b" ", 2)[1])
    except Exception:
        status = 0
    end = time.monotonic()
    lat.append((end - start) * 1000)
    codes[status] = codes.get(status, 0) + 1
    if status == 201:
        last201[0] = max(last201[0], (end - t0) * 1000)
        last201_ns[0] = max(last201_ns[0], time.monotonic_ns())

async def main():
    t0 = time.monotonic()
    await asyncio.gather(*(one(i, t0) for i in range(requests)))

asyncio.run(main())
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
answered = sum(v for k, v in codes.items() if k)
other = answered - codes.get(201, 0) - codes.get(409, 0)
print("rush: requests=%d answered=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f s201=%d s409=%d other=%d "
      "codes=%s last_201_ms=%.0f" % (requests, answered, q(0.5), q(0.99), lat[-1], codes.get(201, 0),
                                     codes.get(409, 0), other, json.dumps(codes), last201[0]))
if ref_path:
    with open(ref_path, "w") as f:
        f.write("%d\n" % last201_ns[0])
sys.exit(0 if answered == requests else 1)
