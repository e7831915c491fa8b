// Browser test of the `make run` demo: Debian's chromium driven by
// playwright-core (no browser download). Starts conf/demo/run.sh on free
// ports, so it never collides with a demo already running on 8080.
//
//   node tests/browser/demo.test.mjs        (WSPUSH_BIN = the binaries'
//                                            directory, default build/bin)
// Output (screenshot, demo log, page console) goes to tests/browser/output/.
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { BIN, OUT, ROOT, Demo, assert, checkBinaries, evilServer, freePort, freePorts, launchChromium,
         openDemoPageAt, portOpen, publishViaForm, rowWith, run, runTest, sleep, step, uniq } from './lib.mjs';

const CREDS = { username: 'demo', password: 'demo' };
const DELIVERY_MS = 1000;   // "the other shows the message within a second"

fs.rmSync(OUT, { recursive: true, force: true });
fs.mkdirSync(OUT, { recursive: true });
const demoLog = fs.createWriteStream(path.join(OUT, 'demo.log'));
const consoleLog = fs.createWriteStream(path.join(OUT, 'console.log'));

// ---- a second ws-server, for the native EventSource reconnect: its
// idle_timeout ends a quiet stream from the server side (close event 1000).

class SoloServer {
  constructor(port, origins) {
    this.port = port;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspush-sse-'));
    this.sock = path.join(this.dir, 'publish.sock');
    fs.writeFileSync(path.join(this.dir, 'secret'), 'browser-test-secret-0123456789abcdef\n');
    fs.writeFileSync(path.join(this.dir, 'wspush.ini'), `[wspush]
publish_socket = ${this.sock}
secret_file = ${path.join(this.dir, 'secret')}
log_level = debug
[ws-server]
listen = 127.0.0.1:${port}
allowed_origins = ${origins}
idle_timeout = 1000
[channels]
public = public/*
`);
  }

  async start() {
    this.log = fs.openSync(path.join(OUT, 'sse-ws-server.log'), 'a');
    this.proc = spawn(path.join(BIN, 'ws-server'), ['-c', path.join(this.dir, 'wspush.ini')],
                      { stdio: ['ignore', this.log, this.log] });
    const t0 = Date.now();
    while (!(fs.existsSync(this.sock) && await portOpen(this.port))) {
      assert(Date.now() - t0 < 5000, 'second ws-server did not start; see output/sse-ws-server.log');
      await sleep(20);
    }
  }

  publish(channel, data) {
    return run(path.join(BIN, 'wspush'), ['-s', this.sock, 'publish', channel, JSON.stringify(data)]);
  }

  // SIGTERM; a non-zero exit (a sanitizer report) fails the step.
  async stop() {
    let code = this.proc.exitCode;
    if (code === null) {
      const exited = new Promise((r) => this.proc.once('exit', (c) => r(c)));
      this.proc.kill('SIGTERM');
      code = await Promise.race([exited, sleep(5000).then(() => 'timeout')]);
    }
    fs.closeSync(this.log);
    fs.rmSync(this.dir, { recursive: true, force: true });
    assert(code === 0, `second ws-server exited with ${code}; see output/sse-ws-server.log`);
  }
}

// ---- a reverse proxy that passes HTTP but not WebSocket (some corporate
// proxies): the page and wspush.js from the demo, /sse to ws-server, and
// every upgrade answered 502.

function noWebSocketProxy(wsPort, channel) {
  const page = `<!doctype html><meta charset="utf-8"><title>no websocket</title>
<script src="/wspush.js"></script>
<script>
window.states = [];
window.got = [];
const push = new WsPush({ url: '/ws', channels: ['${channel}'], minDelay: 100, maxDelay: 200 });
push.on('state', (s) => states.push(s.state + ':' + s.transport + (s.code ? ':' + s.code : '')));
push.on('message', (m) => got.push(m.data));
push.connect();
</script>`;
  const srv = http.createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      return res.end(page);
    }
    if (req.url === '/wspush.js') {
      res.writeHead(200, { 'Content-Type': 'application/javascript' });
      return res.end(fs.readFileSync(path.join(ROOT, 'conf/demo/www/wspush.js')));
    }
    if (!req.url.startsWith('/sse?')) {
      res.writeHead(404);
      return res.end();
    }
    // The demo's allowed_origins does not list this test origin.
    const headers = { ...req.headers, host: `127.0.0.1:${wsPort}` };
    delete headers.origin;
    const up = http.request({ host: '127.0.0.1', port: wsPort, path: req.url, headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    up.end();
  });
  srv.on('upgrade', (req, socket) => {
    socket.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  });
  return srv;
}

const openDemoPage = (browser, demo, creds, label, query = '') =>
  openDemoPageAt(browser, demo.origin + '/' + query, creds, label, consoleLog);

// Milliseconds from t0 to the moment the page received the message (the
// page stamps each row); waits at most `timeout` for it to appear.
async function deliveredWithin(page, text, t0, timeout) {
  await page.waitForSelector(rowWith(text), { timeout });
  const received = Number(await page.locator(rowWith(text)).getAttribute('data-received'));
  return received - t0;
}

async function main() {
  checkBinaries();
  const ports = await freePorts();
  const evilPort = await freePort();
  const demo = new Demo(ports, { log: demoLog });
  await demo.start();
  console.log(`demo on ${demo.origin} (ws-server ${ports.wsPort}), runtime ${demo.dir}`);

  // Trusts the demo's self-signed certificate (by its key), and nothing
  // else: every other certificate is still checked.
  const browser = await launchChromium([`--ignore-certificate-errors-spki-list=${demo.spki()}`]);
  let A, B, anon;
  try {
    await step('two logged-in pages connect (public + private channel)', async () => {
      A = await openDemoPage(browser, demo, CREDS, 'A');
      B = await openDemoPage(browser, demo, CREDS, 'B');
      for (const { page } of [A, B]) {
        assert((await page.textContent('#user')) === 'demo', 'page does not show user demo');
        const ch = await page.textContent('#channels');
        assert(ch.includes('public/demo') && ch.includes('user/demo/inbox'), `channels: ${ch}`);
      }
    });

    await step(`form publish on A reaches B within ${DELIVERY_MS} ms (public channel)`, async () => {
      const text = uniq('hello-public');
      const t0 = await publishViaForm(A.page, 'public/demo', text);
      const ms = await deliveredWithin(B.page, text, t0, DELIVERY_MS + 2000);
      assert(ms <= DELIVERY_MS, `delivered after ${ms} ms`);
      const row = B.page.locator(rowWith(text));
      assert((await row.getAttribute('data-channel')) === 'public/demo', 'wrong channel');
      assert(/\S/.test(await row.getAttribute('data-id')), 'message shown without an id');
      await A.page.waitForSelector('#result:text-matches("^published ")', { timeout: 2000 });
      console.log(`     delivered in ${ms} ms`);
    });

    await step(`form publish on A reaches B within ${DELIVERY_MS} ms (private channel, token)`, async () => {
      const text = uniq('hello-private');
      const t0 = await publishViaForm(A.page, 'user/demo/inbox', text);
      const ms = await deliveredWithin(B.page, text, t0, DELIVERY_MS + 2000);
      assert(ms <= DELIVERY_MS, `delivered after ${ms} ms`);
      console.log(`     delivered in ${ms} ms`);
      const row = B.page.locator(rowWith(text));
      assert((await row.getAttribute('data-channel')) === 'user/demo/inbox', 'wrong channel');
    });

    await step('a page whose login is refused gets the public channel only and cannot publish', async () => {
      // A wrong password stands for a cancelled login prompt: headless
      // chromium would wait forever on a prompt nobody answers.
      anon = await openDemoPage(browser, demo, { username: 'demo', password: 'wrong' }, 'anon');
      assert((await anon.page.textContent('#channels')) === 'public/demo', 'anonymous page subscribed to more');
      const pub = uniq('to-anon');
      const priv = uniq('not-for-anon');
      await publishViaForm(A.page, 'public/demo', pub);
      await publishViaForm(A.page, 'user/demo/inbox', priv);
      await anon.page.waitForSelector(rowWith(pub), { timeout: DELIVERY_MS });
      await B.page.waitForSelector(rowWith(priv), { timeout: DELIVERY_MS });
      assert(await anon.page.locator(rowWith(priv)).count() === 0, 'private message reached the anonymous page');
      await publishViaForm(anon.page, 'public/demo', uniq('anon-publish'));
      await anon.page.waitForSelector('#result.error:text-matches("401")', { timeout: 2000 });
    });

    await step('cross-origin page (127.0.0.2) cannot publish with the user\'s login', async () => {
      const mark = uniq('csrf');
      const evilOrigin = `http://127.0.0.2:${evilPort}`;
      const srv = evilServer(demo.origin, mark);
      await new Promise((r) => srv.listen(evilPort, '127.0.0.2', r));
      try {
        const page = await A.ctx.newPage();   // A is logged in: its credentials are at stake
        page.on('console', (m) => consoleLog.write(`[evil] ${m.type()}: ${m.text()}\n`));
        await page.goto(evilOrigin + '/');
        await page.waitForFunction(() => window.done === true, null, { timeout: 10000 });
        const tried = await page.evaluate(() => window.results);
        // The classic CSRF: a top-level form post. Its network partition is
        // the target's, so the browser sends the user's login with it, and
        // the publisher's origin check must be what refuses it.
        const navResp = page.waitForResponse((r) => r.url() === `${demo.origin}/push/publish` &&
                                             r.request().isNavigationRequest() && r.status() !== 401);
        await page.evaluate(() => document.getElementById('top').submit());
        const top = await navResp;
        tried.push(`top-form:${top.status()}`);
        console.log(`     attempts: ${tried.join(' ')}`);
        await page.close();
        for (const r of tried)
          assert(!/:2\d\d$/.test(r), `cross-origin fetch succeeded: ${r}`);
        await sleep(1000);
        for (const { page: p, name } of [{ page: B.page, name: 'B' }, { page: A.page, name: 'A' }]) {
          const leaked = await p.locator(`#messages td.data:text-matches("${mark}")`).count();
          assert(leaked === 0, `a cross-origin message reached page ${name}`);
        }
        const lines = demo.accessLog().split('\n').filter((l) => l.includes(`origin="${evilOrigin}"`));
        const posts = lines.filter((l) => l.includes('"POST /push/publish'));
        console.log(`     nginx saw: ${lines.map((l) => l.replace(/^.*?"(\w+) .*?" (\d+) .*$/, '$1 $2') + (l.includes(' demo "') ? '(demo)' : '')).join(', ')}`);
        assert(posts.length > 0, 'no cross-origin publish reached nginx: the test proves nothing');
        for (const l of posts)
          assert(/" (401|403) /.test(l), `cross-origin publish not refused: ${l}`);
        assert(posts.some((l) => / demo "POST .*" 403 /.test(l)),
               'no cross-origin publish carried the login and was refused by the publisher (403)');
      } finally {
        srv.close();
      }
    });

    await step('publisher refuses foreign Origin / cross-site / form without marker (via nginx)', async () => {
      const auth = 'Basic ' + Buffer.from('demo:demo').toString('base64');
      const post = (headers, body) => fetch(demo.origin + '/push/publish',
        { method: 'POST', headers: { Authorization: auth, ...headers }, body });
      const json = JSON.stringify({ channel: 'public/demo', data: 'x' });
      const cases = [
        ['foreign Origin', { Origin: 'http://127.0.0.2:1', 'Content-Type': 'application/json' }, json, 403],
        ['Sec-Fetch-Site cross-site', { Origin: demo.origin, 'Sec-Fetch-Site': 'cross-site', 'Content-Type': 'application/json' }, json, 403],
        ['form post without X-Requested-With', { Origin: demo.origin, 'Content-Type': 'application/x-www-form-urlencoded' }, 'channel=public/demo&data=x', 403],
        ['no Origin, no Referer', { 'Content-Type': 'application/json' }, json, 403],
        ['same origin, JSON', { Origin: demo.origin, 'Content-Type': 'application/json' }, json, 200],
        ['same origin, form + X-Requested-With', { Origin: demo.origin, 'X-Requested-With': 'x', 'Content-Type': 'application/x-www-form-urlencoded' }, 'channel=public/demo&data=x', 200],
        ['channel of another user', { Origin: demo.origin, 'Content-Type': 'application/json' }, JSON.stringify({ channel: 'user/alice/inbox', data: 1 }), 403],
      ];
      for (const [name, headers, body, want] of cases) {
        const r = await post(headers, body);
        assert(r.status === want, `${name}: HTTP ${r.status}, want ${want}`);
      }
      const noauth = await fetch(demo.origin + '/push/publish', { method: 'POST', headers: { Origin: demo.origin, 'Content-Type': 'application/json' }, body: json });
      assert(noauth.status === 401, `no login: HTTP ${noauth.status}, want 401`);
      // nginx's own refusals are JSON too, the login challenge kept.
      assert(/^application\/json/.test(noauth.headers.get('content-type') || ''), `no login: ${noauth.headers.get('content-type')}`);
      assert((await noauth.json()).error === 'unauthorized', 'no login: not the JSON error');
      assert(/^Basic /.test(noauth.headers.get('www-authenticate') || ''), 'no login: WWW-Authenticate missing');
    });

    await step('revoked tokens: pages reconnect with a fresh token and resume from last_id', async () => {
      await B.page.evaluate(() => {
        window.stateLog = [];
        window.wspushDemo.on('state', (s) => window.stateLog.push(s.state + (s.code ? ':' + s.code : '')));
      });
      const wsUrls = [];
      B.page.on('websocket', (ws) => wsUrls.push(ws.url()));
      const before = await B.page.locator('#messages tr.message').count();
      const d = await demo.cli('disconnect', 'demo');
      assert(d.code === 0, `wspush disconnect failed: ${d.stderr}`);
      assert(/disconnected=[1-9]/.test(d.stdout), `disconnect closed nothing: ${d.stdout}`);
      // Published while B is (most likely) still reconnecting: the replay
      // from last_id or the live feed must show it, and only once.
      const text = uniq('during-reconnect');
      const p = await demo.cli('publish', 'user/demo/inbox', JSON.stringify(text));
      assert(p.code === 0, `wspush publish failed: ${p.stderr}`);
      await B.page.waitForSelector(rowWith(text), { timeout: 5000 });
      await B.page.waitForSelector('#state[data-state="open"]', { timeout: 5000 });
      const log = await B.page.evaluate(() => window.stateLog);
      console.log(`     B states: ${log.join(' ')}`);
      assert(log.includes('reconnecting:4401'), 'B did not see close 4401');
      assert(log[log.length - 1] === 'open', 'B did not end open');
      assert(await B.page.locator(rowWith(text)).count() === 1, 'message shown twice');
      const after = await B.page.locator('#messages tr.message').count();
      assert(after === before + 1, `B shows ${after - before} new rows, want 1`);
      assert(wsUrls.length > 0 && wsUrls.every((u) => /[?&]last_id=[^&]+/.test(u)),
             `reconnect without last_id: ${wsUrls.join(' ')}`);
      // Still live after the reconnect.
      const again = uniq('after-reconnect');
      await publishViaForm(A.page, 'user/demo/inbox', again);
      await B.page.waitForSelector(rowWith(again), { timeout: DELIVERY_MS });
    });

    await step('native EventSource through nginx (/sse) and straight to ws-server (CORS): greeting, then messages', async () => {
      const page = A.page;
      await page.evaluate((wsPort) => {
        window.es = {};
        for (const [name, url] of [['nginx', '/sse?channels=public/demo'],
                                   ['direct', `http://127.0.0.1:${wsPort}/sse?channels=public/demo`]]) {
          const rec = { events: [], source: new EventSource(url) };
          for (const type of ['subscribed', 'message'])
            rec.source.addEventListener(type, (e) => rec.events.push({ type, id: e.lastEventId, data: JSON.parse(e.data) }));
          window.es[name] = rec;
        }
      }, ports.wsPort);
      await page.waitForFunction(() => Object.values(window.es).every((r) => r.events.length === 1), null, { timeout: 5000 });
      const text = uniq('es');
      const p = await demo.cli('publish', 'public/demo', JSON.stringify(text));
      assert(p.code === 0, `wspush publish failed: ${p.stderr}`);
      const id = /id=(\S+)/.exec(p.stdout)[1];
      await page.waitForFunction(() => Object.values(window.es).every((r) => r.events.length === 2), null, { timeout: 3000 });
      const es = await page.evaluate(() => {
        const out = {};
        for (const [k, r] of Object.entries(window.es)) { out[k] = r.events; r.source.close(); }
        return out;
      });
      for (const [name, events] of Object.entries(es)) {
        assert(events[0].type === 'subscribed' && events[0].data.type === 'subscribed', `${name}: ${JSON.stringify(events[0])}`);
        const m = events[1];
        assert(m.type === 'message' && m.id === id && m.data.id === id && m.data.data === text &&
               m.data.channel === 'public/demo', `${name}: ${JSON.stringify(m)}`);
      }
      // nginx logs a request when it ends, after the page closed it and
      // ws-server's side is gone too: wait for the line (bounded).
      const logged = () => /"GET \/sse\?channels=public\/demo HTTP\/1.1" 200 /.test(demo.accessLog());
      for (const t0 = Date.now(); !logged() && Date.now() - t0 < 5000;) await sleep(50);
      assert(logged(), 'nginx did not log the stream within 5 s of its end');
    });

    await step('native EventSource reconnects after a server-side close and resumes with Last-Event-ID exactly', async () => {
      const solo = new SoloServer(await freePort(), demo.origin);
      await solo.start();
      try {
        const page = A.page;
        await page.evaluate((port) => {
          window.solo = { got: [], closes: [], opens: 0 };
          const s = new EventSource(`http://127.0.0.1:${port}/sse?channels=public/es`);
          s.addEventListener('subscribed', () => window.solo.opens++);
          s.addEventListener('message', (e) => window.solo.got.push([e.lastEventId, JSON.parse(e.data).data]));
          s.addEventListener('close', (e) => window.solo.closes.push(JSON.parse(e.data).code));
          window.solo.source = s;
        }, solo.port);
        await page.waitForFunction(() => window.solo.opens === 1, null, { timeout: 5000 });
        const publish = async (m) => {
          const r = await solo.publish('public/es', m);
          assert(r.code === 0, r.stderr);
          return /id=(\S+)/.exec(r.stdout)[1];
        };
        // idle_timeout ends the stream before any message (close 1000): the
        // browser reconnects from the greeting's id; publish into the gap.
        await page.waitForFunction(() => window.solo.closes.length === 1, null, { timeout: 5000 });
        const ids = [await publish('m0')];
        assert(await page.evaluate(() => window.solo.got.length) === 0, 'a message arrived while disconnected');
        await page.waitForFunction(() => window.solo.got.length === 1, null, { timeout: 10000 });
        ids.push(await publish('m1'));
        await page.waitForFunction(() => window.solo.got.length === 2, null, { timeout: 3000 });
        // idle_timeout ends the stream a second after m1; again a gap.
        await page.waitForFunction(() => window.solo.closes.length === 2, null, { timeout: 5000 });
        for (const m of ['m2', 'm3', 'm4'])
          ids.push(await publish(m));
        assert(await page.evaluate(() => window.solo.got.length) === 2, 'messages arrived while disconnected');
        await page.waitForFunction(() => window.solo.got.length >= 5, null, { timeout: 10000 });
        await sleep(300);
        const got = await page.evaluate(() => { window.solo.source.close(); return window.solo; });
        console.log(`     closes ${got.closes.join(',')}, greetings ${got.opens}`);
        assert(got.closes[0] === 1000 && got.closes[1] === 1000 && got.opens >= 3, 'no server-side close and reconnect');
        assert(JSON.stringify(got.got.map((g) => g[1])) === JSON.stringify(['m0', 'm1', 'm2', 'm3', 'm4']),
               `messages ${JSON.stringify(got.got)}`);
        assert(JSON.stringify(got.got.map((g) => g[0])) === JSON.stringify(ids), 'ids out of order');
      } finally {
        await solo.stop();
      }
    });

    await step('wspush.js over SSE from an origin ws-server does not allow: reads the 403 and stops', async () => {
      const solo = new SoloServer(await freePort(), 'https://other.example');
      await solo.start();
      try {
        const page = A.page;
        await page.evaluate((port) => {
          window.refused = { states: [] };
          const p = new window.WsPush({ url: `ws://127.0.0.1:${port}/ws`, transport: 'sse',
                                        channels: ['public/x'], minDelay: 50, maxDelay: 200 });
          p.on('state', (s) => window.refused.states.push(s.state + (s.code ? ':' + s.code : '')));
          p.connect();
          window.refused.push = p;
        }, solo.port);
        await page.waitForFunction(() => window.refused.states.includes('failed:403'), null, { timeout: 5000 });
        await sleep(500);    // several retry delays: none may follow
        const states = await page.evaluate(() => { window.refused.push.close(); return window.refused.states; });
        console.log(`     states: ${states.join(' ')}`);
        assert(JSON.stringify(states) === JSON.stringify(['connecting', 'failed:403', 'closed:1000']),
               `states ${states.join(' ')}`);
      } finally {
        await solo.stop();
      }
    });

    await step('wspush.js over SSE through nginx (?transport=sse): token, delivery, 4401 -> fresh token and resume', async () => {
      const ctx = await browser.newContext({ httpCredentials: CREDS });
      const page = await ctx.newPage();
      page.on('console', (m) => consoleLog.write(`[sse] ${m.type()}: ${m.text()}\n`));
      try {
        await page.goto(demo.origin + '/?transport=sse');
        await page.waitForSelector('#state[data-state="open"][data-transport="sse"]', { timeout: 10000 });
        let sockets = 0;
        page.on('websocket', () => sockets++);
        const text = uniq('sse-private');
        const t0 = await publishViaForm(A.page, 'user/demo/inbox', text);
        const ms = await deliveredWithin(page, text, t0, DELIVERY_MS + 2000);
        assert(ms <= DELIVERY_MS, `delivered after ${ms} ms`);
        console.log(`     delivered in ${ms} ms`);
        await page.evaluate(() => {
          window.stateLog = [];
          window.wspushDemo.on('state', (s) => window.stateLog.push(s.state + (s.code ? ':' + s.code : '')));
        });
        const d = await demo.cli('disconnect', 'demo');
        assert(d.code === 0 && /disconnected=[1-9]/.test(d.stdout), `disconnect: ${d.stdout} ${d.stderr}`);
        const during = uniq('sse-during-reconnect');
        const p = await demo.cli('publish', 'user/demo/inbox', JSON.stringify(during));
        assert(p.code === 0, p.stderr);
        await page.waitForSelector(rowWith(during), { timeout: 5000 });
        await page.waitForSelector('#state[data-state="open"][data-transport="sse"]', { timeout: 5000 });
        const log = await page.evaluate(() => window.stateLog);
        console.log(`     states: ${log.join(' ')}`);
        assert(log.includes('reconnecting:4401'), 'no close 4401 seen over SSE');
        assert(await page.locator(rowWith(during)).count() === 1, 'message shown twice');
        assert(sockets === 0, 'a WebSocket was opened in SSE mode');
        // nginx logs a request when it ends: the stream closed by 4401
        // (200) and any refused retry (a token fetched in the second of
        // the revocation is refused too); the resumed one is still open.
        const lines = demo.accessLog().split('\n').filter((l) => l.includes('"GET /sse?'));
        assert(lines.some((l) => /&token=[^& ]+ HTTP\/1.1" 200 /.test(l)), `no ended stream: ${lines.join('\n')}`);
      } finally {
        await ctx.close();
      }
    });

    await step('wspush.js moves to SSE when a proxy refuses WebSocket, and only then', async () => {
      const proxyPort = await freePort();
      const srv = noWebSocketProxy(ports.wsPort, 'public/demo');
      await new Promise((r) => srv.listen(proxyPort, '127.0.0.1', r));
      const ctx = await browser.newContext();
      try {
        const page = await ctx.newPage();
        page.on('console', (m) => consoleLog.write(`[proxy] ${m.type()}: ${m.text()}\n`));
        await page.goto(`http://127.0.0.1:${proxyPort}/`);
        await page.waitForFunction(() => window.states.includes('open:sse'), null, { timeout: 10000 });
        const states = await page.evaluate(() => window.states);
        console.log(`     states: ${states.join(' ')}`);
        const wsFails = states.filter((s) => s.startsWith('reconnecting:websocket')).length;
        assert(wsFails === 3, `${wsFails} WebSocket failures before the switch, want 3`);
        assert(!states.some((s) => s.startsWith('open:websocket')), 'opened a WebSocket through the proxy');
        const text = uniq('via-proxy');
        const p = await demo.cli('publish', 'public/demo', JSON.stringify(text));
        assert(p.code === 0, p.stderr);
        await page.waitForFunction((t) => window.got.includes(t), text, { timeout: 3000 });
      } finally {
        await ctx.close();
        srv.close();
      }
    });

    await step('native EventSource over TLS (https:// on the wss:// port)', async () => {
      const page = A.page;
      await page.evaluate((tlsPort) => {
        window.tlsEs = { events: [], source: new EventSource(`https://127.0.0.1:${tlsPort}/sse?channels=public/demo`) };
        for (const type of ['subscribed', 'message'])
          window.tlsEs.source.addEventListener(type, (e) =>
            window.tlsEs.events.push({ type, id: e.lastEventId, data: JSON.parse(e.data) }));
      }, demo.tlsPort);
      await page.waitForFunction(() => window.tlsEs.events.length === 1, null, { timeout: 5000 });
      const text = uniq('sse-tls');
      const p = await demo.cli('publish', 'public/demo', JSON.stringify(text));
      assert(p.code === 0, p.stderr);
      const id = /id=(\S+)/.exec(p.stdout)[1];
      await page.waitForFunction(() => window.tlsEs.events.length === 2, null, { timeout: 3000 });
      const events = await page.evaluate(() => { window.tlsEs.source.close(); return window.tlsEs.events; });
      assert(events[0].type === 'subscribed', JSON.stringify(events[0]));
      assert(events[1].type === 'message' && events[1].id === id && events[1].data.data === text,
             JSON.stringify(events[1]));
    });

    await step('permessage-deflate through nginx: negotiated, a large message arrives intact', async () => {
      const page = await A.ctx.newPage();
      const cdp = await A.ctx.newCDPSession(page);
      await cdp.send('Network.enable');
      const answer = new Promise((resolve) => cdp.on('Network.webSocketHandshakeResponseReceived',
        (e) => resolve(Object.entries(e.response.headers)
          .find(([k]) => k.toLowerCase() === 'sec-websocket-extensions')?.[1])));
      await page.goto(demo.origin + '/');
      await page.waitForSelector('#state[data-state="open"]', { timeout: 10000 });
      const ext = await Promise.race([answer, sleep(5000).then(() => 'no handshake event')]);
      assert(ext === 'permessage-deflate; server_no_context_takeover',
             `Sec-WebSocket-Extensions: ${ext}`);
      const text = uniq('big') + ' ' + 'the quick brown fox jumps over the lazy dog '.repeat(80);
      const p = await demo.cli('publish', 'public/demo', JSON.stringify(text));
      assert(p.code === 0, `wspush publish failed: ${p.stderr}`);
      await page.waitForSelector(rowWith(text), { timeout: 5000 });
      await page.close();
    });

    await step('a page over wss:// (Chromium trusting the demo certificate) gets messages', async () => {
      const wsUrls = [];
      const ctx = await browser.newContext({ httpCredentials: CREDS });
      const page = await ctx.newPage();
      page.on('websocket', (ws) => wsUrls.push(ws.url()));
      page.on('console', (m) => consoleLog.write(`[tls] ${m.type()}: ${m.text()}\n`));
      await page.goto(demo.origin + '/?ws=tls');
      await page.waitForSelector('#state[data-state="open"]', { timeout: 10000 });
      assert(wsUrls.length > 0 && wsUrls.every((u) => u.startsWith(`wss://127.0.0.1:${demo.tlsPort}/ws?`)),
             `not over TLS: ${wsUrls.join(' ')}`);
      assert((await page.inputValue('#via')) === 'tls', 'selector does not show tls');
      for (const [channel, what] of [['public/demo', 'public'], ['user/demo/inbox', 'private']]) {
        const text = uniq(`over-tls-${what}`);
        const t0 = await publishViaForm(A.page, channel, text);
        const ms = await deliveredWithin(page, text, t0, DELIVERY_MS + 2000);
        assert(ms <= DELIVERY_MS, `${what}: delivered after ${ms} ms`);
        console.log(`     ${what} over wss:// in ${ms} ms`);
      }
      // The selector switches back to the proxied connection.
      await Promise.all([page.waitForNavigation(), page.selectOption('#via', 'proxied')]);
      await page.waitForSelector('#state[data-state="open"]', { timeout: 10000 });
      assert(wsUrls[wsUrls.length - 1].startsWith(`ws://127.0.0.1:${demo.port}/ws?`),
             `not proxied after the switch: ${wsUrls[wsUrls.length - 1]}`);
      await ctx.close();
    });

    await step('screenshot of the demo page', async () => {
      await B.page.screenshot({ path: path.join(OUT, 'demo.png'), fullPage: true });
      assert(fs.statSync(path.join(OUT, 'demo.png')).size > 1000, 'empty screenshot');
    });
  } finally {
    await browser.close().catch(() => {});
  }

  await step('SIGTERM stops the demo and leaves nothing behind', () => demo.stop('SIGTERM'));

  await step('a second run on the same ports starts and stops cleanly (SIGINT)', async () => {
    const again = new Demo(ports, { log: demoLog });
    await again.start();
    const r = await fetch(again.origin + '/');
    assert(r.status === 200, `GET / after restart: ${r.status}`);
    await again.stop('SIGINT');
  });
}

await runTest('browser', main, { logs: [demoLog, consoleLog] });
