// Browser tests of the shopper stock page (/) and the till (/till) against a
// real node (build/stallmesh run on 127.0.0.1), in Debian's Chromium driven
// by playwright-core.  Run with `make browser`, or
//   node --test --test-concurrency=1 tests/browser/
// Each test starts its own node in a fresh directory and stops it (by PID)
// when it ends, passed or failed; each has a time limit.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Node, launchBrowser, until, sleep } = require('./harness');

const TEST_MS = 90000;
const UI_MS = 15000;          // for the page to show what the node has
const RECONNECT_MS = 30000;   // backoff is capped near 10 s; allow a few rounds

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { if (browser) await browser.close(); });

// A node with three items: plenty, low, none.  Stopped and removed when the test ends.
async function stall(t) {
  const node = await Node.create('Honey Stall');
  t.after(async () => {
    try { await node.stop(); } finally { node.remove(); }
  });
  await node.start();
  await node.addItem('honey-340g', 'Wildflower honey 340g', 1250, 10);
  await node.addItem('jam-damson', 'Damson jam', 400, 2);
  await node.addItem('candle', 'Beeswax candle', 800, 0);
  return node;
}

// A page in a fresh browser context (its own localStorage: another phone).
async function open(t, url) {
  const ctx = await browser.newContext({ locale: 'en-GB', timezoneId: 'Europe/London' });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  page.setDefaultTimeout(UI_MS);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.errors = errors;
  await page.goto(url);
  return page;
}

const text = async (loc) => (await loc.textContent()).replace(/\s+/g, ' ').trim();
const row = (page, sku) => page.locator(`li.item[data-sku="${sku}"]`);

async function till(t, node) {
  const page = await open(t, `${node.url}/till`);
  await page.fill('#token', node.token);
  await page.getByRole('button', { name: 'Save token' }).click();
  await until('the till to show the honey', UI_MS, async () => /Wildflower honey/.test(await text(row(page, 'honey-340g'))));
  await until('the till to be online', UI_MS, async () => /^Online/.test(await text(page.locator('#status'))));
  return page;
}

test('the stock page lists items with prices, units and flags, and updates live after a sale made through the API',
     { timeout: TEST_MS }, async (t) => {
  const node = await stall(t);
  const page = await open(t, `${node.url}/`);
  const honey = row(page, 'honey-340g'), jam = row(page, 'jam-damson'), candle = row(page, 'candle');

  await until('the honey row', UI_MS, async () => /£12\.50/.test(await text(honey)));
  assert.match(await text(honey), /Wildflower honey 340g/);
  assert.match(await text(honey), /10 here, 0 at other stalls/);
  assert.doesNotMatch(await text(honey), /Low|Sold out/);
  assert.match(await text(jam), /£4\.00/);
  assert.match(await text(jam), /2 here, 0 at other stalls/);
  assert.match(await text(jam), /Low/);
  assert.match(await text(candle), /Sold out/);
  assert.equal(await candle.getByRole('button').isDisabled(), true);
  // The heading names this node as the market's roster does.
  const stock = await node.must('GET', '/api/stock', undefined, [200]);
  const self = stock.items.flatMap((it) => it.locations).find((l) => l.node === stock.node);
  assert.ok(self && self.name, JSON.stringify(stock.items));
  assert.equal(await text(page.locator('h1')), `Stock at ${self.name}`);
  await until('the live status', UI_MS, async () => /^Live — as of \d\d:\d\d:\d\d$/.test(await text(page.locator('#status'))));
  assert.equal(await page.locator('#status').getAttribute('aria-live'), 'polite');

  // The same document must see the sale: no reload.
  await page.evaluate(() => { window.stallmeshSameDocument = true; });
  await node.must('POST', '/api/sales', { lines: [{ sku: 'honey-340g', qty: 3 }], source: 'in_person', payment: 'cash' });
  await until('7 honey after the sale', UI_MS, async () => /7 here, 0 at other stalls/.test(await text(honey)));
  await node.must('POST', '/api/sales', { lines: [{ sku: 'jam-damson', qty: 2 }], source: 'online', payment: 'card' });
  await until('jam sold out', UI_MS, async () => /0 here.*Sold out/.test(await text(jam)));
  assert.equal(await jam.getByRole('button').isDisabled(), true);
  assert.equal(await page.evaluate(() => window.stallmeshSameDocument), true);

  // The last snapshot is kept for offline use.
  const kept = await page.evaluate(() => JSON.parse(localStorage.getItem('stallmesh.stock.v1')));
  assert.equal(kept.snap.items.find((it) => it.sku === 'honey-340g').here, 7);
  assert.deepEqual(page.errors, []);
});

test('a shopper adds one unit to the basket, reserves it, sees the code and countdown, and cancels it', { timeout: TEST_MS }, async (t) => {
  const node = await stall(t);
  const page = await open(t, `${node.url}/`);
  const honey = row(page, 'honey-340g');
  await until('the honey row', UI_MS, async () => /10 here/.test(await text(honey)));

  await honey.getByRole('button', { name: 'Add one Wildflower honey 340g to the basket' }).click();
  await page.getByRole('button', { name: 'Reserve 1 item' }).click();
  const hold = page.locator('#hold-list li');
  await until('the reservation', UI_MS, async () => /\d+:\d\d left.*Wildflower honey 340g/.test(await text(hold)));
  const code = await text(hold.locator('.code'));
  assert.match(code, /^[2-9A-HJKMNP-Z]{6}$/);
  const first = await text(hold.locator('.count'));
  const m = /^(\d+):(\d\d) left$/.exec(first);
  assert.ok(m, first);
  const secs = +m[1] * 60 + +m[2];
  assert.ok(secs > 30 && secs <= 24 * 3600, `countdown ${first}`);
  await until('the countdown to move', 5000, async () => (await text(hold.locator('.count'))) !== first);
  await until('9 honey here once held', UI_MS, async () => /9 here/.test(await text(honey)));
  assert.equal((await node.stockItem('honey-340g')).here, 9);
  const kept = await page.evaluate(() => JSON.parse(localStorage.getItem('stallmesh.holds.v1')));
  assert.equal(kept.length, 1);

  await hold.getByRole('button', { name: `Cancel reservation ${code}` }).click();
  await until('the reservation gone', UI_MS, async () => (await hold.count()) === 0);
  await until('10 honey here again', UI_MS, async () => /10 here/.test(await text(honey)));
  assert.equal((await node.stockItem('honey-340g')).here, 10);
  assert.deepEqual(await page.evaluate(() => JSON.parse(localStorage.getItem('stallmesh.holds.v1'))), []);
  assert.deepEqual(page.errors, []);
});

test('with websockets refused, the stock page falls back to GET /api/stock and still updates', { timeout: TEST_MS }, async (t) => {
  const node = await stall(t);
  const ctx = await browser.newContext({ locale: 'en-GB' });
  t.after(() => ctx.close());
  let refused = 0;
  await ctx.routeWebSocket(/\/ws$/, (ws) => { refused++; ws.close(); });
  const page = await ctx.newPage();
  page.setDefaultTimeout(UI_MS);
  await page.goto(`${node.url}/`);
  const honey = row(page, 'honey-340g');
  await until('the honey row from the API', UI_MS, async () => /10 here/.test(await text(honey)));
  assert.ok(refused >= 1, 'the page tried the websocket');
  assert.match(await text(page.locator('#status')), /^Updated — as of \d\d:\d\d:\d\d$/);
  await node.must('POST', '/api/sales', { lines: [{ sku: 'honey-340g', qty: 4 }], source: 'in_person', payment: 'card' });
  await until('6 honey by polling', UI_MS, async () => /6 here/.test(await text(honey)));
});

test('the till sells with a quantity, source and payment, lists the sale, and records a return', { timeout: TEST_MS }, async (t) => {
  const node = await stall(t);
  const page = await till(t, node);
  const honey = row(page, 'honey-340g');

  await page.locator('#payment label', { hasText: 'Cash' }).click();
  await page.locator('#source label', { hasText: 'Livestream' }).click();
  await honey.getByRole('button', { name: 'One more' }).click();
  await honey.getByRole('button', { name: 'Sell 2 Wildflower honey 340g' }).click();
  await until('the sale in the log', UI_MS, async () => /Sold 2 × Wildflower honey 340g — sale #\d+\./.test(await text(page.locator('#log'))));

  const sales = await node.sales();
  assert.equal(sales.length, 1);
  const sale = sales[0];
  assert.equal(sale.source, 'livestream');
  assert.equal(sale.payment, 'cash');
  assert.equal(sale.lines.length, 1);
  assert.equal(sale.lines[0].sku, 'honey-340g');
  assert.equal(sale.lines[0].qty, 2);
  assert.equal(sale.lines[0].price, 1250);
  assert.equal((await node.stockItem('honey-340g')).here, 8);
  await until('8 honey on the till', UI_MS, async () => /8 here/.test(await text(honey)));
  assert.match(await text(page.locator('#queue')), /Queue: 0 sales waiting/);

  const tr = page.locator(`#sales tbody tr[data-sale="${sale.id}"]`);
  await until('the sale in recent sales', UI_MS, async () => /2 × Wildflower honey 340g/.test(await text(tr)));
  assert.match(await text(tr), /£25\.00/);

  // Return one of the two from the recent sales row.
  const seq = sale.id.split(':').pop();
  assert.match(await text(tr.locator('td').first()), new RegExp(`^#${seq}$`));
  await tr.getByRole('button', { name: `Return items of sale #${seq}` }).click();
  assert.equal(await page.inputValue('#ret-sale'), `#${seq}`);
  await page.locator('#ret-lines .ret-qty').first().fill('1');
  await page.getByRole('button', { name: 'Record return' }).click();
  await until('the return in the log', UI_MS, async () => new RegExp(`Return recorded for sale #${seq}`).test(await text(page.locator('#log'))));
  await until('9 honey after the return', UI_MS, async () => (await node.stockItem('honey-340g')).here === 9);
  await until('the return on the sale row', UI_MS, async () => /\(1 returned\)/.test(await text(tr)));
  assert.deepEqual(page.errors, []);
});

test('the till adds an item and restocks it; a sale beyond the stock is refused and shown', { timeout: TEST_MS }, async (t) => {
  const node = await stall(t);
  const page = await till(t, node);

  await page.fill('#item-sku', 'mead-50cl');
  await page.fill('#item-name', 'Sparkling mead 50cl');
  await page.fill('#item-price', '9.5');
  await page.getByRole('button', { name: 'Add item' }).click();
  const mead = row(page, 'mead-50cl');
  await until('the new item on the till', UI_MS, async () => /Sparkling mead 50cl.*£9\.50.*0 here/.test(await text(mead)));
  const item = await node.stockItem('mead-50cl');
  assert.equal(item.price, 950);
  assert.equal(item.currency, 'GBP');

  await page.selectOption('#restock-sku', 'mead-50cl');
  await page.fill('#restock-qty', '5');
  await page.getByRole('button', { name: 'Add stock' }).click();
  await until('5 mead here', UI_MS, async () => /5 here/.test(await text(mead)));
  assert.equal((await node.stockItem('mead-50cl')).here, 5);

  // Six of five: refused by the node, shown, and not left in the queue.
  await mead.getByLabel('Quantity').fill('6');
  await mead.getByLabel('Quantity').dispatchEvent('change');
  await mead.getByRole('button', { name: 'Sell 6 Sparkling mead 50cl' }).click();
  await until('the refusal', UI_MS, async () => /not enough mead-50cl here \(5 here/.test(await text(page.locator('#refused'))));
  assert.match(await text(page.locator('#queue')), /Queue: 0 sales waiting/);
  assert.equal((await node.sales()).length, 0);
  assert.equal((await node.stockItem('mead-50cl')).here, 5);
});

test('with the node stopped the stock page shows its offline state and the till queues sales; after a restart the queue replays and each sale exists once',
     { timeout: TEST_MS * 2 }, async (t) => {
  const node = await stall(t);
  const shop = await open(t, `${node.url}/`);
  const tillPage = await till(t, node);
  const status = shop.locator('#status');
  await until('the shop live', UI_MS, async () => /^Live/.test(await text(status)));

  await node.stop();
  await until('the shop offline', UI_MS, async () =>
    /^Offline — showing stock as of \d\d:\d\d, (just now|\d+ min ago)$/.test(await text(status)));
  assert.match(await text(row(shop, 'honey-340g')), /10 here, 0 at other stalls/);
  await until('the till offline', UI_MS, async () => /^Offline/.test(await text(tillPage.locator('#status'))));

  const honey = row(tillPage, 'honey-340g');
  await honey.getByRole('button', { name: 'Sell 1 Wildflower honey 340g' }).click();
  await until('one queued', UI_MS, async () => /Queue: 1 sale waiting/.test(await text(tillPage.locator('#queue'))));
  await honey.getByRole('button', { name: 'One more' }).click();
  await honey.getByRole('button', { name: 'Sell 2 Wildflower honey 340g' }).click();
  await until('two queued', UI_MS, async () => /Queue: 2 sales waiting/.test(await text(tillPage.locator('#queue'))));
  const queued = await tillPage.evaluate(() => JSON.parse(localStorage.getItem('stallmesh.till.queue.v1')));
  assert.equal(queued.length, 2);
  const ids = queued.map((e) => e.sale.external_id);
  assert.notEqual(ids[0], ids[1]);
  ids.forEach((id) => assert.match(id, /^[0-9a-f]{32}$/));
  await sleep(1500);
  assert.match(await text(tillPage.locator('#queue')), /Queue: 2 sales waiting/);

  await node.start();     // same directory, same port
  await until('the queue replayed', RECONNECT_MS, async () => /Queue: 0 sales waiting/.test(await text(tillPage.locator('#queue'))));
  let sales = await node.sales();
  assert.equal(sales.length, 2, JSON.stringify(sales));
  assert.deepEqual(sales.map((s) => s.lines[0].qty).sort(), [1, 2]);
  if ('external_id' in sales[0]) assert.deepEqual(sales.map((s) => s.external_id).sort(), ids.slice().sort());
  assert.equal((await node.stockItem('honey-340g')).here, 7);
  await until('the shop live again', RECONNECT_MS, async () => /^Live/.test(await text(status)));
  await until('the shop shows 7', UI_MS, async () => /7 here/.test(await text(row(shop, 'honey-340g'))));

  // A replay whose answer was lost sends the same external_id again: the
  // node answers with the first sale and nothing is doubled.
  await tillPage.evaluate((entry) => {
    localStorage.setItem('stallmesh.till.queue.v1', JSON.stringify([entry]));
    window.dispatchEvent(new Event('online'));
  }, queued[0]);
  await until('the replay answered', UI_MS, async () => /already recorded/.test(await text(tillPage.locator('#log'))));
  assert.match(await text(tillPage.locator('#queue')), /Queue: 0 sales waiting/);
  sales = await node.sales();
  assert.equal(sales.length, 2);
  assert.equal((await node.stockItem('honey-340g')).here, 7);
  assert.deepEqual(shop.errors, []);
  assert.deepEqual(tillPage.errors, []);
});

// Two nodes of one market on loopback: an organiser holding the only jam,
// and a stall (joined with the organiser's token) whose page offers to
// reserve it at the organiser.
test('an item sold out here but held at another stall is reserved there, shown "at" that stall with no Cancel',
     { timeout: TEST_MS * 2 }, async (t) => {
  const org = await Node.create('Orchard Farm');
  t.after(async () => { try { await org.stop(); } finally { org.remove(); } });
  const stallNode = await Node.join(org, 'Corner Bakery');
  t.after(async () => { try { await stallNode.stop(); } finally { stallNode.remove(); } });
  await org.start({ mesh: true });
  await stallNode.start({ mesh: true, args: ['--peer', `${org.id()}@tcp://127.0.0.1:${org.meshPort}`] });

  // A node that knows peers checks its own log with them first (writes
  // answer 503 recovering for up to 3 s): retry the first write, bounded.
  await until('the organiser to take writes', UI_MS, async () =>
    (await org.api('POST', '/api/items', { sku: 'jam-damson', name: 'Damson jam', price: 400 })).status === 201);
  await org.must('POST', '/api/stock/add', { sku: 'jam-damson', qty: 3 });
  const orgId = org.id();
  const far = await until('the jam at the organiser to reach the stall', UI_MS * 2, async () => {
    const it = await stallNode.stockItem('jam-damson');
    const l = it && it.locations.find((x) => x.node === orgId);
    return l && l.units === 3 && l.name ? { it, l } : null;
  });
  assert.equal(far.it.here, 0);
  assert.equal(far.it.total, 3);
  assert.deepEqual(far.it.locations.map((x) => x.node), [orgId], 'units only at the organiser');
  const orgName = far.l.name;
  await until('the stall connected to the organiser', UI_MS, async () => {
    const p = await stallNode.must('GET', '/api/peers', undefined, [200]);
    return p.peers.some((x) => x.node === orgId && x.connected);
  });
  const before = await org.stockItem('jam-damson');
  assert.equal(before.here, 3);

  const page = await open(t, `${stallNode.url}/`);
  const jam = row(page, 'jam-damson');
  await until('the jam row at the stall', UI_MS, async () => /0 here, 3 at other stalls/.test(await text(jam)));
  assert.match(await text(jam), /Sold out here/);
  const btn = jam.getByRole('button', { name: `Reserve one Damson jam at ${orgName}` });
  assert.equal(await btn.textContent(), `Reserve at ${orgName}`);
  assert.equal(await btn.isDisabled(), false);

  await btn.click();
  await until('the message', UI_MS, async () =>
    (await text(page.locator('#msg'))) === `Reserved Damson jam at ${orgName}. Pick it up there.`);
  const hold = page.locator('#hold-list li');
  assert.equal(await hold.count(), 1);
  assert.match(await text(hold.locator('span').first()), new RegExp(`^At ${orgName} — \\d+:\\d\\d left$`));
  assert.equal(await text(hold.locator('.lines')), 'Damson jam');
  assert.equal(await text(hold.locator('.note')), 'cancel at the stall');
  const first = await text(hold.locator('.count'));
  const m = /^(\d+):(\d\d) left$/.exec(first);
  assert.ok(m, first);
  const secs = +m[1] * 60 + +m[2];
  assert.ok(secs > 30 && secs <= 24 * 3600, `countdown ${first}`);
  await until('the countdown to move', 5000, async () => (await text(hold.locator('.count'))) !== first);
  assert.equal(await hold.getByRole('button').count(), 0, 'no Cancel for a hold at another stall');

  const kept = await page.evaluate(() => JSON.parse(localStorage.getItem('stallmesh.holds.v1')));
  assert.equal(kept.length, 1);
  assert.equal(kept[0].at, orgId);
  assert.equal(kept[0].stall, orgName);
  assert.ok(kept[0].id.startsWith(`${orgId}:`), kept[0].id);

  // The hold is on the organiser's log: one held there, one fewer here.
  const after = await org.stockItem('jam-damson');
  assert.equal(after.held, 1);
  assert.equal(after.here, 2);
  // The stall's page learns it too and still offers the organiser's last two.
  await until('2 at other stalls on the stall page', UI_MS, async () => /0 here, 2 at other stalls/.test(await text(jam)));
  // This node cannot cancel it: DELETE here is 404, as the page says.
  assert.equal((await stallNode.api('DELETE', `/api/holds/${encodeURIComponent(kept[0].id)}`)).status, 404);

  // The organiser gone: the stall answers 503 stall_unreachable and the page says so.
  await org.stop();
  await until('the stall to see the organiser gone', UI_MS, async () => {
    const p = await stallNode.must('GET', '/api/peers', undefined, [200]);
    return !p.peers.some((x) => x.node === orgId && x.connected);
  });
  await btn.click();
  await until('the unreachable message', UI_MS, async () =>
    /^Cannot reach .+ from here right now\. Nothing was reserved/.test(await text(page.locator('#msg'))));
  assert.match(await text(page.locator('#msg')), new RegExp(`^Cannot reach ${orgName} `));
  assert.equal(await hold.count(), 1);
  assert.deepEqual(page.errors, []);
});
