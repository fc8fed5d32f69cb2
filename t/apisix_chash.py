#!/usr/bin/env python3
"""Which node APISIX's chash ring gives each key, computed independently of streamgate's Rust
code from the algorithm in shared/spec/apisix-stream.md section 3.3 (CRC-32 ring, 160 points
per weight unit, NUL for every ':' in the node id, lower_bound with wrap-around).

Usage: apisix_chash.py HOST:PORT [HOST:PORT ...] -- KEY [KEY ...]   (all weights 1)
Prints one "KEY NODE" line per key.
"""
import bisect
import sys
import zlib


def ring(nodes):
    points = []
    for index, node in enumerate(nodes):
        ident = node.replace(":", "\0").encode()
        prev = 0
        for _ in range(160):
            prev = zlib.crc32(ident + prev.to_bytes(4, "little"))
            points.append((prev, index))
    points.sort(key=lambda p: p[0])
    return points


def main(argv):
    split = argv.index("--")
    nodes, keys = argv[:split], argv[split + 1:]
    points = ring(nodes)
    hashes = [h for h, _ in points]
    for key in keys:
        i = bisect.bisect_left(hashes, zlib.crc32(key.encode()))
        print(key, nodes[points[i % len(points)][1]])


if __name__ == "__main__":
    main(sys.argv[1:])
