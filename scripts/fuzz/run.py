#!/usr/bin/env python3
"""Fuzz one decoder (or all of them) for a while: coverage-guided with atheris, else a random driver.

    .venv/bin/python scripts/fuzz/run.py --list
    .venv/bin/python scripts/fuzz/run.py manifest --seconds 600           # one target, ten minutes
    .venv/bin/python scripts/fuzz/run.py --all --seconds 30               # every target, 30 s each
    .venv/bin/python scripts/fuzz/run.py manifest --driver random         # without atheris

With atheris (`pip install -e '.[fuzz]'`), the corpus grows in scripts/fuzz/corpus/<target>/ (seeded
with valid inputs) and a crashing input is written to scripts/fuzz/crashes/. Without it, the random
driver mutates the seeds (bit flips, byte changes, insertions, deletions, truncation, splices, huge
length prefixes) and stops at the first finding, saving it the same way. Exit 0 means no finding.
A finding is any exception other than the target's own refusal class (see targets.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MAX_LEN = 1 << 16


def _load_targets(instrument: bool):  # type: ignore[no-untyped-def]
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["communs", "targets"]):
            import targets
    else:
        import targets
    return targets


def _save(kind: str, name: str, data: bytes) -> Path:
    folder = HERE / kind / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / hashlib.blake2b(data, digest_size=8).hexdigest()
    path.write_bytes(data)
    return path


def _mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(9)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # set a byte, often to a boundary value
            buf[rng.randrange(len(buf))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 2:  # insert random bytes
            buf[pos:pos] = os.urandom(rng.randint(1, 16))
        elif op == 3 and buf:  # delete a run
            del buf[pos:pos + rng.randint(1, 32)]
        elif op == 4:  # truncate
            del buf[pos:]
        elif op == 5:  # splice in part of another seed
            other = rng.choice(seeds)
            a = rng.randrange(len(other) + 1)
            buf[pos:pos] = other[a:a + rng.randint(1, 64)]
        elif op == 6:  # a msgpack header declaring a huge container or string
            buf[pos:pos] = rng.choice([b"\xdd\xff\xff\xff\xff", b"\xdf\x7f\xff\xff\xff", b"\xdb\xff\xff\xff\xf0",
                                       b"\xc6\x7f\xff\xff\xff", b"\xff\xff\xff\x7f"])
        elif op == 7:  # deep nesting
            buf[pos:pos] = rng.choice([b"\x91", b"\x81\xa1a"]) * rng.randint(1, 200)
        elif op == 8 and buf:  # repeat a run
            a = rng.randrange(len(buf))
            buf[pos:pos] = buf[a:a + rng.randint(1, 32)] * rng.randint(2, 50)
    return bytes(buf[:MAX_LEN])


def run_random(targets, name: str, seconds: float, seed: int) -> int:  # type: ignore[no-untyped-def]
    target = targets.TARGETS[name]
    seeds = target.seeds() or [b""]
    rng = random.Random(seed)
    corpus = list(seeds)
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        data = _mutate(rng, rng.choice(corpus), seeds)
        try:
            accepted = True
            try:
                target.run(data)
            except target.errors:
                accepted = False
        except Exception:
            path = _save("crashes", name, data)
            print(f"{name}: FINDING after {runs} runs; input saved to {path}", file=sys.stderr)
            traceback.print_exc()
            return 1
        runs += 1
        if accepted and len(corpus) < 1000:
            corpus.append(data)  # accepted inputs are good places to mutate from
    print(f"{name}: {runs} runs in {seconds:.0f} s ({runs / seconds:.0f}/s), no finding, "
          f"{len(corpus) - len(seeds)} accepted mutants kept")
    return 0


def run_atheris(targets, name: str, seconds: float, extra: list[str]) -> int:  # type: ignore[no-untyped-def]
    import atheris

    target = targets.TARGETS[name]
    corpus = HERE / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in target.seeds():
        _save("corpus", name, seed)
    crashes = HERE / "crashes" / name
    crashes.mkdir(parents=True, exist_ok=True)

    def one_input(data: bytes) -> None:
        targets.check(target, data)

    argv = [sys.argv[0], f"-max_total_time={int(seconds)}", f"-max_len={MAX_LEN}", "-print_final_stats=1",
            f"-artifact_prefix={crashes}/", "-rss_limit_mb=1024", "-timeout=10", *extra]
    if not any(Path(a).is_file() for a in extra):  # files given: re-run just those
        argv.append(str(corpus))
    atheris.Setup(argv, one_input)
    atheris.Fuzz()  # exits the process: libFuzzer owns it from here
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Arguments after -- go to libFuzzer (e.g. -jobs=2, or a file to re-run).")
    parser.add_argument("target", nargs="?")
    parser.add_argument("--all", action="store_true", help="every target in turn (the random driver, or atheris "
                        "in one child process per target)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--driver", choices=["auto", "atheris", "random"], default="auto")
    parser.add_argument("--seed", type=int, default=0, help="random driver's seed")
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:  # what follows goes to libFuzzer as is
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    args = parser.parse_args(argv)

    driver = args.driver
    if driver == "auto":
        try:
            import atheris  # noqa: F401
        except ImportError:
            driver = "random"
        else:
            driver = "atheris"
    if args.list:
        for name in _load_targets(False).TARGETS:
            print(name)
        return 0
    if args.all:
        import subprocess

        names = list(_load_targets(False).TARGETS)
        failed = []
        for name in names:
            cmd = [sys.executable, __file__, name, "--seconds", str(args.seconds), "--driver", driver,
                   "--seed", str(args.seed)]
            if subprocess.run(cmd).returncode != 0:
                failed.append(name)
        print(f"{len(names) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed
                                                                           else ""))
        return 1 if failed else 0
    if not args.target:
        parser.error("name a target (see --list) or give --all")
    targets = _load_targets(driver == "atheris")
    if args.target not in targets.TARGETS:
        parser.error(f"unknown target {args.target!r}; see --list")
    if driver == "atheris":
        return run_atheris(targets, args.target, args.seconds, extra)
    return run_random(targets, args.target, args.seconds, args.seed)


if __name__ == "__main__":
    sys.exit(main())
