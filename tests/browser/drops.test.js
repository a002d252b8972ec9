// Browser tests of drops: a phone (/) and the stall's till (/till) against
// one real node (build/stallmesh run on 127.0.0.1), in Debian's Chromium
// driven by playwright-core.  Run with `make browser`.  Each test starts its
// own node and stops it (by PID) when it ends; each has a time limit.  With
// SHOTS=DIR set, screenshots of both pages at 390 px and desktop width are
// written there (outside the repo).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { until, browserPages, stallFor, textOf: text } = require('./harness');

const TEST_MS = 90000;
const UI_MS = 15000;
const SHOTS = process.env.SHOTS || '';

const { open } = browserPages(UI_MS);
const stall = (t) => stallFor(t, 'Pottery Stall', [['mug', 'Speckled mug', 2800, 10],
                                                   ['vase', 'Tall vase', 6500, 3]]);
const iso = (ms) => new Date(ms).toISOString();

async function shoot(page, name) {
  if (!SHOTS) return;
  for (const width of [390, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: path.join(SHOTS, `${name}-${width}.png`), fullPage: false });
  }
}

// The countdown reaches zero and Reserve opens without a reload; the
// phone's clock is 2 minutes fast (left unset) and the countdown still follows
// the node's: uncorrected, Reserve would be open from the first.
test('a first-come drop: the countdown reaches zero and Reserve opens', { timeout: TEST_MS }, async (t) => {
  const node = await stall(t);
  const starts = Date.now() + 6000;
  await node.must('POST', '/api/drops', { sku: 'mug', qty: 4, starts: iso(starts), mode: 'first_come',
                                          per_shopper: 2 });
  const page = await open(t, node.url + '/', 390);
  // A phone whose clock is 2 minutes ahead: the page must count by the node's.
  await page.addInitScript(() => {
    const skew = 120000, real = Date.now.bind(Date);
    Date.now = () => real() + skew;
  });
  await page.reload();
  const drop = page.locator('#drop-list li').first();
  await until('the drop with its countdown', UI_MS, async () => /Opens in 0:0\d/.test(await text(drop.locator('.count'))));
  const reserve = drop.getByRole('button', { name: 'Reserve' });
  assert.equal(await reserve.isDisabled(), true, 'Reserve is shut before the start');
  await shoot(page, 'drop-upcoming');
  await until('Reserve to open at the start', 12000, async () => !(await reserve.isDisabled()));
  assert.ok(Date.now() >= starts - 1500, 'Reserve opened by the node\'s clock, not 2 minutes early');
  await reserve.click();
  const hold = page.locator('#hold-list li');
  await until('the reservation with its code', UI_MS, async () => (await hold.locator('.code').count()) === 1);
  assert.match(await text(hold.locator('.code')), /^[2-9A-HJKMNP-Z]{6}$/);
  await until('units left to fall', UI_MS, async () => /Live: 3 left/.test(await text(drop.locator('.count'))));
  assert.deepEqual(page.errors, []);
});

// A phone enters a raffle, the stall's till draws it, the phone shows its
// result and (the only entrant wins) its pickup code.
test('a raffle: the phone enters, the till draws, the phone shows it won with its code', { timeout: TEST_MS }, async (t) => {
  const node = await stall(t);
  const now = Date.now();
  await node.must('POST', '/api/drops', { sku: 'vase', qty: 1, starts: iso(now + 2000), closes: iso(now + 9000),
                                          mode: 'raffle', per_shopper: 1, pickup_minutes: 20 });
  const phone = await open(t, node.url + '/', 390);
  const drop = phone.locator('#drop-list li').first();
  const enter = drop.getByRole('button', { name: 'Enter' });
  await until('Enter to open', UI_MS, async () => (await enter.count()) === 1 && !(await enter.isDisabled()));
  await enter.click();
  await until('the phone to say it entered', UI_MS, async () => /^Entered\. Entries close in/.test(await text(drop.locator('.count'))));
  await shoot(phone, 'drop-entered');

  const till = await open(t, node.url + '/till', 1280);
  await till.fill('#token', node.token);
  await till.getByRole('button', { name: 'Save token' }).click();
  const tdrop = till.locator('#drop-list li').first();
  await until('the till to show the raffle with 1 entry', UI_MS, async () => /1 entries/.test(await text(tdrop)));
  const draw = tdrop.getByRole('button', { name: 'Draw' });
  await until('Draw after the close', 20000, async () => (await draw.count()) === 1);
  await draw.click();
  await until('the till to show the draw', UI_MS, async () => /drawn: 1 winners of 1 entries/.test(await text(tdrop)));
  if (SHOTS) {
    await till.locator('#drops').scrollIntoViewIfNeeded();
    await till.locator('#drops').screenshot({ path: path.join(SHOTS, 'till-drops-1280.png') });
    await till.setViewportSize({ width: 390, height: 900 });
    await till.locator('#drops').screenshot({ path: path.join(SHOTS, 'till-drops-390.png') });
  }

  await until('the phone to show it won', 20000, async () => /^You won! Code [2-9A-HJKMNP-Z]{6}, pick up by \d\d:\d\d$/.test(await text(drop.locator('.count'))));
  const code = (await text(drop.locator('.count'))).match(/Code (\w{6})/)[1];
  const hold = phone.locator('#hold-list li');
  await until('the win among the reservations', UI_MS, async () => (await hold.locator('.code').count()) === 1);
  assert.equal(await text(hold.locator('.code')), code);
  await shoot(phone, 'drop-won');
  assert.deepEqual(phone.errors, []);
  assert.deepEqual(till.errors, []);
});

// Drops over the websocket: two phones see a first-come drop open at its
// start, its units left fall and "Sold out" within a second of each hold,
// with no GET /api/drops at all (the page polls it only while its
// websocket is down).  The holds are the stall's own (its token), so the
// per-shopper cap does not stop the second.
test('a first-come drop over /ws: units left and sold out reach every phone within a second, no polling', { timeout: TEST_MS }, async (t) => {
  const node = await stall(t);
  const phones = [await open(t, node.url + '/', 390), await open(t, node.url + '/', 1280)];
  const polled = [];
  for (const p of phones) p.on('request', (r) => { if (new URL(r.url()).pathname.startsWith('/api/drops')) polled.push(r.url()); });
  // The request listener came after the first load: load again under it.
  for (const p of phones) await p.reload();
  const count = (p) => p.locator('#drop-list li .count').first();
  for (const p of phones) await until('the stock over the websocket', UI_MS, async () => /^Live/.test(await text(p.locator('#status'))));
  // Created while the phones watch: it reaches them in a delta.
  await node.must('POST', '/api/drops', { sku: 'mug', qty: 2, starts: iso(Date.now() + 5000), mode: 'first_come',
                                          per_shopper: 1 });
  for (const p of phones) {
    await until('the drop counting down', UI_MS, async () => /^Opens in 0:0\d$/.test(await text(count(p))));
  }
  await shoot(phones[0], 'drop-ws-upcoming');
  for (const p of phones) {
    await until('the drop to open at its start', UI_MS, async () => /^Live: 2 left$/.test(await text(count(p))));
  }
  // Each phone's page shows `want` within a second of the hold's answer.
  const within = async (want) => {
    const seen = phones.map((p) => p.waitForFunction((w) => {
      const c = document.querySelector('#drop-list li .count');
      return c && c.textContent.trim() === w;
    }, want, { timeout: 5000, polling: 'raf' }).then(() => Date.now()));
    const held = await node.must('POST', '/api/holds', { sku: 'mug', qty: 1 });
    const answered = Date.now();
    assert.ok(held.code, 'the hold was made');
    const at = await Promise.all(seen);
    for (const ms of at) assert.ok(ms - answered <= 1000, `"${want}" ${ms - answered} ms after the hold`);
  };
  await within('Live: 1 left');
  await within('Sold out');
  await shoot(phones[0], 'drop-ws-sold-out');
  // Sold out is shown, with no Reserve button, on both phones.
  for (const p of phones) assert.equal(await p.locator('#drop-list li').first().getByRole('button').count(), 0);
  assert.deepEqual(polled, [], 'no GET /api/drops while the websocket is up');
  for (const p of phones) assert.deepEqual(p.errors, []);
});
