"""Cost of the decoded-image cache key on a long image list (issue 15: the key must see changed content).

Writes N tiny files (the key never decodes them: it stats every file and reads 2 x 4 KiB of 64 of
them), then times ``cache_key`` twice: the first call after writing (metadata in the page cache, as
on any machine that just listed the folder) and a repeat. Reports seconds and microseconds per file
as JSON.

    python benchmarks/cache_key.py --n 200000 --out results/cache_key.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from nonvae.data.cache import cache_key
from nonvae.data.folders import ImageSource


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000, help="number of files in the list")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.n):
            sub = Path(tmp) / f"{i // 1000:04d}"
            if i % 1000 == 0:
                sub.mkdir()
            path = sub / f"{i:07d}.png"
            path.write_bytes(i.to_bytes(4, "little") * 16)
            paths.append(path)
        source = ImageSource(tmp, paths)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            cache_key(source, 64, 178, 3)
            times.append(time.perf_counter() - start)
    result = {"files": args.n, "first_s": round(times[0], 3), "repeat_s": round(times[1], 3),
              "us_per_file": round(1e6 * min(times) / args.n, 2)}
    text = json.dumps(result)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
