// Browser test of `make run-cluster`: conf/demo/run-cluster.sh on free
// ports (two sites of the demo, one Redis), Debian's chromium driven by
// playwright-core. A message published on site A's page shows on site B's
// page and the other way round; Redis frozen (SIGSTOP) makes a publish
// fail with 504 while both pages stay connected, and publishing works
// again once it runs; the demo stops clean (exit 0, directory gone, every
// port free) and a second run on the same ports and directory starts clean.
//
//   node tests/browser/cluster.test.mjs    (WSPUSH_BIN = the binaries' directory)
// Output (cluster demo log, page console) goes to tests/browser/output/.
import fs from 'node:fs';
import path from 'node:path';
import { OUT, Demo, assert, checkBinaries, freePort, freePorts, launchChromium, openDemoPageAt, portOpen,
         publishViaForm, rowWith, runTest, step, uniq } from './lib.mjs';

const CREDS = { username: 'demo', password: 'demo' };
const openPage = (browser, origin, label) => openDemoPageAt(browser, origin + '/', CREDS, label, consoleLog);
const DELIVERY_MS = 2000;

fs.mkdirSync(OUT, { recursive: true });
const demoLog = fs.createWriteStream(path.join(OUT, 'cluster-demo.log'));
const consoleLog = fs.createWriteStream(path.join(OUT, 'cluster-console.log'));

async function clusterDemo() {
  const a = await freePorts();
  const b = { port: await freePort(), wsPort: await freePort(), tlsPort: await freePort(),
              metricsPort: await freePort(), pubMetricsPort: await freePort() };
  const demo = new Demo(a, {
    log: demoLog, script: 'conf/demo/run-cluster.sh', ready: 'Ctrl-C stops everything',
    env: { WSPUSH_DEMO_B_PORT: String(b.port), WSPUSH_DEMO_B_WS_PORT: String(b.wsPort),
           WSPUSH_DEMO_B_TLS_PORT: String(b.tlsPort), WSPUSH_DEMO_B_METRICS_PORT: String(b.metricsPort),
           WSPUSH_DEMO_B_PUB_METRICS_PORT: String(b.pubMetricsPort) },
  });
  demo.b = b;
  demo.originB = `http://127.0.0.1:${b.port}`;
  return demo;
}

// The page's answer to its last publish: 'published ...' or 'refused: ...'.
async function publishResult(page) {
  await page.locator('#send:enabled').waitFor({ timeout: 10000 });
  return page.textContent('#result');
}

async function main() {
  checkBinaries();
  let demo = await clusterDemo();
  await demo.start();
  const redisPid = Number(/\(pid (\d+), no persistence\)/.exec(demo.out)[1]);
  console.log(`cluster demo: site A ${demo.origin}, site B ${demo.originB}, Redis pid ${redisPid}`);
  const browser = await launchChromium();
  let A, B;
  try {
    await step('a page on each site connects', async () => {
      A = await openPage(browser, demo.origin, 'A');
      B = await openPage(browser, demo.originB, 'B');
    });

    await step('publish on site A\'s page shows on site B\'s page (public channel)', async () => {
      const text = uniq('a-to-b');
      await publishViaForm(A.page, 'public/demo', text);
      await B.page.waitForSelector(rowWith(text), { timeout: DELIVERY_MS });
      assert(/^published /.test(await publishResult(A.page)), 'A\'s publish not acked');
    });

    await step('publish on site B\'s page shows on site A\'s page (private channel, token)', async () => {
      const text = uniq('b-to-a');
      await publishViaForm(B.page, 'user/demo/inbox', text);
      await A.page.waitForSelector(rowWith(text), { timeout: DELIVERY_MS });
      const row = A.page.locator(rowWith(text));
      assert((await row.getAttribute('data-channel')) === 'user/demo/inbox', 'wrong channel');
    });

    await step('Redis frozen: a publish is refused with 504, pages stay connected; then it works again', async () => {
      process.kill(redisPid, 'SIGSTOP');
      try {
        await publishViaForm(A.page, 'public/demo', uniq('frozen'));
        const r = await publishResult(A.page);
        assert(/^refused: 50[34]/.test(r), `publish while Redis is frozen: ${r}`);
        for (const { page } of [A, B])
          assert((await page.getAttribute('#state', 'data-state')) === 'open', 'a page lost its connection');
      } finally {
        process.kill(redisPid, 'SIGCONT');
      }
      const text = uniq('thawed');
      const t0 = Date.now();
      for (;;) {
        await publishViaForm(A.page, 'public/demo', text);
        if (/^published /.test(await publishResult(A.page))) break;
        assert(Date.now() - t0 < 10000, 'publishing did not work again within 10 s');
      }
      await B.page.waitForSelector(rowWith(text), { timeout: DELIVERY_MS });
    });
  } finally {
    await browser.close();
  }

  await step('Ctrl-C (SIGINT) stops both sites and Redis, removes the directory, frees every port', async () => {
    await demo.stop('SIGINT');
    for (const p of Object.values(demo.b))
      assert(!(await portOpen(p)), `site B's port ${p} still open`);
  });

  await step('a second run on the same ports starts clean', async () => {
    const again = new Demo({ port: demo.port, wsPort: demo.wsPort, tlsPort: demo.tlsPort,
                             metricsPort: demo.metricsPort, pubMetricsPort: demo.pubMetricsPort },
                           { log: demoLog, script: demo.script, ready: demo.readyText, env: demo.env });
    again.b = demo.b;
    demo = again;
    await demo.start();
    const r = await fetch(`http://127.0.0.1:${demo.b.port}/`, { headers: { Authorization: 'Basic ' + Buffer.from('demo:demo').toString('base64') } });
    assert(r.status === 200, `site B: HTTP ${r.status}`);
    await demo.stop('SIGTERM');
  });
}

runTest('cluster demo', main, { timeoutMs: 120000, logs: [demoLog, consoleLog] });
