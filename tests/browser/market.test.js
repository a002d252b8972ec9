// Browser tests of the organiser's page (/market) and the till's Today
// against real nodes (build/stallmesh run on 127.0.0.1), in Debian's
// Chromium driven by playwright-core.  Run with `make browser`, or
//   node --test --test-concurrency=1 tests/browser/
// Each test starts its own nodes in fresh directories and stops them (by
// PID) when it ends, passed or failed; each has a time limit.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { Node, launchBrowser, until, sleep } = require('./harness');

const TEST_MS = 120000;
const UI_MS = 15000;          // for the page to show what the node has
const LIVE_MS = 10000;        // a sale at another stall, to the organiser's page

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { if (browser) await browser.close(); });

// The text as shown (innerText: cells and blocks apart), spaces collapsed.
const text = async (loc) => (await loc.innerText()).replace(/\s+/g, ' ').trim();

// A page in a fresh browser context (its own localStorage: another device),
// recording every request URL and page error.
async function open(t, url, viewport = { width: 1280, height: 900 }) {
  const ctx = await browser.newContext({ locale: 'en-GB', timezoneId: 'Europe/London', viewport, acceptDownloads: true });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  page.setDefaultTimeout(UI_MS);
  page.errors = [];
  page.urls = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('request', (r) => page.urls.push(r.url()));
  page.on('websocket', (ws) => page.urls.push(ws.url()));
  await page.goto(url);
  return page;
}

async function saveToken(page, node) {
  await page.fill('#token', node.token);
  await page.getByRole('button', { name: 'Save token' }).click();
}

// The net takings the hour chart draws, summed over its bars (minor units).
const chartNet = (page) => page.evaluate(() =>
  [...document.querySelectorAll('#hours g.hour')].reduce((s, g) => s + Number(g.dataset.net), 0));
const barCount = (page) => page.locator('#hours g.hour').count();

// An organiser and a joined stall, meshed on loopback, both taking writes,
// with a catalog and units at both.
async function market(t) {
  const org = await Node.create('Orchard Farm');
  t.after(async () => { try { await org.stop(); } finally { org.remove(); } });
  const stall = await Node.join(org, 'Corner Bakery');
  t.after(async () => { try { await stall.stop(); } finally { stall.remove(); } });
  await org.start({ mesh: true });
  await stall.start({ mesh: true, args: ['--peer', `${org.id()}@tcp://127.0.0.1:${org.meshPort}`] });
  // A node that knows peers checks its own log with them first (writes
  // answer 503 for a few seconds): retry the first write, bounded.
  await until('the organiser to take writes', UI_MS, async () =>
    (await org.api('POST', '/api/items', { sku: 'jam', name: 'Damson jam', price: 450 })).status === 201);
  await org.must('POST', '/api/items', { sku: 'honey', name: 'Wildflower honey', price: 1250 });
  await org.must('POST', '/api/stock/add', { sku: 'jam', qty: 10 });
  await until('the catalog at the stall', UI_MS * 2, async () => (await stall.stockItem('honey')) !== undefined);
  await until('the stall to take writes', UI_MS, async () =>
    (await stall.api('POST', '/api/stock/add', { sku: 'honey', qty: 2 })).status === 201);
  await until('the stall connected to the organiser', UI_MS, async () => {
    const p = await stall.must('GET', '/api/peers', undefined, [200]);
    return p.peers.some((x) => x.node === org.id() && x.connected);
  });
  return { org, stall };
}

test('/market shows the day\'s totals; a sale at another stall updates them live over /ws with no polling, the hour chart grows, a CSV downloads with the token never in a URL, and at 360 px nothing scrolls sideways; a stall\'s node shows its own stall only',
     { timeout: TEST_MS }, async (t) => {
  const { org, stall } = await market(t);
  await org.must('POST', '/api/sales', { lines: [{ sku: 'jam', qty: 1 }], source: 'in_person', payment: 'cash' });

  const page = await open(t, `${org.url}/market`);
  await saveToken(page, org);
  await until('the totals', UI_MS, async () => (await text(page.locator('#t-net'))) === '£4.50');
  assert.equal(await text(page.locator('#t-sales')), '1');
  assert.equal(await text(page.locator('#t-units')), '1');
  assert.equal(await text(page.locator('#t-returns')), '£0.00');
  await until('the live status', UI_MS, async () => /^Live — as of \d\d:\d\d:\d\d$/.test(await text(page.locator('#status'))));
  // Both stalls listed, the stall's sync state from the peers.
  const orgCard = page.locator(`#stalls li[data-stall="${org.id()}"]`);
  const stallCard = page.locator(`#stalls li[data-stall="${stall.id()}"]`);
  assert.match(await text(orgCard), /Orchard Farm \(this node\) £4\.50/);
  assert.match(await text(orgCard), /1 sale · 1 unit/);
  await until('the stall connected on the page', UI_MS, async () => /Corner Bakery £0\.00.*Connected/.test(await text(stallCard)));
  assert.match(await text(page.locator('#by-payment li[data-payment="cash"]')), /Cash £4\.50 · 1 sale/);
  assert.match(await text(page.locator('#by-source li[data-source="in_person"]')), /In person £4\.50 · 1 sale/);
  assert.match(await text(page.locator('#items tbody tr[data-sku="jam"]')), /Damson jam 1 £4\.50/);
  assert.equal(await chartNet(page), 450);
  const barsBefore = await barCount(page);
  assert.ok(barsBefore >= 1, 'the chart draws bars');
  // The honey has two units, at the stall: low.
  assert.match(await text(page.locator('#low li[data-sku="honey"]')), /Wildflower honey 2 left — all at Corner Bakery/i);

  // No polling while the socket is up: 3 s with nothing changed at the
  // node, no report read.  A window in which the organiser's state did move
  // (the mesh still settling on a loaded machine sends a delta, and the
  // page is right to read again) does not count: up to 5 windows.
  await page.evaluate(() => { window.stallmeshSameDocument = true; });
  const reads = () => page.urls.filter((u) => u.includes('/api/report')).length;
  const version = async () => (await org.must('GET', '/api/stock', undefined, [200])).version;
  let quiet = false;
  for (let i = 0; i < 5 && !quiet; i++) {
    const v0 = await version();
    const idle = reads();
    await sleep(3000);
    if (await version() !== v0) continue;
    assert.equal(reads(), idle, 'the page read the report while nothing changed');
    quiet = true;
  }
  assert.ok(quiet, 'the organiser\'s state kept changing for 15 s with nothing done');

  // A sale at the other stall: over the mesh to the organiser, then /ws.
  const t0 = Date.now();
  await stall.must('POST', '/api/sales', { lines: [{ sku: 'honey', qty: 1 }], source: 'online', payment: 'card' });
  await until('the totals to include the stall\'s sale', LIVE_MS, async () => (await text(page.locator('#t-net'))) === '£17.00');
  const took = Date.now() - t0;
  assert.equal(await text(page.locator('#t-sales')), '2');
  assert.equal(await text(page.locator('#t-units')), '2');
  await until('the stall\'s card', UI_MS, async () => /Corner Bakery £12\.50/.test(await text(stallCard)));
  assert.match(await text(stallCard), /1 sale · 1 unit/);
  assert.match(await text(page.locator('#by-payment li[data-payment="card"]')), /Card £12\.50 · 1 sale/);
  assert.match(await text(page.locator('#by-source li[data-source="online"]')), /Online £12\.50 · 1 sale/);
  assert.equal(await chartNet(page), 1700, 'the hour chart grew by the sale');
  assert.ok(await barCount(page) >= barsBefore);
  assert.match(await text(page.locator('#low li[data-sku="honey"]')), /1 left/i);
  assert.equal(await page.evaluate(() => window.stallmeshSameDocument), true, 'no reload');
  t.diagnostic(`a sale at the stall reached the organiser's page in ${took} ms`);

  // A CSV downloads: fetch with the header, a blob, a file.
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Sales', exact: true }).click()]);
  const csv = fs.readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/);
  assert.match(download.suggestedFilename(), /\.csv$/);
  assert.match(csv[0], /^date,time,tz,stall,stall_id,sale_id,sku,item,qty/);
  assert.equal(csv.length, 3, csv.join('\n'));
  assert.ok(csv.some((l) => l.includes(',honey,') && l.includes('Corner Bakery')), csv.join('\n'));
  assert.ok(page.urls.every((u) => !u.includes(org.token)), 'the token is never in a URL');

  // Another day shows that day (nothing sold), Today comes back to today.
  await page.fill('#day', '2020-02-02');
  await page.locator('#day').dispatchEvent('change');
  await until('an empty day', UI_MS, async () => (await text(page.locator('#t-net'))) === '£0.00');
  assert.match(await text(page.locator('#day-line')), /2 February 2020/);
  assert.equal(await text(page.locator('#hours-cap')), 'No sales yet.');
  await page.getByRole('button', { name: 'Today' }).click();
  await until('today again', UI_MS, async () => (await text(page.locator('#t-net'))) === '£17.00');

  // A phone: nothing scrolls sideways.
  await page.setViewportSize({ width: 360, height: 780 });
  await sleep(300);
  const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
  assert.ok(sw <= iw, `scrollWidth ${sw} > innerWidth ${iw} at 360 px`);
  assert.equal(await chartNet(page), 1700, 'the chart redrawn for the phone');
  assert.deepEqual(page.errors, []);

  // The stall's own node reports its own stall only, and the page says so.
  const own = await open(t, `${stall.url}/market`);
  await saveToken(own, stall);
  await until('the stall\'s scope', UI_MS, async () => /This is a stall's node/.test(await text(own.locator('#day-line'))));
  assert.equal(await own.locator('#stalls li').count(), 1);
  assert.match(await text(own.locator(`#stalls li[data-stall="${stall.id()}"]`)), /Corner Bakery \(this node\) £12\.50/);
  assert.equal(await text(own.locator('#t-net')), '£12.50');
  assert.deepEqual(own.errors, []);
});

test('/market asks for the token and says so when the node refuses it', { timeout: TEST_MS }, async (t) => {
  const node = await Node.create('Orchard Farm');
  t.after(async () => { try { await node.stop(); } finally { node.remove(); } });
  await node.start();
  const page = await open(t, `${node.url}/market`);
  assert.equal(await page.locator('#token-box').isVisible(), true);
  assert.match(await text(page.locator('#day-line')), /Enter the token/);
  await page.fill('#token', 'f'.repeat(64));
  await page.getByRole('button', { name: 'Save token' }).click();
  await until('the refusal', UI_MS, async () => /refused the token/.test(await text(page.locator('#msg'))));
  assert.equal(await page.locator('#token-box').isVisible(), true);
  await saveToken(page, node);
  await until('the totals', UI_MS, async () => (await text(page.locator('#t-sales'))) === '0');
  assert.equal(await text(page.locator('#msg')), '');
  assert.deepEqual(page.errors, []);
});

test('the till\'s Today shows the stall\'s own cash-up: sales, net, by payment, returns; and fits 360 px',
     { timeout: TEST_MS }, async (t) => {
  const node = await Node.create('Honey Stall');
  t.after(async () => { try { await node.stop(); } finally { node.remove(); } });
  await node.start();
  await node.addItem('honey', 'Wildflower honey', 1250, 10);
  await node.addItem('jam', 'Damson jam', 400, 10);
  const page = await open(t, `${node.url}/till`, { width: 360, height: 780 });
  await saveToken(page, node);
  await until('the till online', UI_MS, async () => /^Online/.test(await text(page.locator('#status'))));
  await until('an empty Today', UI_MS, async () => (await text(page.locator('#today-sales'))) === '0');

  // Two honey in cash from the till, a jam by card through the API, one honey returned.
  await page.locator('#payment label', { hasText: 'Cash' }).click();
  const honey = page.locator('li.item[data-sku="honey"]');
  await honey.getByRole('button', { name: 'One more' }).click();
  await honey.getByRole('button', { name: 'Sell 2 Wildflower honey' }).click();
  await node.must('POST', '/api/sales', { lines: [{ sku: 'jam', qty: 1 }], source: 'online', payment: 'card' });
  const cashSale = (await node.sales()).find((s) => s.payment === 'cash');
  assert.ok(cashSale, 'the till made the cash sale');
  await node.must('POST', '/api/returns', { sale: cashSale.id, lines: [{ sku: 'honey', qty: 1 }], reason: 'dented' });

  await until('Today after the sales and the return', UI_MS, async () => (await text(page.locator('#today-net'))) === '£16.50');
  assert.equal(await text(page.locator('#today-sales')), '2');
  assert.equal(await text(page.locator('#today-units')), '3');
  assert.equal(await text(page.locator('#today-gross')), '£29.00');
  assert.equal(await text(page.locator('#today-returns')), '−£12.50 (1 unit)');
  assert.equal(await text(page.locator('#today-payment tr[data-payment="cash"]')), 'Cash £12.50 refunded 1 £12.50');
  assert.equal(await text(page.locator('#today-payment tr[data-payment="card"]')), 'Card 1 £4.00');
  assert.match(await text(page.locator('#today-cash')), /: £12\.50\.$/);
  const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
  assert.ok(sw <= iw, `scrollWidth ${sw} > innerWidth ${iw} at 360 px`);
  assert.deepEqual(page.errors, []);
});
