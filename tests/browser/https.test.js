// Browser tests of HTTPS, pairing and the pages' Content-Security-Policy:
// a real node started with --https on 127.0.0.1, and Debian's Chromium told
// to accept that node's own certificate only (by the public-key hash the
// node prints: --ignore-certificate-errors-spki-list; for these tests only).
// Run with `make browser`.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { Node, until, freePort } = require('./harness');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TEST_MS = 90000;
const UI_MS = 15000;

// One node with HTTPS for every test here (each test opens its own context).
let node, tport, browser;
before(async () => {
  node = await Node.create('Honey Stall');
  tport = await freePort();
  await node.start({ args: ['--https', `127.0.0.1:${tport}`] });
  await node.addItem('honey-340g', 'Wildflower honey 340g', 1250, 10);
  const log = node.log();
  const pin = /public key \(pin\)\s+sha256\/\/(\S+)/.exec(log);
  if (!pin) throw new Error(`no pin printed:\n${log}`);
  const { chromium } = require('playwright-core');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage',
           `--ignore-certificate-errors-spki-list=${pin[1]}`,
           // A name that is not this machine's, for the plain-HTTP banner.
           '--host-resolver-rules=MAP stall.example 127.0.0.1'],
    timeout: 30000,
  });
});
after(async () => {
  if (browser) await browser.close();
  if (node) { try { await node.stop(); } finally { node.remove(); } }
});

const https = (p) => `https://127.0.0.1:${tport}${p}`;
const text = async (loc) => (await loc.textContent()).replace(/\s+/g, ' ').trim();

// A page in a fresh context that records console errors, CSP reports
// (securitypolicyviolation) and uncaught errors.
async function open(t, url) {
  const ctx = await browser.newContext({ locale: 'en-GB', timezoneId: 'Europe/London' });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  page.setDefaultTimeout(UI_MS);
  page.problems = [];
  page.on('console', (m) => { if (m.type() === 'error') page.problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window.__csp = window.__csp || []).push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.mainResponse = await page.goto(url);
  return page;
}
// What a page's own code got wrong: uncaught errors and CSP refusals
// (failed fetches the test provokes, such as a revoked token's 401, are not).
const broken = (page) => page.problems.filter((m) => /^pageerror|Content Security Policy|Refused to/.test(m));
const cspReports = (page) => page.evaluate(() => window.__csp || []);

test('pairing in the browser: the /pair link pairs a till device, which then sells over HTTPS with its own token',
  { timeout: TEST_MS }, async (t) => {
    const pair = JSON.parse(node.cli('pair', '--scope', 'till', '--name', 'Front till', '--json'));
    assert.match(pair.url, new RegExp(`^https://127\\.0\\.0\\.1:${tport}/pair#[A-Z0-9]{12}$`));
    const page = await open(t, pair.url);
    assert.equal(new URL(page.url()).hash, '', 'the code is taken out of the address bar');
    assert.equal(await page.inputValue('#code'), pair.code);
    await page.getByRole('button', { name: 'Pair' }).click();
    await page.waitForURL(https('/till'));
    await until('the till to show the honey', UI_MS, async () =>
      /Wildflower honey/.test(await text(page.locator('li.item[data-sku="honey-340g"]'))));
    await until('the till to be online', UI_MS, async () => /^Online/.test(await text(page.locator('#status'))));
    const token = await page.evaluate(() => JSON.parse(localStorage.getItem('stallmesh.till.token')));
    assert.match(token, /^[0-9a-f]{64}$/);
    assert.notEqual(token, node.token, 'the device has its own token, not the admin one');
    assert.equal(await page.locator('#insecure').isVisible(), false, 'no banner over HTTPS');

    const honey = page.locator('li.item[data-sku="honey-340g"]');
    await honey.getByRole('button', { name: 'Sell 1 Wildflower honey 340g' }).click();
    await until('the sale in the log', UI_MS, async () => /Sold 1 × Wildflower honey 340g — sale #\d+\./.test(await text(page.locator('#log'))));
    const before9 = (await node.stockItem('honey-340g')).here;
    assert.ok(before9 <= 9);
    const devices = JSON.parse(node.cli('devices', '--json')).devices;
    const dev = devices.find((d) => d.name === 'Front till');
    assert.ok(dev && dev.scope === 'till' && dev.last_used, JSON.stringify(devices));

    // The same code again, from this page's form: refused, and said so.
    const again = await open(t, pair.url);
    await again.getByRole('button', { name: 'Pair' }).click();
    await until('the refusal', UI_MS, async () => /pairing code is unknown, used or expired/.test(await text(again.locator('#msg'))));

    // Revoked: the till's next write is refused and it asks for a token.
    node.cli('devices', 'revoke', dev.id);
    await honey.getByRole('button', { name: 'Sell 1 Wildflower honey 340g' }).click();
    await until('the till to say the token was refused', UI_MS, async () => /refused the token/.test(await text(page.locator('body'))));
    assert.deepEqual(broken(page), []);
    assert.deepEqual(await cspReports(page), []);
  });

test('the pages work under their Content-Security-Policy: no CSP reports or console errors, and an injected inline handler is blocked',
  { timeout: TEST_MS }, async (t) => {
    for (const p of ['/', '/till', '/market', '/pair']) {
      const page = await open(t, https(p));
      const resp = page.mainResponse;
      assert.match(resp.headers()['content-security-policy'] || '', /script-src 'sha256-/, p);
      assert.equal(resp.headers()['referrer-policy'], 'no-referrer', p);
      if (p === '/') {
        await until('the stock page to list the honey', UI_MS, async () => /Wildflower honey/.test(await text(page.locator('body'))));
      }
      if (p === '/till') {    // its websocket (connect-src 'self' covers wss:)
        await page.fill('#token', node.token);
        await page.getByRole('button', { name: 'Save token' }).click();
        await until('the till to be online', UI_MS, async () => /^Online/.test(await text(page.locator('#status'))));
      }
      assert.deepEqual(await cspReports(page), [], `${p}: its own code is refused`);
      // The CSP is really in force: an inline handler added now does not run.
      const ran = await page.evaluate(async () => {
        window.__ran = false;
        const d = document.createElement('div');
        d.innerHTML = '<img src="data:," onload="window.__ran = true">';
        document.body.appendChild(d);
        await new Promise((r) => setTimeout(r, 300));
        return window.__ran;
      });
      assert.equal(ran, false, `${p}: an injected inline handler ran`);
      const reports = await cspReports(page);
      assert.ok(reports.length >= 1 && reports.every((r) => /^script-src/.test(r)), `${p}: ${reports}`);
      assert.deepEqual(broken(page).filter((m) => !/inline event handler/.test(m)), [], p);
    }
  });

test('the till warns when reached over plain HTTP from another machine, and not on this one',
  { timeout: TEST_MS }, async (t) => {
    const remote = await open(t, `http://stall.example:${node.port}/till`);
    await until('the banner', UI_MS, async () => remote.locator('#insecure').isVisible());
    assert.match(await text(remote.locator('#insecure')), /Not secure/);
    const local = await open(t, `${node.url}/till`);
    await until('the till to be online', UI_MS, async () => /^Online/.test(await text(local.locator('#status'))));
    assert.equal(await local.locator('#insecure').isVisible(), false);
    const pairPage = await open(t, `http://stall.example:${node.port}/pair#ABCDEFGHJKLM`);
    assert.equal(await pairPage.locator('#insecure').isVisible(), true);
  });
