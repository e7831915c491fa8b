// Unit test of conf/demo/www/wspush.js in node, with a fake WebSocket and
// fetch: URL building, token fetch and renewal on 4401, last_id resume,
// duplicate ids, reset, backoff bounds, final 4400, close(); the SSE
// reader over scripted fetch() streams (event-stream parsing in pieces,
// statuses, the close event) and the WebSocket-to-SSE fallback rule.
//   node tests/browser/wspush.unit.test.mjs
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SRC = fs.readFileSync(process.env.WSPUSH_JS || path.resolve(HERE, '../../conf/demo/www/wspush.js'), 'utf8');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// A scripted fetch() answer for /sse: the test calls respond(status, ...)
// (or fail()), then feed(text) / end() for the body; an abort rejects a
// pending read as a real stream does.
function makeStream(url, init) {
  const st = { url, init, pending: [], reads: [], aborted: false };
  let resolveResp, rejectResp;
  st.response = new Promise((res, rej) => { resolveResp = res; rejectResp = rej; });
  const enc = new TextEncoder();
  const deliver = (item) => {
    const r = st.reads.shift();
    if (r) item.error ? r.reject(item.error) : r.resolve(item);
    else st.pending.push(item);
  };
  st.feed = (text) => deliver({ done: false, value: enc.encode(text) });
  st.end = () => deliver({ done: true });
  st.fail = (e = new Error('network error')) => { st.failed = true; rejectResp(e); };
  st.respond = (status = 200, { type = 'text/event-stream', json = null } = {}) => resolveResp({
    ok: status >= 200 && status < 300,
    status,
    headers: { get: (k) => (k.toLowerCase() === 'content-type' ? (json ? 'application/json' : type) : null) },
    json: async () => { if (!json) throw new Error('not JSON'); return json; },
    body: {
      getReader: () => ({
        read: () => {
          if (st.pending.length) {
            const item = st.pending.shift();
            return item.error ? Promise.reject(item.error) : Promise.resolve(item);
          }
          return new Promise((resolve, reject) => st.reads.push({ resolve, reject }));
        },
      }),
    },
  });
  if (init && init.signal) {
    init.signal.addEventListener('abort', () => {
      st.aborted = true;
      const e = new Error('aborted');
      e.name = 'AbortError';
      rejectResp(e);
      deliver({ error: e });
    });
  }
  return st;
}

// A window with a scripted WebSocket and fetch.
function makeWindow({ tokenStatus = 200 } = {}) {
  const sockets = [];
  const fetches = [];
  const streams = [];
  let tokenN = 0;
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.closedWith = null;
      sockets.push(this);
    }
    close(code) { this.closedWith = code; }
    // test helpers
    recv(obj) { this.onmessage && this.onmessage({ data: JSON.stringify(obj) }); }
    open() { this.onopen && this.onopen({}); }
    drop(code, reason = '') { this.onclose && this.onclose({ code, reason }); }
  }
  const win = {
    location: { href: 'http://site.example:8080/page', protocol: 'http:', host: 'site.example:8080' },
    WebSocket: FakeWebSocket,
    URL,
    setTimeout, clearTimeout, Promise, JSON, Math, Date, Object, Array, Error, String,
    encodeURIComponent,
    console, TextDecoder, AbortController,
    addEventListener() {}, removeEventListener() {},
    fetch: async (url, init) => {
      if (/\/sse\?/.test(url)) {
        const st = makeStream(url, init);
        streams.push(st);
        return st.response;
      }
      fetches.push({ url, init });
      tokenN++;
      const body = tokenStatus === 200
        ? { token: `tok${tokenN}`, expires: Math.floor(Date.now() / 1000) + 3600, channels: [] }
        : { error: 'unauthenticated', message: 'no login' };
      return { ok: tokenStatus === 200, status: tokenStatus, json: async () => body };
    },
  };
  win.window = win;
  vm.runInNewContext(SRC, win, { filename: 'wspush.js' });
  return { win, sockets, fetches, streams, WsPush: win.WsPush };
}

function record(push) {
  const ev = { message: [], state: [], reset: [], error: [], subscribed: [] };
  for (const k of Object.keys(ev)) push.on(k, (e) => ev[k].push(e));
  return ev;
}

async function waitFor(pred, what, ms = 2000) {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

const tests = {
  async 'public channels: URL, subscribed, messages, duplicate ids'() {
    const { sockets, fetches, WsPush } = makeWindow();
    const push = new WsPush({ url: '/ws', channels: ['public/a', 'news'] });
    const ev = record(push);
    push.connect();
    await waitFor(() => sockets.length === 1, 'socket');
    assert(sockets[0].url === 'ws://site.example:8080/ws?channels=public%2Fa,news', sockets[0].url);
    assert(fetches.length === 0, 'token fetched for public channels');
    sockets[0].open();
    sockets[0].recv({ type: 'subscribed', channels: ['public/a', 'news'], last_id: 'e-0' });
    assert(push.state === 'open' && push.lastId === 'e-0', `state ${push.state} lastId ${push.lastId}`);
    sockets[0].recv({ type: 'message', channel: 'news', id: 'e-1', data: { x: 1 } });
    sockets[0].recv({ type: 'message', channel: 'news', id: 'e-1', data: { x: 1 } });
    sockets[0].recv({ type: 'message', channel: 'news', id: 'e-2', data: 'two' });
    assert(ev.message.length === 2, `${ev.message.length} message events`);
    assert(ev.message[0].data.x === 1 && ev.message[1].data === 'two', 'payloads');
    assert(push.lastId === 'e-2', 'lastId not the newest');
    push.close();
  },

  async 'reconnect after a drop resumes with last_id, delay within the first backoff step'() {
    const { sockets, WsPush } = makeWindow();
    const push = new WsPush({ url: 'wss://push.example/ws', channels: ['a'], minDelay: 40, maxDelay: 1000 });
    const ev = record(push);
    push.connect();
    await waitFor(() => sockets.length === 1, 'socket');
    sockets[0].recv({ type: 'subscribed', channels: ['a'], last_id: 'e-5' });
    sockets[0].recv({ type: 'message', channel: 'a', id: 'e-6', data: 1 });
    sockets[0].drop(1006);
    const st = ev.state[ev.state.length - 1];
    assert(st.state === 'reconnecting' && st.code === 1006, JSON.stringify(st));
    assert(st.delay >= 20 && st.delay <= 40, `delay ${st.delay}`);
    await waitFor(() => sockets.length === 2, 'second socket');
    assert(sockets[1].url === 'wss://push.example/ws?channels=a&last_id=e-6', sockets[1].url);
    // The replay may overlap what was already shown.
    sockets[1].recv({ type: 'subscribed', channels: ['a'], last_id: 'e-8' });
    sockets[1].recv({ type: 'message', channel: 'a', id: 'e-6', data: 1 });
    sockets[1].recv({ type: 'message', channel: 'a', id: 'e-7', data: 2 });
    assert(ev.message.map((m) => m.id).join() === 'e-6,e-7', ev.message.map((m) => m.id).join());
    assert(push.lastId === 'e-7', 'lastId after replay');
    push.close();
  },

  async 'backoff doubles up to maxDelay, with jitter in [d/2, d]'() {
    const { sockets, WsPush } = makeWindow();
    const push = new WsPush({ channels: ['a'], minDelay: 4, maxDelay: 32 });
    const ev = record(push);
    push.connect();
    for (let i = 0; i < 6; i++) {
      await waitFor(() => sockets.length === i + 1, `socket ${i + 1}`);
      sockets[i].drop(1006);
    }
    const delays = ev.state.filter((s) => s.state === 'reconnecting').map((s) => s.delay);
    const ceilings = [4, 8, 16, 32, 32, 32];
    delays.forEach((d, i) => assert(d >= ceilings[i] / 2 && d <= ceilings[i], `delay ${i}: ${d} not in [${ceilings[i] / 2}, ${ceilings[i]}]`));
    push.close();
  },

  async 'jitter: retry delays vary'() {
    const { sockets, WsPush } = makeWindow();
    const push = new WsPush({ channels: ['a'], minDelay: 20, maxDelay: 20 });
    const ev = record(push);
    push.connect();
    for (let i = 0; i < 10; i++) {
      await waitFor(() => sockets.length === i + 1, `socket ${i + 1}`);
      sockets[i].drop(1006);
    }
    const delays = new Set(ev.state.filter((s) => s.state === 'reconnecting').map((s) => s.delay));
    assert(delays.size > 1, `every delay was ${[...delays]}`);
    push.close();
  },

  async 'token: fetched for tokenChannels, renewed after 4401, immediate retry'() {
    const { sockets, fetches, WsPush } = makeWindow();
    const push = new WsPush({ url: '/ws', channels: ['public/a', 'user/u/inbox'],
                              tokenChannels: ['user/u/inbox'], tokenUrl: '/push/token', minDelay: 1000 });
    const ev = record(push);
    push.connect();
    await waitFor(() => sockets.length === 1, 'socket');
    assert(fetches.length === 1, 'one token fetch');
    const u = new URL(fetches[0].url);
    assert(u.pathname === '/push/token' && u.searchParams.get('channels') === 'user/u/inbox', fetches[0].url);
    assert(fetches[0].init.credentials === 'same-origin', 'token fetch without credentials');
    assert(sockets[0].url.endsWith('&token=tok1'), sockets[0].url);
    sockets[0].recv({ type: 'subscribed', channels: [], last_id: 'e-1' });
    sockets[0].drop(4401);
    const st = ev.state[ev.state.length - 1];
    assert(st.state === 'reconnecting' && st.delay === 0, JSON.stringify(st));
    await waitFor(() => sockets.length === 2, 'second socket');
    assert(fetches.length === 2, 'token not renewed');
    assert(sockets[1].url.includes('&token=tok2&last_id=e-1'), sockets[1].url);
    // A second 4401 in a row waits (backoff) instead of hammering.
    sockets[1].drop(4401);
    const st2 = ev.state[ev.state.length - 1];
    assert(st2.delay >= 500, `second 4401 retried after ${st2.delay} ms`);
    push.close();
  },

  async 'token fetch refused: error event, retry with backoff'() {
    const { sockets, fetches, WsPush } = makeWindow({ tokenStatus: 401 });
    const push = new WsPush({ channels: ['user/u/x'], tokenUrl: '/push/token', minDelay: 10, maxDelay: 20 });
    const ev = record(push);
    push.connect();
    await waitFor(() => fetches.length >= 2, 'token retries');
    assert(sockets.length === 0, 'connected without a token');
    assert(ev.error.length >= 1 && ev.error[0].stage === 'token' && /401/.test(ev.error[0].error.message),
           JSON.stringify(ev.error[0]));
    push.close();
  },

  async '4400 is final'() {
    const { sockets, WsPush } = makeWindow();
    const push = new WsPush({ channels: ['bad channel'], minDelay: 5 });
    const ev = record(push);
    push.connect();
    await waitFor(() => sockets.length === 1, 'socket');
    sockets[0].drop(4400);
    await sleep(50);
    assert(sockets.length === 1, 'reconnected after 4400');
    assert(push.state === 'failed', push.state);
    assert(ev.state[ev.state.length - 1].code === 4400, 'code not reported');
  },

  async 'reset: event, then continue from the server position'() {
    const { sockets, WsPush } = makeWindow();
    const push = new WsPush({ channels: ['a'], lastId: 'old-7', minDelay: 5 });
    const ev = record(push);
    push.connect();
    await waitFor(() => sockets.length === 1, 'socket');
    assert(sockets[0].url.endsWith('last_id=old-7'), sockets[0].url);
    sockets[0].recv({ type: 'subscribed', channels: ['a'], last_id: 'new-3' });
    sockets[0].recv({ type: 'reset', channels: ['a'] });
    assert(ev.reset.length === 1 && ev.reset[0].channels[0] === 'a', 'no reset event');
    assert(push.lastId === 'new-3', `lastId ${push.lastId}`);
    push.close();
  },

  async 'close() stops: no reconnect, state closed'() {
    const { sockets, WsPush } = makeWindow();
    const push = new WsPush({ channels: ['a'], minDelay: 5 });
    push.connect();
    await waitFor(() => sockets.length === 1, 'socket');
    push.close();
    assert(sockets[0].closedWith === 1000, 'socket not closed with 1000');
    sockets[0].drop(1006);
    await sleep(30);
    assert(sockets.length === 1 && push.state === 'closed', 'reconnected after close()');
  },

  async 'sse: URL, events parsed in any pieces (CRLF, CR, LF, comments, data lines), close event, resume'() {
    const { streams, WsPush } = makeWindow();
    const push = new WsPush({ url: '/ws', channels: ['public/a'], transport: 'sse', minDelay: 20, maxDelay: 40 });
    const ev = record(push);
    push.connect();
    await waitFor(() => streams.length === 1, 'stream');
    const st = streams[0];
    assert(st.url === 'http://site.example:8080/sse?channels=public%2Fa', st.url);
    assert(st.init.headers.Accept === 'text/event-stream', 'Accept');
    assert(!('Last-Event-ID' in st.init.headers), 'a header that needs a CORS preflight');
    st.respond(200);
    const text = 'event: subscribed\r\ndata: {"type":"subscribed","channels":["public/a"],"last_id":"e-0"}\r\n\r\n' +
      ': keep-alive\n' +
      'id: e-1\ndata: {"type":"message","channel":"public/a","id":"e-1","data":{\ndata:  "x": 1}}\n\n' +
      'id: e-2\rdata: {"type":"message","channel":"public/a","id":"e-2","data":\rdata:2}\r\r' +
      'data\nid: e-3\ndata: {"type":"message","channel":"public/a","id":"e-3","data":"z"}\r\n\r\n' +
      'event: close\ndata: {"type":"close","code":1001}\n\n';
    // Pieces of 1..6 characters: every line end split somewhere.
    for (let i = 0, n = 1; i < text.length; i += n, n = n % 6 + 1) st.feed(text.slice(i, i + n));
    await waitFor(() => ev.message.length === 3, 'three messages');
    assert(ev.subscribed.length === 1 && ev.subscribed[0].last_id === 'e-0', JSON.stringify(ev.subscribed));
    assert(ev.message[0].data.x === 1 && ev.message[1].data === 2, JSON.stringify(ev.message));
    // "data" alone is an empty data line: "\n" + the JSON, still one value.
    assert(ev.message[2].data === 'z' && push.lastId === 'e-3', JSON.stringify(ev.message[2]));
    const open = ev.state.find((s) => s.state === 'open');
    assert(open && open.transport === 'sse', JSON.stringify(open));
    st.end();
    await waitFor(() => push.state === 'reconnecting', 'reconnecting');
    const rs = ev.state[ev.state.length - 1];
    assert(rs.code === 1001 && rs.delay >= 10 && rs.delay <= 20, JSON.stringify(rs));
    await waitFor(() => streams.length === 2, 'second stream');
    assert(streams[1].url.endsWith('channels=public%2Fa&last_id=e-3'), streams[1].url);
    push.close();
    assert(streams[1].aborted, 'close() did not abort the stream');
  },

  async 'sse: statuses as WebSocket close codes (401 fresh token at once, 403 origin and 400 final, 503 backoff)'() {
    const { streams, fetches, WsPush } = makeWindow();
    const push = new WsPush({ channels: ['user/u/x'], tokenUrl: '/push/token', transport: 'sse',
                              minDelay: 1000 });
    const ev = record(push);
    push.connect();
    await waitFor(() => streams.length === 1, 'stream');
    assert(streams[0].url.includes('&token=tok1'), streams[0].url);
    streams[0].respond(401, { json: { error: 'token', message: 'expired' } });
    await waitFor(() => streams.length === 2, 'retry');
    assert(fetches.length === 2 && streams[1].url.includes('&token=tok2'), streams[1].url);
    const st = ev.state.filter((s) => s.state === 'reconnecting');
    assert(st.length === 1 && st[0].code === 4401 && st[0].delay === 0, JSON.stringify(st));
    streams[1].respond(503, { json: { error: 'unavailable', message: 'too many' } });
    await waitFor(() => ev.state.filter((s) => s.state === 'reconnecting').length === 2, 'backoff');
    const last = ev.state[ev.state.length - 1];
    assert(last.code === 1006 && last.delay >= 500, JSON.stringify(last));
    push.close();

    for (const [status, json, code] of [[403, { error: 'origin' }, 403], [400, { error: 'bad_channels' }, 4400]]) {
      const w = makeWindow();
      const p = new w.WsPush({ channels: ['a'], transport: 'sse', minDelay: 5 });
      p.connect();
      await waitFor(() => w.streams.length === 1, 'stream');
      w.streams[0].respond(status, { json });
      await waitFor(() => p.state === 'failed', `failed after ${status}`);
      await sleep(30);
      assert(w.streams.length === 1, `retried after ${status}`);
    }
  },

  async 'fallback: WebSocket fails to open 3 times while /sse answers -> SSE; a restart does not switch'() {
    const { sockets, streams, WsPush } = makeWindow();
    // Retries wait 20-60 ms: each probe is answered before the next try.
    const push = new WsPush({ url: '/ws', channels: ['a'], minDelay: 40, maxDelay: 60 });
    const ev = record(push);
    push.connect();
    // WebSocket attempt k fails to open; its probe of /sse gets answer().
    const failOnce = async (k, answer) => {
      await waitFor(() => sockets.length === k + 1, `socket ${k + 1}`);
      const probes = streams.length;
      sockets[k].drop(1006);
      await waitFor(() => streams.length === probes + 1, `probe after socket ${k + 1}`);
      const probe = streams[probes];
      assert(probe.url === 'http://site.example:8080/sse?channels=a' + (push.lastId ? '&last_id=' + push.lastId : ''), probe.url);
      answer(probe);
      await probe.response.catch(() => {});
      await sleep(1);
      assert(probe.aborted || probe.failed, 'probe left open');
    };
    const answers = (p) => p.respond(200);
    const fails = [(p) => p.fail(), (p) => p.respond(502, { type: 'text/html' }),
                   (p) => p.respond(404, { type: 'text/html' })];
    // A restart: WebSocket and /sse both fail, five times.
    let k = 0;
    for (let i = 0; i < 5; i++) await failOnce(k++, fails[i % 3]);
    // ... then it is back: WebSocket opens; a later drop of an open
    // socket is no open failure (no probe).
    await waitFor(() => sockets.length === k + 1, 'socket after the restart');
    sockets[k].open();
    sockets[k].recv({ type: 'subscribed', channels: ['a'], last_id: 'e-1' });
    const probes = streams.length;
    sockets[k++].drop(1006);
    await waitFor(() => sockets.length === k + 1, 'reconnect');
    assert(streams.length === probes, 'probed after a socket that had opened');
    // Twice while /sse answers, once not, twice again: still WebSocket.
    for (const a of [answers, answers, fails[0], answers, answers]) await failOnce(k++, a);
    await waitFor(() => sockets.length === k + 1, 'still a WebSocket');
    // The third failure in a row with /sse answering moves to SSE.
    await failOnce(k++, answers);
    await waitFor(() => streams.length === probes + 7, 'the SSE stream');
    assert(sockets.length === k, 'a WebSocket after the switch');
    const st = streams[streams.length - 1];
    assert(st.url === 'http://site.example:8080/sse?channels=a&last_id=e-1', st.url);
    const connecting = ev.state.filter((s) => s.state === 'connecting');
    assert(connecting[connecting.length - 1].transport === 'sse', 'state does not say sse');
    st.respond(200);
    st.feed('event: subscribed\ndata: {"type":"subscribed","channels":["a"],"last_id":"e-1"}\n\n');
    await waitFor(() => push.state === 'open', 'open over SSE');
    push.close();
  },

  async 'transport "websocket": no probe of /sse'() {
    const { sockets, streams, WsPush } = makeWindow();
    const push = new WsPush({ channels: ['a'], transport: 'websocket', minDelay: 2, maxDelay: 4 });
    push.connect();
    for (let i = 0; i < 4; i++) {
      await waitFor(() => sockets.length === i + 1, `socket ${i + 1}`);
      sockets[i].drop(1006);
    }
    assert(streams.length === 0, 'probed /sse');
    push.close();
  },

  async 'WsPush.publish: same-origin JSON POST, errors carry status and code'() {
    const { win, WsPush } = makeWindow();
    let seen;
    win.fetch = async (url, init) => {
      seen = { url, init };
      return { ok: false, status: 403, json: async () => ({ error: 'forbidden', message: 'channel not permitted' }) };
    };
    let err;
    try { await WsPush.publish('user/x/y', { a: 1 }); } catch (e) { err = e; }
    assert(seen.url === '/push/publish' && seen.init.method === 'POST', 'wrong request');
    assert(seen.init.credentials === 'same-origin', 'credentials');
    assert(seen.init.headers['Content-Type'] === 'application/json', 'content type');
    assert(JSON.parse(seen.init.body).channel === 'user/x/y', 'body');
    assert(err && err.status === 403 && err.code === 'forbidden', `error ${err && err.message}`);
  },
};

let failed = 0;
for (const [name, fn] of Object.entries(tests)) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}
console.log(`wspush.js: ${Object.keys(tests).length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
