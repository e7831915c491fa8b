"""Revocation: `wspush disconnect U` closes U's pages with 4401 and keeps
U's tokens issued until then from reopening them (ws-server/revoke.h)."""
import asyncio
import json
import signal
import time

import pytest
import websockets

from harness import make_token


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def token(sub="alice", iat=None, exp_in=300, channels=None):
    claims = {"iat": iat} if iat is not None else None
    return make_token(sub=sub, channels=channels or (f"user/{sub}/*",), exp_in=exp_in,
                      claims=claims)


async def opens(env, tok, sub="alice"):
    """'open' when the page subscribes, else the close code it gets."""
    ws = await websockets.connect(env.ws_url(f"channels=user/{sub}/x&token={tok}"))
    try:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert msg["type"] == "subscribed"
        return "open"
    except websockets.ConnectionClosed as e:
        return e.code
    finally:
        await ws.close()


def test_disconnect_revokes_older_tokens_until_a_newer_one(ws):
    async def go():
        # Dated no earlier than the start: older tokens are refused anyway
        # (they may predate a revocation this run never heard of).
        now = int(time.time())
        old_iat, no_iat = token(iat=now), token()
        page = await websockets.connect(ws.ws_url("channels=user/alice/x&token=" + old_iat))
        assert json.loads(await page.recv())["type"] == "subscribed"
        s = int(time.time())
        assert ws.disconnect("alice") == 1
        try:
            await asyncio.wait_for(page.recv(), 5)
            assert False, "still open after disconnect"
        except websockets.ConnectionClosed as e:
            assert e.code == 4401
        # The same URL and token, and every older or undated token: refused.
        assert await opens(ws, old_iat) == 4401
        assert await opens(ws, no_iat) == 4401
        assert await opens(ws, token(iat=s)) == 4401
        # One issued in a later second works; other users are untouched.
        assert await opens(ws, token(iat=s + 1)) == "open"
        assert await opens(ws, token("bob", iat=now), "bob") == "open"
        assert await opens(ws, token("bob"), "bob") == "open"
    run(go())
    assert "tokens issued until now revoked" in ws.log_text()


def test_token_lifetime_bound(env):
    env.sections["ws-server"]["max_token_lifetime"] = "10m"
    env.sections["publisher"]["token_ttl"] = "10m"
    env.write_ini()
    env.start_ws()

    async def go():
        now = int(time.time())
        assert await opens(env, token(iat=now, exp_in=600)) == "open"
        assert await opens(env, token(iat=now, exp_in=601)) == 4401
        assert await opens(env, token(exp_in=600)) == "open"
        assert await opens(env, token(exp_in=700)) == 4401
    run(go())
    assert "max_token_lifetime" in env.log_text()


def test_records_survive_reload(ws):
    async def go():
        now = int(time.time())
        ws.disconnect("alice")
        ws.ws_proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "configuration reloaded" not in ws.log_text():
            assert time.monotonic() < deadline, "no reload"
            await asyncio.sleep(0.05)
        assert await opens(ws, token(iat=now)) == 4401
    run(go())


@pytest.mark.memory_only(reason="with Redis the records live in Redis, not next to history_file")
def test_planned_restart_keeps_records_unplanned_refuses_older_tokens(env):
    env.sections["ws-server"]["history_file"] = str(env.dir / "history.bin")
    env.write_ini()
    env.start_ws()

    async def go():
        t0 = int(time.time())
        env.disconnect("alice")
        assert env.stop_ws(signal.SIGTERM) == 0
        assert (env.dir / "history.bin.revocations").exists()
        env.start_ws()
        assert not (env.dir / "history.bin.revocations").exists()
        assert "revocations restored" in env.log_text()
        # Planned: alice's old tokens stay refused, bob's were never revoked.
        assert await opens(env, token(iat=t0)) == 4401
        assert await opens(env, token("bob", iat=t0), "bob") == "open"
        # Unplanned (SIGKILL: nothing saved): every token dated before the
        # second of the start is refused, so no revoked one comes back.
        assert env.stop_ws(signal.SIGKILL) != 0
        while int(time.time()) < t0 + 2:      # the clock, not an event
            time.sleep(0.05)
        env.start_ws()
        started = int(time.time())
        assert await opens(env, token("bob", iat=t0), "bob") == 4401
        assert await opens(env, token("bob", iat=started), "bob") == "open"
    run(go(), timeout=30)


def test_full_table_fails_closed(env):
    env.sections["ws-server"]["max_revocations"] = "2"
    env.write_ini()
    env.start_ws()

    async def go():
        now = int(time.time())
        for user in ("u1", "u2", "u3"):
            env.disconnect(user)
        # u1's record was dropped to make room: instead of forgetting it,
        # every token dated up to it is refused, u1's and everyone else's.
        assert await opens(env, token("u1", iat=now), "u1") == 4401
        assert await opens(env, token("carol", iat=now), "carol") == 4401
        later = int(time.time()) + 1
        assert await opens(env, token("carol", iat=later), "carol") == "open"
        assert await opens(env, token("u3", iat=later), "u3") == "open"
    run(go())


def test_a_second_disconnect_does_not_count_pages_already_closing(ws):
    """A page that has not answered the first disconnect's close frame is
    closing, not open: a second disconnect (a double-clicked logout) closes
    nothing more and says so, instead of counting it again."""
    from test_hardening_ws import open_raw
    page = open_raw(ws, channels="user/alice/x", query="&token=" + token(iat=int(time.time())))
    try:
        assert ws.disconnect("alice") == 1
        assert ws.disconnect("alice") == 0
    finally:
        page.sock.close()
