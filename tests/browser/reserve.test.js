// Browser tests of reservations: a phone (/) and the stall's till (/till)
// in two browser contexts against one real node (build/stallmesh run on
// 127.0.0.1), in Debian's Chromium driven by playwright-core.  Run with
// `make browser`.  Each test starts its own node and stops it (by PID) when
// it ends; each has a time limit.  With SHOTS=DIR set, screenshots of both
// pages at 360 px and desktop width are written there (outside the repo).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { until, browserPages, stallFor, textOf: text } = require('./harness');

const TEST_MS = 90000;
const UI_MS = 15000;
const SHOTS = process.env.SHOTS || '';

const { open } = browserPages(UI_MS);
const stall = (t) => stallFor(t, 'Honey Stall', [['honey-340g', 'Wildflower honey 340g', 1250, 10],
                                                 ['jam-damson', 'Damson jam', 400, 4]]);
const row = (page, sku) => page.locator(`li.item[data-sku="${sku}"]`);

async function till(t, node, width) {
  const page = await open(t, `${node.url}/till`, width);
  await page.fill('#token', node.token);
  await page.getByRole('button', { name: 'Save token' }).click();
  await until('the till to be online', UI_MS, async () => /^Online/.test(await text(page.locator('#status'))));
  return page;
}

// The phone adds 2 honey and 1 jam and reserves them: returns the code.
async function reserveTwo(page) {
  const honey = row(page, 'honey-340g');
  await until('the honey row', UI_MS, async () => /10 here/.test(await text(honey)));
  const add = honey.getByRole('button', { name: 'Add one Wildflower honey 340g to the basket' });
  await add.click();
  await add.click();
  await row(page, 'jam-damson').getByRole('button', { name: 'Add one Damson jam to the basket' }).click();
  assert.equal(await text(page.locator('#basket-text')), 'Basket: 2 × Wildflower honey 340g, Damson jam');
  await page.getByRole('button', { name: 'Reserve 3 items' }).click();
  const hold = page.locator('#hold-list li');
  await until('the reservation with its code', UI_MS, async () => (await hold.locator('.code').count()) === 1);
  const code = await text(hold.locator('.code'));
  assert.match(code, /^[2-9A-HJKMNP-Z]{6}$/);
  assert.equal(await text(hold.locator('.lines')), '2 × Wildflower honey 340g, Damson jam');
  assert.match(await text(hold.locator('.count')), /^\d+:\d\d left$/);
  // The QR code of the code is drawn by the node.
  await until('the QR image', UI_MS, async () => hold.locator('img.qr').evaluate((i) => i.complete && i.naturalWidth > 0));
  assert.equal(await hold.locator('img.qr').getAttribute('alt'), `QR code of ${code}`);
  // ... and a scanner reads the code from it (zbarimg, from zbar-tools: deploy/deps.sh).
  const png = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'stallmesh-qr-')), 'qr.png');
  await hold.locator('img.qr').screenshot({ path: png });
  const read = execFileSync('zbarimg', ['-q', '--raw', png], { timeout: 10000, stdio: ['ignore', 'pipe', 'ignore'] });
  fs.rmSync(path.dirname(png), { recursive: true, force: true });
  assert.equal(read.toString().trim(), code);
  assert.match(await text(page.locator('#msg')), new RegExp(`Show code ${code} at the stall`));
  return code;
}

test('a phone reserves two items and sees a code; the till finds the code, sells it, and the phone shows "picked up"',
     { timeout: TEST_MS }, async (t) => {
  const node = await stall(t);
  const phone = await open(t, `${node.url}/`, 360);
  const code = await reserveTwo(phone);
  await until('held at the node', UI_MS, async () => (await node.stockItem('honey-340g')).here === 8);

  const tp = await till(t, node);
  const card = tp.locator(`#rsv-list li[data-code="${code}"]`);
  await until('the reservation on the till', UI_MS, async () => (await card.count()) === 1);
  assert.equal(await text(card.locator('.what')), '2 × Wildflower honey 340g, Damson jam');
  assert.match(await text(card.locator('.left')), /^\d+:\d\d left$/);
  if (SHOTS) {
    await phone.screenshot({ path: path.join(SHOTS, 'phone-360.png'), fullPage: true });
    await tp.screenshot({ path: path.join(SHOTS, 'till-desktop.png'), fullPage: true });
  }

  // Found as a scanner would type it: lower case, then Enter.
  await tp.fill('#rsv-code', code.toLowerCase());
  await tp.press('#rsv-code', 'Enter');
  await until('found', UI_MS, async () => /^Found /.test(await text(tp.locator('#rsv-msg'))));
  assert.equal(await tp.locator('#rsv-list li.found').count(), 1);
  await tp.locator('input[name="payment"][value="cash"]').check({ force: true });
  await tp.locator(`#rsv-list li[data-code="${code}"]`).getByRole('button', { name: /^Sell reservation/ }).click();
  await until('sold on the till', UI_MS, async () => (await text(tp.locator('#rsv-msg'))) === `Reservation ${code} sold.`);
  await until('gone from the till', UI_MS, async () => (await tp.locator(`#rsv-list li[data-code="${code}"]`).count()) === 0);

  const sales = await node.sales();
  assert.equal(sales.length, 1);
  assert.deepEqual(sales[0].lines.map((l) => [l.sku, l.qty]).sort(), [['honey-340g', 2], ['jam-damson', 1]]);
  assert.equal(sales[0].payment, 'cash');
  assert.equal((await node.stockItem('honey-340g')).here, 8);

  const hold = phone.locator('#hold-list li');
  await until('the phone shows picked up', UI_MS, async () => /Picked up/.test(await text(hold)));
  assert.equal(await hold.locator('.code').count(), 0, 'no code shown once picked up');
  assert.equal(await hold.getByRole('button').count(), 0, 'no Cancel once picked up');
  if (SHOTS) await phone.screenshot({ path: path.join(SHOTS, 'phone-360-picked.png'), fullPage: true });
  assert.deepEqual(phone.errors, []);
  assert.deepEqual(tp.errors, []);
});

test('reloading the phone before pickup resumes the reservation and its countdown', { timeout: TEST_MS }, async (t) => {
  const node = await stall(t);
  const phone = await open(t, `${node.url}/`);
  const code = await reserveTwo(phone);
  const before = await text(phone.locator('#hold-list .count'));
  await phone.reload();
  const hold = phone.locator('#hold-list li');
  await until('the reservation after reload', UI_MS, async () => (await hold.locator('.code').count()) === 1);
  assert.equal(await text(hold.locator('.code')), code);
  const m = /^(\d+):(\d\d) left$/.exec(await text(hold.locator('.count')));
  assert.ok(m);
  const b = /^(\d+):(\d\d) left$/.exec(before);
  assert.ok(+m[1] * 60 + +m[2] <= +b[1] * 60 + +b[2], 'the countdown went on, not restarted');
  const first = await text(hold.locator('.count'));
  await until('the countdown to move', 5000, async () => (await text(hold.locator('.count'))) !== first);
  if (SHOTS) await phone.screenshot({ path: path.join(SHOTS, 'phone-desktop.png'), fullPage: true });
  assert.deepEqual(phone.errors, []);
});

test('a reservation cancelled on the phone vanishes from the till without a reload', { timeout: TEST_MS }, async (t) => {
  const node = await stall(t);
  const phone = await open(t, `${node.url}/`);
  const code = await reserveTwo(phone);
  const tp = await till(t, node, 360);
  const card = tp.locator(`#rsv-list li[data-code="${code}"]`);
  await until('the reservation on the till', UI_MS, async () => (await card.count()) === 1);
  if (SHOTS) await tp.screenshot({ path: path.join(SHOTS, 'till-360.png'), fullPage: true });
  await phone.locator('#hold-list li').getByRole('button', { name: `Cancel reservation ${code}` }).click();
  await until('gone from the phone', UI_MS, async () => (await phone.locator('#hold-list li').count()) === 0);
  await until('gone from the till', 8000, async () => (await card.count()) === 0);
  assert.equal((await node.stockItem('honey-340g')).here, 10);
  // An unknown code is said plainly.
  await tp.fill('#rsv-code', code);
  await tp.press('#rsv-code', 'Enter');
  await until('not found', UI_MS, async () => /^No open reservation with code/.test(await text(tp.locator('#rsv-msg'))));
  assert.deepEqual(tp.errors, []);
});
