"""Files ws-server reads besides its ini: the secret (strict: a regular
file of at least 32 bytes, never blocking on a FIFO) and history_file
(every restored entry validated, not only the checksum)."""
import asyncio
import json
import os
import struct
import subprocess

import websockets

from harness import BIN


def check(env):
    """`ws-server -t` on env's ini: (exit code, output). Bounded: a hang on
    a FIFO fails the test instead of the suite."""
    p = subprocess.run([str(BIN / "ws-server"), "-t", "-c", str(env.ini_path)],
                       capture_output=True, text=True, timeout=5)
    return p.returncode, p.stdout + p.stderr


def test_secret_rules(env):
    secret = env.dir / "s2"
    env.sections["wspush"]["secret_file"] = str(secret)
    env.write_ini()
    secret.write_bytes(b"x" * 31 + b"\n")
    rc, out = check(env)
    assert rc != 0 and "shorter than 32" in out, out
    secret.write_bytes(b"x" * 32 + b"\n")
    os.chmod(secret, 0o640)
    rc, out = check(env)
    assert rc == 0 and "readable by every user" not in out, out
    os.chmod(secret, 0o644)
    rc, out = check(env)
    assert rc == 0 and "readable by every user" in out, out
    secret.unlink()
    os.mkfifo(secret)
    rc, out = check(env)                     # returns at once, does not hang
    assert rc != 0 and "not a regular file" in out, out


def _fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def _history(epoch, entries):
    """A format-2 history file with a correct checksum."""
    body = b"WSPUSHH2" + struct.pack(">IQQI", epoch, len(entries), 0, len(entries))
    for seq, (chans, data) in enumerate(entries, 1):
        body += struct.pack(">QQB", seq, 0, len(chans))
        for c in chans:
            body += bytes([len(c)]) + c
        body += struct.pack(">I", len(data)) + data
    return body + struct.pack(">I", _fnv1a(body))


def test_history_file_entries_are_validated(env):
    hist = env.dir / "history.bin"
    env.sections["ws-server"]["history_file"] = str(hist)
    env.write_ini()
    epoch = 0x60000000
    cases = [
        ([b"public/r"], b'"ok"', None),
        ([b"bad channel"], b"1", "invalid channel name"),
        ([b"public/r"], b"not json", "payload is not one JSON value"),
        ([b"public/r"], b'"\xff"', "payload is not valid UTF-8"),
        ([b"public/r", b"public/r"], b"1", "channel listed twice"),
    ]
    for chans, data, why in cases:
        hist.write_bytes(_history(epoch, [(chans, data)]))
        env.start_ws()
        log = env.log_text()

        async def go():
            ws = await websockets.connect(env.ws_url("channels=public/r&last_id=60000000-0"))
            hello = json.loads(await ws.recv())
            got = json.loads(await asyncio.wait_for(ws.recv(), 5))
            await ws.close()
            return hello, got
        hello, got = asyncio.run(asyncio.wait_for(go(), 10))
        if why is None:
            assert "history restored" in log
            assert got["type"] == "message" and got["data"] == "ok"
        else:
            assert f"history not restored, starting a new epoch: {hist}: {why}" in log, log
            assert got == {"type": "reset", "channels": ["public/r"]}
        assert env.stop_ws() == 0
        env.ws_log.write_bytes(b"")
