// permessage-deflate with the clients people use: Node's `ws` and
// Debian's chromium (playwright-core, CDP) against ws-server on free
// loopback ports. Each negotiates the extension, receives a large
// compressible message and a small one byte for byte, and ws-server's
// metrics show that the large one was compressed, once, for all of them.
// An offer limiting server_max_window_bits below 15 is declined and the
// connection still works uncompressed.
//
//   node tests/browser/deflate.test.mjs    (WSPUSH_BIN = the binaries'
//                                           directory, default build/bin)
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

import { BIN, assert, freePort } from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ANSWER = 'permessage-deflate; server_no_context_takeover';

const within = (ms, p, what) => Promise.race([
  p, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: nothing in ${ms} ms`)), ms))]);

// A large compressible JSON value and a small one (under deflate_min_bytes).
const BIG = { items: Array.from({ length: 60 }, (_, i) => ({ id: i, name: `item ${i}`, price: i * 7.5, tags: ['a', 'b'] })) };
const SMALL = { n: 1, s: 'é€😀' };

// ---- ws-server on its own

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspush-deflate-'));
const [wsPort, metricsPort] = [await freePort(), await freePort()];
const sock = path.join(dir, 'publish.sock');
fs.writeFileSync(path.join(dir, 'secret'), 'deflate-test-secret-0123456789abcdef\n', { mode: 0o600 });
fs.writeFileSync(path.join(dir, 'wspush.ini'), `[wspush]
publish_socket = ${sock}
secret_file = secret
[ws-server]
listen = 127.0.0.1:${wsPort}
metrics_listen = 127.0.0.1:${metricsPort}
[channels]
public = public/*
`);
const server = spawn(path.join(BIN, 'ws-server'), ['-c', path.join(dir, 'wspush.ini')],
                     { stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'ws-server.log'), 'w')] });
const serverExit = new Promise((resolve) => server.once('exit', (code, sig) => resolve({ code, sig })));

async function metric(name, labels = '') {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  assert(line, `metric ${name}${labels} missing`);
  return Number(line.split(' ')[1]);
}

function publish(channel, value) {
  return new Promise((resolve, reject) => {
    execFile(path.join(BIN, 'wspush'), ['-s', sock, 'publish', channel, JSON.stringify(value)],
             { timeout: 10000 }, (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout)));
  });
}

async function waitReady() {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status === 200 && fs.existsSync(sock))
        return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('ws-server not up in 10 s; see ' + path.join(dir, 'ws-server.log'));
}

// ---- Node ws

// Opens a ws client; resolves with it and a queue of its messages once
// the "subscribed" greeting is in.
function nodeClient(options) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${wsPort}/ws?channels=public/a`, options);
    const queue = [];
    const waiters = [];
    let answer = '';
    ws.once('upgrade', (res) => { answer = res.headers['sec-websocket-extensions'] || ''; });
    ws.on('message', (data, isBinary) => {
      assert(!isBinary, 'binary message');
      const m = JSON.parse(data.toString('utf8'));
      if (m.type === 'subscribed') return resolve({ ws, next, answer });
      if (waiters.length) waiters.shift()(m); else queue.push(m);
    });
    ws.once('error', reject);
    function next() {
      return within(5000, new Promise((r) => (queue.length ? r(queue.shift()) : waiters.push(r))), 'ws message');
    }
  });
}

const results = [];
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push(true);
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push(false);
    console.log(`FAIL ${name}: ${e.message}`);
  }
}

const watchdog = setTimeout(() => {
  console.log('FAIL deflate test: overall timeout (60 s)');
  server.kill('SIGKILL');
  process.exit(1);
}, 60000);

let browser;
try {
  await waitReady();

  await step('Node ws negotiates permessage-deflate and decodes a large and a small message', async () => {
    const before = await metric('wspush_deflate_messages_total', '{result="compressed"}');
    const a = await nodeClient({ perMessageDeflate: true });
    const b = await nodeClient({ perMessageDeflate: true });
    assert(a.answer === ANSWER, `Sec-WebSocket-Extensions: "${a.answer}"`);
    assert(a.ws.extensions === 'permessage-deflate', `ws negotiated "${a.ws.extensions}"`);
    await publish('public/a', BIG);
    await publish('public/a', SMALL);
    for (const c of [a, b]) {
      const big = await c.next();
      const small = await c.next();
      assert(JSON.stringify(big.data) === JSON.stringify(BIG), 'large message altered');
      assert(JSON.stringify(small.data) === JSON.stringify(SMALL), 'small message altered');
      c.ws.close();
    }
    const after = await metric('wspush_deflate_messages_total', '{result="compressed"}');
    assert(after - before === 1, `${after - before} compressions for one message to two clients`);
  });

  await step('Node ws with clientNoContextTakeover: false accepts the answer and decodes', async () => {
    // It offers no client_no_context_takeover and fails the connection
    // on an answer that names it.
    const c = await nodeClient({ perMessageDeflate: { clientNoContextTakeover: false } });
    assert(c.answer === ANSWER && c.ws.extensions === 'permessage-deflate', `extensions: "${c.answer}"`);
    await publish('public/a', BIG);
    assert(JSON.stringify((await c.next()).data) === JSON.stringify(BIG), 'large message altered');
    c.ws.close();
  });

  await step('Node ws asking for server_max_window_bits=10 is declined and still served', async () => {
    const c = await nodeClient({ perMessageDeflate: { serverMaxWindowBits: 10 } });
    assert(c.answer === '' && c.ws.extensions === '', `extensions: "${c.answer}"`);
    await publish('public/a', BIG);
    assert(JSON.stringify((await c.next()).data) === JSON.stringify(BIG), 'large message altered');
    c.ws.close();
  });

  await step('Chromium negotiates permessage-deflate (CDP) and the page gets the messages exactly', async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage();
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    const handshake = new Promise((resolve) => cdp.on('Network.webSocketHandshakeResponseReceived',
                                                       (e) => resolve(e.response)));
    const framesIn = [];
    cdp.on('Network.webSocketFrameReceived', (e) => framesIn.push(e.response.payloadData));
    const before = await metric('wspush_deflate_messages_total', '{result="compressed"}');
    await page.evaluate((url) => new Promise((resolve, reject) => {
      window.got = [];
      const ws = new WebSocket(url);
      ws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        if (m.type === 'subscribed') resolve(); else window.got.push(m.data);
      };
      ws.onerror = () => reject(new Error('WebSocket error'));
    }), `ws://127.0.0.1:${wsPort}/ws?channels=public/a`);
    const resp = await within(5000, handshake, 'handshake event');
    const ext = Object.entries(resp.headers).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions');
    assert(ext && ext[1] === ANSWER, `Sec-WebSocket-Extensions seen by Chromium: ${ext && ext[1]}`);
    await publish('public/a', BIG);
    await publish('public/a', SMALL);
    await page.waitForFunction(() => window.got.length === 2, null, { timeout: 5000 });
    const got = await page.evaluate(() => window.got);
    assert(JSON.stringify(got[0]) === JSON.stringify(BIG), 'large message altered in the page');
    assert(JSON.stringify(got[1]) === JSON.stringify(SMALL), 'small message altered in the page');
    assert(framesIn.some((p) => p.includes('"item 59"')), 'CDP did not see the large frame');
    const after = await metric('wspush_deflate_messages_total', '{result="compressed"}');
    assert(after - before === 1, `${after - before} compressions, want 1`);
    // Node's three, Chromium's; not the declined one.
    assert(await metric('wspush_deflate_connections_total') === 4, 'upgrades with deflate miscounted');
  });
} catch (e) {
  results.push(false);
  console.log(`FAIL setup: ${e.message}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  server.kill('SIGTERM');
  const { code } = await within(10000, serverExit, 'ws-server exit').catch(() => ({ code: -1 }));
  if (code !== 0) {
    results.push(false);
    console.log(`FAIL ws-server exited ${code}:\n${fs.readFileSync(path.join(dir, 'ws-server.log'), 'utf8').slice(-3000)}`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
  clearTimeout(watchdog);
}
const failed = results.filter((r) => !r).length;
console.log(`deflate: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
