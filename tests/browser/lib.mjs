// What the browser tests share: ports, the demo processes (conf/demo/run.sh
// on free ports), Debian's chromium, the steps and their summary, and a
// page on another loopback origin that tries to publish.
import { spawn, execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');
export const BIN = path.resolve(process.env.WSPUSH_BIN || path.join(ROOT, 'build/bin'));
export const OUT = path.join(HERE, 'output');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const uniq = (what) => `${what}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;

export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// A port nothing listens on now, and never one this process handed out
// before: the kernel may give a just-closed port again, and two servers of
// one test must not be told the same port.
const portsGiven = new Set();
function anyFreePort(host) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export async function freePort(host = '127.0.0.1') {
  for (let i = 0; i < 100; i++) {
    const port = await anyFreePort(host);
    if (!portsGiven.has(port)) {
      portsGiven.add(port);
      return port;
    }
  }
  throw new Error('no free port not handed out before in 100 tries');
}

export function portOpen(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export function run(file, args) {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 10000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

export function checkBinaries() {
  for (const p of ['ws-server', 'fcgi-publisher', 'wspush'])
    assert(fs.existsSync(path.join(BIN, p)), `${BIN}/${p} missing: build first (make all)`);
}

// ---- the demo processes

const liveDemos = new Set();   // stopped at exit whatever happened

export async function freePorts() {
  return { port: await freePort(), wsPort: await freePort(),
           metricsPort: await freePort(), pubMetricsPort: await freePort(), tlsPort: await freePort() };
}

// conf/demo/run.sh on the given ports; env selects the site
// (WSPUSH_DEMO_SITE, WSPUSH_DEMO_WEB), log is a writable stream. script
// and ready name another demo script and the line that says it is up
// (conf/demo/run-cluster.sh).
export class Demo {
  constructor(ports, { env = {}, log, script = 'conf/demo/run.sh', ready = 'wspush demo running' } = {}) {
    Object.assign(this, ports);
    this.env = env;
    this.log = log;
    this.script = script;
    this.readyText = ready;
    this.origin = `http://127.0.0.1:${this.port}`;
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'wspush-browser-'));
    fs.chmodSync(parent, 0o711);   // Apache's workers (www-data) pass through to the sockets
    this.dir = path.join(parent, 'run');
  }

  async start() {
    this.out = '';
    this.proc = spawn('bash', [path.join(ROOT, this.script), BIN], {
      env: { ...process.env, ...this.env, WSPUSH_DEMO_PORT: String(this.port),
             WSPUSH_DEMO_WS_PORT: String(this.wsPort),
             WSPUSH_DEMO_METRICS_PORT: String(this.metricsPort),
             WSPUSH_DEMO_PUB_METRICS_PORT: String(this.pubMetricsPort),
             WSPUSH_DEMO_TLS_PORT: String(this.tlsPort), WSPUSH_DEMO_DIR: this.dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    liveDemos.add(this);
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, sig) => {
      liveDemos.delete(this);
      resolve({ code, sig });
    }));
    this.proc.stderr.on('data', (d) => this.log.write(d));
    const ready = new Promise((resolve, reject) => {
      this.proc.stdout.on('data', (d) => {
        this.log.write(d);
        this.out += d;
        if (this.out.includes(this.readyText)) resolve();
      });
      this.exited.then(({ code }) => reject(new Error(`run.sh exited early (status ${code}); see ${this.log.path}`)));
      setTimeout(() => reject(new Error(`demo not ready in 20s; see ${this.log.path}`)), 20000);
    });
    await ready;
  }

  // Stops run.sh the way Ctrl-C or `kill` of make would, and checks that
  // nothing is left behind: exit 0, runtime directory gone, ports free.
  async stop(signal = 'SIGTERM') {
    this.proc.kill(signal);
    const res = await Promise.race([this.exited, sleep(15000).then(() => null)]);
    assert(res, `run.sh did not exit within 15s of ${signal}`);
    assert(res.code === 0, `run.sh exited with ${res.code ?? res.sig} after ${signal}`);
    assert(!fs.existsSync(this.dir), `runtime directory ${this.dir} left behind`);
    fs.rmSync(path.dirname(this.dir), { recursive: true, force: true });
    for (const p of [this.port, this.wsPort, this.tlsPort])
      assert(!(await portOpen(p)), `port ${p} still open after ${signal}`);
    const left = processesUsing(this.dir);
    assert(left.length === 0, `processes left behind after ${signal}: ${left.join('; ')}`);
  }

  file(name) {
    try { return fs.readFileSync(path.join(this.dir, name), 'utf8'); } catch { return ''; }
  }

  accessLog() {
    return this.file('access.log');
  }

  // The base64 SHA-256 of the demo certificate's public key: what
  // Chromium's --ignore-certificate-errors-spki-list trusts.
  spki() {
    const cert = new crypto.X509Certificate(fs.readFileSync(path.join(this.dir, 'cert.pem')));
    const der = cert.publicKey.export({ type: 'spki', format: 'der' });
    return crypto.createHash('sha256').update(der).digest('base64');
  }

  cli(...args) {
    return run(path.join(BIN, 'wspush'), ['-s', path.join(this.dir, 'publish.sock'), ...args]);
  }
}

// The processes that still refer to dir: in their command line or
// environment (run.sh passes WSPUSH_DEMO_DIR down), their working
// directory or an open file. nginx and php-fpm rewrite their workers'
// titles, hence more than the command line.
export function processesUsing(dir) {
  const found = [];
  const read = (f) => { try { return fs.readFileSync(f, 'latin1'); } catch { return ''; } };
  const link = (f) => { try { return fs.readlinkSync(f); } catch { return ''; } };
  const under = (p) => p === dir || p.startsWith(dir + '/');
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    const cmd = read(`/proc/${pid}/cmdline`);
    let hit = cmd.includes(dir) || read(`/proc/${pid}/environ`).includes(dir) || under(link(`/proc/${pid}/cwd`));
    if (!hit) {
      let fds = [];
      try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch {}
      hit = fds.some((fd) => under(link(`/proc/${pid}/fd/${fd}`).replace(/ \(deleted\)$/, '')));
    }
    if (hit && Number(pid) !== process.pid) found.push(`${pid} ${cmd.replace(/\0/g, ' ').trim()}`);
  }
  return found;
}

export async function stopAllDemos() {
  for (const d of liveDemos) {
    d.proc.kill('SIGTERM');
    await Promise.race([d.exited, sleep(10000)]);
  }
}

// ---- chromium

export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           ...extraArgs],
  });
}

// ---- the demo page (conf/demo/www/index.html)

// A new browser context (with login creds, if any) on the demo page at
// url, its console written to log; returns once wspush.js is connected.
export async function openDemoPageAt(browser, url, creds, label, log) {
  const ctx = await browser.newContext(creds ? { httpCredentials: creds } : {});
  const page = await ctx.newPage();
  page.on('console', (m) => log.write(`[${label}] ${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => log.write(`[${label}] pageerror: ${e.message}\n`));
  await page.goto(url);
  await page.waitForSelector('#state[data-state="open"]', { timeout: 10000 });
  return { ctx, page };
}

export const rowWith = (text) => `#messages tr.message:has(td.data:text-is("${text}"))`;

// Fills the form and clicks Publish; returns the time of the click.
export async function publishViaForm(page, channel, text) {
  // The previous publish clears the input when it completes: wait for it.
  await page.locator('#send:enabled').waitFor();
  await page.selectOption('#channel', channel);
  await page.fill('#text', text);
  const t0 = Date.now();
  await page.click('#send', { noWaitAfter: true });
  return t0;
}

// ---- the steps: each prints ok/FAIL with its time, the summary counts them

const results = [];
export async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}: ${e.message}`);
  }
}

// Runs main under an overall timeout, stops every demo left, prints the
// summary and exits 0 only when every step passed.
export async function runTest(label, main, { timeoutMs = 180000, logs = [] } = {}) {
  const watchdog = setTimeout(() => {
    console.log(`FAIL ${label}: overall timeout (${timeoutMs / 1000} s)`);
    for (const d of liveDemos) d.proc.kill('SIGTERM');
    setTimeout(() => process.exit(1), 3000);
  }, timeoutMs);
  try {
    await main();
  } catch (e) {
    results.push({ name: 'setup', ok: false });
    console.log(`FAIL setup: ${e.message}`);
  }
  await stopAllDemos();
  clearTimeout(watchdog);
  for (const l of logs) l.end();
  const failed = results.filter((r) => !r.ok).length;
  console.log(`${label}: ${results.length - failed} passed, ${failed} failed; output in ${path.relative(ROOT, OUT)}/`);
  process.exit(failed ? 1 : 0);
}

// ---- a page from another loopback origin that tries to publish

// An HTTP server whose page posts to target's /push/publish in every way a
// foreign page can (simple fetch, preflighted fetch, no-cors fetch, hidden
// form; a top-level form #top is left for the test to submit), each
// message marked with `mark`; window.results lists what the page saw and
// window.done is set when it is through.
export function evilServer(target, mark, channel = 'public/demo') {
  const page = `<!doctype html><meta charset="utf-8"><title>elsewhere</title>
<iframe name="sink" style="display:none"></iframe>
<form id="f" method="POST" action="${target}/push/publish" target="sink">
  <input name="channel" value="${channel}"><input name="data" value="${mark}-form">
</form>
<form id="top" method="POST" action="${target}/push/publish">
  <input name="channel" value="${channel}"><input name="data" value="${mark}-top">
</form>
<script>
window.results = [];
async function attempt(name, init) {
  try {
    const r = await fetch(${JSON.stringify(target)} + '/push/publish',
                          Object.assign({ method: 'POST', credentials: 'include' }, init));
    results.push(name + ':' + (r.type === 'opaque' ? 'opaque' : r.status));
  } catch (e) { results.push(name + ':blocked'); }
}
(async () => {
  await attempt('simple', { headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
                            body: 'channel=${channel}&data=${mark}-simple' });
  await attempt('json', { headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'x' },
                          body: JSON.stringify({ channel: '${channel}', data: '${mark}-json' }) });
  await attempt('nocors', { mode: 'no-cors', headers: { 'Content-Type': 'text/plain' },
                            body: 'channel=${channel}&data=${mark}-nocors' });
  const sink = document.querySelector('iframe');
  await new Promise((resolve) => { sink.onload = resolve; document.getElementById('f').submit();
                                   setTimeout(resolve, 3000); });
  results.push('form:submitted');
  window.done = true;
})();
</script>`;
  return http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page);
  });
}
