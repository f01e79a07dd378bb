#!/usr/bin/env python3
"""Independent checker of a donation-ledger export (JSON Lines), standard library only.

Recomputes every event hash as docs/FORMAT.md defines it (RFC 8785 canonical bytes of the
event without `hash`, SHA-256) and checks the chain; every line must itself be canonical
(with its `hash`), so it shows nothing the hash does not cover. Event data holds only integers, strings,
booleans, arrays and objects with ASCII member names, for which sorted keys, no white space
and raw UTF-8 strings are exactly RFC 8785.

usage: verify_export.py EXPORT.jsonl   -> prints "ok N HEAD" or "FAILED at seq S: reason"
"""
import hashlib
import json
import sys


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def no_duplicates(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a duplicate member")
    return obj


def main(path):
    prev, expected_seq = "0" * 64, 0
    with open(path, "rb") as f:
        for raw in f:
            line = raw[:-1] if raw.endswith(b"\n") else raw
            try:
                event = json.loads(line, object_pairs_hook=no_duplicates)
            except ValueError as e:
                return fail(expected_seq, f"not an event: {e}")
            if any(isinstance(v, float) for v in walk(event)):
                return fail(expected_seq, "a float in the event")
            # The line itself must be the canonical bytes: what a reader sees is what is hashed.
            if canonical(event) != line:
                return fail(expected_seq, "the line is not in canonical form")
            declared = event.pop("hash")
            computed = hashlib.sha256(canonical(event)).hexdigest()
            if event["seq"] != expected_seq:
                return fail(expected_seq, f"found seq {event['seq']}")
            if computed != declared:
                return fail(expected_seq, f"hash {declared} recomputes to {computed}")
            if event["prev"] != prev:
                return fail(expected_seq, "prev is not the previous event's hash")
            prev, expected_seq = computed, expected_seq + 1
    print(f"ok {expected_seq} {prev}")
    return 0


def walk(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)
    else:
        yield value


def fail(seq, reason):
    print(f"FAILED at seq {seq}: {reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
