"""What the cluster tests see and check: a page (a raw WebSocket that
keeps every message and reset it gets), a ledger of every publish and its
outcome (acked with an id, refused with an error, or unknown), and the
checks a page's sequence must pass: ids in order, no duplicate, nothing
that was not published, and never a silent gap (an acked message of the
page's channels that it did not get, without a reset in its place)."""
import bisect
import json
import time

from harness import IpcError, RawWs, encode_frame, make_token


def parse_id(i):
    epoch, _, seq = i.partition("-")
    return epoch, int(seq)


class Page:
    """A page subscribed to channels on one node, read synchronously:
    events holds every message and reset after the greeting, in order."""

    def __init__(self, node, channels, last_id=None, token=None):
        q = "channels=" + ",".join(channels)
        if last_id:
            q += "&last_id=" + last_id
        if token:
            q += "&token=" + token
        self.node = node
        self.channels = list(channels)
        self.ws = RawWs(node.ws_port, "/ws?" + q)
        assert self.ws.status == 101, f"upgrade refused: {self.ws.head!r}"
        self.closed = None           # the close code once the server closed
        self.events = []
        hello = self.next(5.0)
        assert hello is not None and hello["type"] == "subscribed", hello
        self.hello = hello

    def next(self, timeout):
        """The next JSON object, or None on timeout or close."""
        if self.closed is not None:
            return None
        try:
            f = self.ws.recv_frame(timeout)
        except (TimeoutError, OSError):
            return None
        if f is None:
            self.closed = 1006
            return None
        op, payload = f
        if op == 0x8:
            self.closed = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            return None
        if op == 0x9:              # a ping: answer it (masked pong)
            self.ws.send(encode_frame(0xA, payload))
            return self.next(timeout)
        return json.loads(payload)

    def read(self, quiet=0.3, limit=10.0):
        """Reads until nothing came for `quiet` seconds (at most `limit`)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            m = self.next(min(quiet, max(0.01, deadline - time.monotonic())))
            if m is None:
                return self.events
            self.events.append(m)
        return self.events

    def read_until(self, pred, timeout=5.0, what="an event"):
        """Reads until pred(event) holds for a new event; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.next(max(0.01, deadline - time.monotonic()))
            if m is None:
                if self.closed is not None:
                    raise AssertionError(f"page closed ({self.closed}) waiting for {what}")
                continue
            self.events.append(m)
            if pred(m):
                return m
        raise TimeoutError(f"page on {self.node.name} did not get {what} in {timeout}s")

    def messages(self):
        return [e for e in self.events if e["type"] == "message"]

    def last_id(self):
        ms = self.messages()
        return ms[-1]["id"] if ms else self.hello.get("last_id")

    def resets(self):
        return [e for e in self.events if e["type"] == "reset"]

    def close(self):
        self.ws.close()


class Ledger:
    """Every publish of a test, in the order they were answered: data is
    unique per publish, so a delivered message names its publish."""

    def __init__(self):
        self.entries = []     # dicts: channels, data, id (acked) or error
        self.by_data = {}

    def publish(self, node_or_client, channels, data):
        """Publishes through a node (its publish socket) or a PublishClient;
        records the outcome; returns the entry."""
        if isinstance(channels, str):
            channels = [channels]
        e = {"channels": list(channels), "data": data, "id": None, "error": None,
             "idx": len(self.entries)}
        try:
            pub = node_or_client.publish(channels, data)
            e["id"] = pub["id"]
        except IpcError as err:
            e["error"] = err.code
        except (OSError, ConnectionError) as err:
            e["error"] = repr(err)
        self.entries.append(e)
        self.by_data[json.dumps(data, sort_keys=True)] = e
        return e

    def acked(self):
        return [e for e in self.entries if e["id"] is not None]

    def errors(self):
        return [e["error"] for e in self.entries if e["error"] is not None]


def check_page(page, ledger, since=0):
    """The checks every page of a fault test must pass. since: the index
    in ledger.entries of the first publish the page must see (those before
    it happened before it subscribed). Returns the delivered entries."""
    seen = set()
    last = {}                       # channel -> (epoch, seq)
    newest = None                   # across channels, since the last reset
    per_channel = {c: [] for c in page.channels}     # 'reset' or entry index
    for ev in page.events:
        if ev["type"] == "reset":
            newest = None
            for c in ev["channels"]:
                assert c in per_channel, f"reset for a channel not subscribed: {ev}"
                per_channel[c].append("reset")
            continue
        assert ev["type"] == "message", ev
        c = ev["channel"]
        assert c in per_channel, f"message on a channel not subscribed: {ev}"
        key = (ev["id"], c)
        assert key not in seen, f"duplicate delivery {key}"
        seen.add(key)
        e = ledger.by_data.get(json.dumps(ev["data"], sort_keys=True))
        assert e is not None, f"delivered a message nobody published: {ev}"
        assert c in e["channels"]
        if e["id"] is not None:
            assert e["id"] == ev["id"], f"acked as {e['id']} but delivered as {ev['id']}"
        ep, sq = parse_id(ev["id"])
        if c in last and last[c][0] == ep:
            assert sq > last[c][1], f"{c}: {ev['id']} after {last[c]}: out of order"
        last[c] = (ep, sq)
        # One order across the page's channels (a message on two of them
        # comes once per channel, with one id): a recovering channel's
        # later messages wait for it, or it is reset.
        cur = (int(ep, 16), sq)
        assert newest is None or cur >= newest, (
            f"{ev['id']} on {c} after {newest} on another channel: cross-channel order broken")
        newest = cur
        per_channel[c].append(e["idx"])
    # Never a silent gap: an acked message of a channel that the page did
    # not get needs a reset of that channel between the acked messages
    # around it (publishes here are sequential: acked ones arrive in ledger
    # order; unacked ones may arrive anywhere, or not at all).
    for c, stream in per_channel.items():
        resets = [0]                              # resets before each position
        for item in stream:
            resets.append(resets[-1] + (item == "reset"))
        got = sorted((item, pos) for pos, item in enumerate(stream)
                     if item != "reset" and ledger.entries[item]["id"] is not None)
        got_idx = [i for i, _ in got]
        have = set(got_idx)
        for e in ledger.entries[since:]:
            idx = e["idx"]
            if e["id"] is None or c not in e["channels"] or idx in have:
                continue
            k = bisect.bisect_left(got_idx, idx)
            lo = got[k - 1][1] if k > 0 else -1
            hi = got[k][1] if k < len(got) else len(stream)
            assert lo < hi and resets[hi] - resets[lo + 1] > 0, (
                f"silent gap on {c}: acked {e['id']} ({e['data']!r}) never delivered and no reset "
                f"in its place; the page got {stream}")
    return [ledger.entries[s] for st in per_channel.values() for s in st if s != "reset"]


def user_token(sub, iat=None, exp_in=300):
    claims = {"iat": iat} if iat is not None else None
    return make_token(sub=sub, channels=(f"user/{sub}/*",), exp_in=exp_in, claims=claims)


def opens(node, tok, channel="user/alice/x"):
    """'open' when a page with this token is let in, else the close code
    (or HTTP status) it gets."""
    w = RawWs(node.ws_port, f"/ws?channels={channel}&token={tok}")
    try:
        if w.status != 101:
            return w.status
        f = w.recv_frame(5)
        if f is None:
            return None
        if f[0] == 0x8:
            return int.from_bytes(f[1][:2], "big")
        return "open" if json.loads(f[1])["type"] == "subscribed" else f
    finally:
        w.close()
