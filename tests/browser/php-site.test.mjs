// Browser test of the PHP example site (conf/php/, `make run-php`), under
// nginx (auth_request against the PHP session) and under Apache (the login
// JWT cookie, auth = jwt): Debian's chromium driven by playwright-core, the
// site started by conf/demo/run.sh on free ports.
//
//   node tests/browser/php-site.test.mjs     (WSPUSH_BIN = the binaries'
//       directory, default build/bin; WSPUSH_PHP_WEB='nginx apache' the variants)
// Output (screenshots php-<web>.png, the site's log, the pages' console)
// goes to tests/browser/output/.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { OUT, Demo, assert, checkBinaries, evilServer, freePort, freePorts, launchChromium,
         runTest, step, uniq } from './lib.mjs';

const VARIANTS = (process.env.WSPUSH_PHP_WEB || 'nginx apache').split(/\s+/).filter(Boolean);
const INBOX = 'user/demo/inbox';
const PUBLIC = 'public/demo';
const WAIT = 5000;        // the longest any expected change may take

fs.mkdirSync(OUT, { recursive: true });
const consoleLog = fs.createWriteStream(path.join(OUT, 'php-console.log'));

const rowWith = (text) => `#messages tr.message:has(td:has-text("${text}"))`;

function watch(page, label) {
  page.on('console', (m) => consoleLog.write(`[${label}] ${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => consoleLog.write(`[${label}] pageerror: ${e.message}\n`));
  page.wsUrls = [];
  page.on('websocket', (ws) => page.wsUrls.push(ws.url()));
  return page;
}

// Logs in through the form and waits for the page's socket to be open.
async function logIn(ctx, demo, label) {
  const page = watch(await ctx.newPage(), label);
  await page.goto(demo.origin + '/');
  await page.fill('input[name=user]', 'demo');
  await page.fill('input[name=password]', 'demo');
  await page.press('input[name=password]', 'Enter');
  await page.waitForSelector('#state[data-state="open"]', { timeout: WAIT });
  return page;
}

// The page's state changes and token errors, from now on.
function record(page) {
  return page.evaluate(() => {
    window.stateLog = [];
    window.tokenErrors = [];
    window.sitePush.on('state', (s) => window.stateLog.push(s.state + (s.code ? ':' + s.code : '')));
    window.sitePush.on('error', (e) => { if (e.stage === 'token') window.tokenErrors.push(e.error.status); });
  });
}

async function publishViaForm(page, channel, text) {
  await page.selectOption('#channel', channel);
  await page.fill('#text', text);
  await page.evaluate(() => { document.getElementById('result').textContent = ''; });
  // Enter submits as a user would; a click waited a second or two for
  // the button to count as stable while rows were being added.
  await page.press('#text', 'Enter');
  await page.waitForSelector('#result:text-matches("^published ")', { timeout: WAIT });
}

async function isJson401(r, what) {
  assert(r.status === 401, `${what}: HTTP ${r.status}, want 401`);
  assert(/^application\/json/.test(r.headers.get('content-type') || ''), `${what}: ${r.headers.get('content-type')}`);
  const body = await r.json();
  assert(/^unauth/.test(body.error), `${what}: ${JSON.stringify(body)}`);
}

async function variant(browser, web) {
  const log = fs.createWriteStream(path.join(OUT, `php-${web}.log`));
  const demo = new Demo(await freePorts(), { env: { WSPUSH_DEMO_SITE: 'php', WSPUSH_DEMO_WEB: web }, log });
  await demo.start();
  console.log(`PHP site under ${web} on ${demo.origin}, runtime ${demo.dir}`);
  const P = `[${web}] `;
  const json = (body) => JSON.stringify(body);
  let ctxA, ctxB, A1, A2, B;
  try {
    await step(P + 'logged out: GET / is the login form, a wrong password is refused, /push/ answers 401 (and 413) in JSON, user headers change nothing', async () => {
      const ctx = await browser.newContext();
      const page = watch(await ctx.newPage(), 'anon');
      await page.goto(demo.origin + '/');
      await page.waitForSelector('input[name=password]', { timeout: WAIT });
      assert(await page.locator('#state').count() === 0, 'the app page shown without a login');
      await page.fill('input[name=user]', 'demo');
      await page.fill('input[name=password]', 'wrong');
      await page.click('button[type=submit]');
      await page.waitForSelector('#login-error', { timeout: WAIT });
      await ctx.close();
      // A made-up session cookie makes no session file.
      const sessions = () => fs.readdirSync(path.join(demo.dir, 'sessions')).length;
      const before = sessions();
      const bogus = await fetch(`${demo.origin}/`, { headers: { Cookie: `PHPSESSID=${uniq('bogus')}` } });
      assert(bogus.status === 200 && /name="password"/.test(await bogus.text()), `GET / with a bogus session: HTTP ${bogus.status}`);
      assert(sessions() === before, `a bogus session cookie made ${sessions() - before} session file(s)`);
      await isJson401(await fetch(`${demo.origin}/push/token?channels=${INBOX}`), 'token without a session');
      await isJson401(await fetch(`${demo.origin}/push/publish`, { method: 'POST',
        headers: { Origin: demo.origin, 'Content-Type': 'application/json' }, body: json({ channel: PUBLIC, data: 1 }) }),
        'publish without a session');
      // A client cannot name the user: the headers a server might trust
      // are ignored without a session.
      const inject = { 'X-Wspush-User': 'demo', 'Remote-User': 'demo', 'X-Remote-User': 'demo' };
      await isJson401(await fetch(`${demo.origin}/push/token?channels=${INBOX}`, { headers: inject }),
        'token with user headers and no session');
      await isJson401(await fetch(`${demo.origin}/push/publish`, { method: 'POST',
        headers: { ...inject, Origin: demo.origin, 'Content-Type': 'application/json' },
        body: json({ channel: INBOX, data: 1 }) }), 'publish with user headers and no session');
      // Everything under /push/ is fcgi-publisher's, a .php name too (not
      // the site's PHP location and its HTML 404).
      const php = await fetch(`${demo.origin}/push/x.php`);
      assert(/^application\/json/.test(php.headers.get('content-type') || ''),
             `/push/x.php: HTTP ${php.status} ${php.headers.get('content-type')}`);
      await php.json();
      const big = await fetch(`${demo.origin}/push/publish`, { method: 'POST',
        headers: { Origin: demo.origin, 'Content-Type': 'application/json' }, body: 'x'.repeat(2 << 20) });
      assert(big.status === 413 && /^application\/json/.test(big.headers.get('content-type') || ''),
             `a 2 MB publish: HTTP ${big.status} ${big.headers.get('content-type')}`);
    });

    await step(P + 'a login form posted from another origin (127.0.0.2) does not log the browser in', async () => {
      // Login CSRF: the other site's form carries right credentials (its
      // own account), the browser posts it top-level to the site.
      const evilPort = await freePort('127.0.0.2');
      const srv = http.createServer((req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(`<!doctype html><form id="f" method="POST" action="${demo.origin}/">
          <input name="user" value="demo"><input name="password" value="demo"><input name="csrf" value="guess">
          </form>`);
      });
      await new Promise((r) => srv.listen(evilPort, '127.0.0.2', r));
      const ctx = await browser.newContext();
      try {
        const page = watch(await ctx.newPage(), 'login-csrf');
        await page.goto(demo.origin + '/');          // the site's own login cookie is set: still refused
        await page.goto(`http://127.0.0.2:${evilPort}/`);
        const answer = page.waitForResponse((r) => r.url() === `${demo.origin}/` && r.request().method() === 'POST');
        await page.evaluate(() => document.getElementById('f').submit());
        assert((await answer).status() === 403, `cross-site login post: HTTP ${(await answer).status()}`);
        await page.waitForSelector('#login-error', { timeout: WAIT });
        assert(!(await ctx.cookies(demo.origin)).some((c) => c.name === 'PHPSESSID'), 'a session was made');
        await page.goto(demo.origin + '/');
        await page.waitForSelector('input[name=password]', { timeout: WAIT });
      } finally {
        await ctx.close();
        srv.close();
      }
    });

    await step(P + 'two sessions of demo log in through the form and subscribe (public + inbox)', async () => {
      ctxA = await browser.newContext();
      ctxB = await browser.newContext();
      A1 = await logIn(ctxA, demo, 'A1');
      B = await logIn(ctxB, demo, 'B');
      // A second page of session A: it stays on the site when A1 logs out.
      A2 = watch(await ctxA.newPage(), 'A2');
      await A2.goto(demo.origin + '/');
      await A2.waitForSelector('#state[data-state="open"]', { timeout: WAIT });
      for (const p of [A1, A2, B]) assert((await p.textContent('#user')) === 'demo', 'not logged in as demo');
      const sessions = new Set();
      for (const ctx of [ctxA, ctxB])
        sessions.add((await ctx.cookies(demo.origin)).find((c) => c.name === 'PHPSESSID')?.value);
      assert(sessions.size === 2 && !sessions.has(undefined), 'A and B do not have two sessions');
      assert(A2.wsUrls.every((u) => /[?&]token=/.test(u)), 'subscribed without a token');
    });

    await step(P + 'a publish from session A (POST /push/publish) reaches session B, public and inbox', async () => {
      for (const channel of [PUBLIC, INBOX]) {
        const text = uniq('page');
        await publishViaForm(A1, channel, text);
        await B.waitForSelector(rowWith(text), { timeout: WAIT });
        assert((await B.locator(rowWith(text)).getAttribute('data-channel')) === channel, 'wrong channel');
      }
    });

    await step(P + 'the server-side action publishes to the inbox through the PHP client', async () => {
      const text = uniq('from-php');
      await A1.fill('#notify input[name=text]', text);
      await A1.press('#notify input[name=text]', 'Enter');
      await A1.waitForSelector('#notified:text-matches("^PHP published \\\\S+ to [1-9]")', { timeout: WAIT });
      for (const p of [B, A2]) await p.waitForSelector(rowWith(text), { timeout: WAIT });
      const data = await B.locator(rowWith(text)).locator('td').nth(2).textContent();
      assert(JSON.parse(data).from === 'server', `data: ${data}`);
      await A1.waitForSelector('#state[data-state="open"]', { timeout: WAIT });
      // A publish ws-server refuses (over max_message_bytes): a plain
      // message on the page and in the URL, the details in the log.
      await A1.fill('#notify input[name=text]', 'x'.repeat(70000));
      await A1.press('#notify input[name=text]', 'Enter');
      await A1.waitForSelector('#notify-failed', { timeout: WAIT });
      assert(!/refused|sock/i.test(A1.url() + await A1.textContent('#notified')), `details shown: ${A1.url()}`);
      assert(/notify\.php: publish to user\/demo\/inbox failed: WsPushRefusedException/.test(demo.file('php-fpm.log')),
             'the failure is not in the log');
      await A1.waitForSelector('#state[data-state="open"]', { timeout: WAIT });
      // The action refuses a post without the session's CSRF token.
      const cookie = (await ctxB.cookies(demo.origin)).map((c) => `${c.name}=${c.value}`).join('; ');
      const forged = await fetch(`${demo.origin}/notify.php`, { method: 'POST', redirect: 'manual',
        headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'text=forged' });
      assert(forged.status === 403, `notify without the CSRF token: HTTP ${forged.status}`);
    });

    await step(P + 'a page from another origin (127.0.0.2) cannot publish with the session', async () => {
      const mark = uniq('csrf');
      const evilPort = await freePort('127.0.0.2');
      const evilOrigin = `http://127.0.0.2:${evilPort}`;
      const srv = evilServer(demo.origin, mark, INBOX);
      await new Promise((r) => srv.listen(evilPort, '127.0.0.2', r));
      try {
        const page = watch(await ctxB.newPage(), 'evil');   // B is logged in: its session is at stake
        await page.goto(evilOrigin + '/');
        await page.waitForFunction(() => window.done === true, null, { timeout: 10000 });
        const tried = await page.evaluate(() => window.results);
        const top = page.waitForResponse((r) => r.url() === `${demo.origin}/push/publish` && r.request().isNavigationRequest());
        await page.evaluate(() => document.getElementById('top').submit());
        tried.push(`top-form:${(await top).status()}`);
        await page.close();
        console.log(`     attempts: ${tried.join(' ')}`);
        for (const r of tried) assert(!/:2\d\d$/.test(r), `cross-origin publish succeeded: ${r}`);
        const posts = demo.accessLog().split('\n')
          .filter((l) => l.includes(`origin="${evilOrigin}"`) && l.includes('"POST /push/publish'));
        assert(posts.length > 0, 'no cross-origin publish reached the site: the test proves nothing');
        for (const l of posts) assert(/" (401|403) /.test(l), `cross-origin publish not refused: ${l}`);
        // Even with the session's cookies attached (a browser without
        // SameSite), fcgi-publisher refuses a foreign Origin; the same
        // request from the site's origin passes, so the cookies are valid.
        const cookie = (await ctxB.cookies(`${demo.origin}/push/`)).map((c) => `${c.name}=${c.value}`).join('; ');
        const post = (headers) => fetch(`${demo.origin}/push/publish`, { method: 'POST',
          headers: { Cookie: cookie, 'Content-Type': 'application/json', ...headers },
          body: json({ channel: INBOX, data: `${mark}-cookie` }) });
        assert((await post({ Origin: evilOrigin })).status === 403, 'foreign Origin with the session not refused');
        assert((await post({ Origin: demo.origin, 'Sec-Fetch-Site': 'cross-site' })).status === 403, 'cross-site not refused');
        const own = await post({ Origin: demo.origin });
        assert(own.status === 200, `same-origin publish with the session: HTTP ${own.status}`);
        await B.waitForSelector(rowWith(`${mark}-cookie`), { timeout: WAIT });
        assert(await B.locator(`#messages td:has-text("${mark}-")`).count() === 1, 'a cross-origin message reached B');
      } finally {
        srv.close();
      }
    });

    await step(P + 'logout in A: A is cut off with 4401 and stays out; B reconnects with a fresh token and resumes', async () => {
      await record(A2);
      await record(B);
      const oldUrl = A2.wsUrls[A2.wsUrls.length - 1];
      const bSockets = B.wsUrls.length;
      await A1.click('#logout');
      await A1.waitForSelector('input[name=password]', { timeout: WAIT });
      assert(!(await ctxA.cookies(demo.origin)).some((c) => c.name === 'PHPSESSID'), 'session cookie kept');
      await A2.waitForFunction(() => window.stateLog.includes('reconnecting:4401'), null, { timeout: WAIT });
      await B.waitForFunction(() => window.stateLog.includes('reconnecting:4401'), null, { timeout: WAIT });
      // Published while B is (most likely) reconnecting: the replay from
      // last_id or the live feed shows it, once.
      const text = uniq('after-logout');
      const p = await demo.cli('publish', INBOX, JSON.stringify(text));
      assert(p.code === 0, `wspush publish: ${p.stderr}`);
      await B.waitForSelector(rowWith(text), { timeout: WAIT });
      await B.waitForSelector('#state[data-state="open"]', { timeout: WAIT });
      assert(await B.locator(rowWith(text)).count() === 1, 'message shown twice');
      const fresh = B.wsUrls.slice(bSockets).pop();
      assert(fresh && /[?&]last_id=[^&]+/.test(fresh), `B reconnected without last_id: ${fresh}`);
      assert(fresh.match(/token=([^&]+)/)[1] !== B.wsUrls[bSockets - 1].match(/token=([^&]+)/)[1], 'B reused its old token');
      // A keeps trying, and keeps being refused: at least two token fetches
      // answered 401 and never open again, nothing delivered.
      await A2.waitForFunction(() => window.tokenErrors.filter((s) => s === 401).length >= 2, null, { timeout: 2 * WAIT });
      const aLog = await A2.evaluate(() => window.stateLog);
      console.log(`     A states: ${aLog.join(' ')}`);
      console.log(`     B states: ${(await B.evaluate(() => window.stateLog)).join(' ')}`);
      assert(!aLog.includes('open'), 'A reconnected after its logout');
      assert(await A2.locator(rowWith(text)).count() === 0, 'A received a message after its logout');
      const answer = await A2.evaluate(async (ch) => {
        const r = await fetch('/push/token?channels=' + ch);
        return { status: r.status, type: r.headers.get('content-type'), body: await r.text() };
      }, INBOX);
      assert(answer.status === 401 && /^application\/json/.test(answer.type) && JSON.parse(answer.body).error,
             `A's /push/token: ${JSON.stringify(answer)}`);
      const code = await A2.evaluate((url) => new Promise((resolve) => {
        const ws = new WebSocket(url);
        ws.onclose = (e) => resolve(e.code);
        setTimeout(() => resolve('no close'), 5000);
      }), oldUrl);
      assert(code === 4401, `A's old token: close ${code}, want 4401`);
      // B is live again.
      const again = uniq('b-live');
      await publishViaForm(B, INBOX, again);
      await B.waitForSelector(rowWith(again), { timeout: WAIT });
    });

    await step(P + 'screenshot', async () => {
      const file = path.join(OUT, `php-${web}.png`);
      await B.screenshot({ path: file, fullPage: true });
      assert(fs.statSync(file).size > 1000, 'empty screenshot');
    });
  } finally {
    for (const ctx of [ctxA, ctxB]) await ctx?.close().catch(() => {});
  }
  await step(P + 'SIGTERM stops the site and leaves nothing behind', () => demo.stop('SIGTERM'));
  log.end();
}

async function main() {
  checkBinaries();
  const browser = await launchChromium();
  try {
    for (const web of VARIANTS) await variant(browser, web);
  } finally {
    await browser.close().catch(() => {});
  }
}

await runTest('browser (PHP site)', main, { logs: [consoleLog] });
