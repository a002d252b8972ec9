// Browser-test harness: real stallmesh nodes on loopback and a headless
// Chromium (Debian's, driven by playwright-core).
//
// A node is made the way an operator makes one (init, market create) in a
// fresh temporary directory, started with `run --http 127.0.0.1:PORT` on a
// port that was free a moment before, and is ready once GET /readyz answers
// 200.  It is stopped by its PID only (SIGTERM, then SIGKILL if it has not
// exited within STOP_MS); every node this module started is killed when the
// test process exits, whatever happened.  Every wait here is bounded.
//
// Two nodes of one market (Node.join): the organiser admits a stall with
// the organiser's mesh endpoint in the token, the stall joins with it; both
// are started with a mesh listener on 127.0.0.1 (start({ mesh: true })).
'use strict';

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.resolve(ROOT, process.env.STALLMESH_BIN || 'build/stallmesh');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const READY_MS = 15000;       // from spawn to /readyz 200
const STOP_MS = 10000;        // from SIGTERM to exit
const POLL_MS = 50;

const live = new Set();       // child processes started and not yet reaped
process.on('exit', () => {
  for (const child of live) {
    try { process.kill(child.pid, 'SIGKILL'); } catch (e) { /* already gone */ }
  }
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Wait until `check` returns a truthy value (returned), at most `ms`;
// throws with `what` on timeout.  `check` may be async and may throw
// (counts as not yet).
async function until(what, ms, check) {
  const end = Date.now() + ms;
  let last;
  for (let i = 0; Date.now() < end && i < 100000; i++) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) { last = e; }
    await sleep(POLL_MS);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}` + (last ? ` (last error: ${last.message})` : ''));
}

class Node {
  // Make a node directory: init and a market in GBP.  Returns a stopped Node.
  static async create(name = 'Honey Stall') {
    if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run make first`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stallmesh-browser-'));
    const node = new Node(dir, await freePort());
    try {
      node.cli('init', '--name', name);
      node.cli('market', 'create', '--name', 'Riverside Market', '--currency', 'GBP');
      node.token = fs.readFileSync(path.join(dir, 'api-token'), 'utf8').trim();
    } catch (e) {
      node.remove();
      throw e;
    }
    return node;
  }

  // Make a stall of `organiser`'s market: init, admitted by the organiser
  // (the token names the organiser's mesh endpoint), join.  The organiser
  // may be stopped or running.  Returns a stopped Node.
  static async join(organiser, name) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stallmesh-browser-'));
    const node = new Node(dir, await freePort());
    try {
      node.cli('init', '--name', name);
      await organiser.pickMeshPort();
      const token = organiser.cli('admit', node.id(), '--name', name,
                                  '--endpoint', `tcp://127.0.0.1:${organiser.meshPort}`).trim();
      node.cli('join', token);
      node.token = fs.readFileSync(path.join(dir, 'api-token'), 'utf8').trim();
    } catch (e) {
      node.remove();
      throw e;
    }
    return node;
  }

  constructor(dir, port) {
    this.dir = dir;
    this.port = port;
    this.meshPort = 0;        // picked when first started with { mesh: true }, or by join()
    this.child = null;
    this.logPath = path.join(dir, 'node.log');
    this.url = `http://127.0.0.1:${port}`;
  }

  cli(...args) {
    return execFileSync(BIN, ['--dir', this.dir, ...args], { timeout: 15000, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  }

  // This node's id (64 hex digits).
  id() {
    if (!this.nodeId) this.nodeId = JSON.parse(this.cli('id', '--json')).node;
    return this.nodeId;
  }

  log() {
    try { return fs.readFileSync(this.logPath, 'utf8').slice(-4000); } catch (e) { return ''; }
  }

  // A mesh port for this node (kept for restarts).
  async pickMeshPort() {
    if (!this.meshPort) this.meshPort = await freePort();
    return this.meshPort;
  }

  // Start `run` on this node's port and wait for /readyz.  mesh: listen
  // for peers on tcp://127.0.0.1:meshPort (else no listener); args: more
  // `run` arguments (e.g. --peer ID@ENDPOINT).
  async start({ mesh = false, args = [] } = {}) {
    if (this.child) throw new Error('node already running');
    const listen = mesh ? `tcp://127.0.0.1:${await this.pickMeshPort()}` : 'none';
    const out = fs.openSync(this.logPath, 'a');
    const child = spawn(BIN, ['--dir', this.dir, 'run', '--http', `127.0.0.1:${this.port}`, '--listen', listen, ...args],
                        { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    this.child = child;
    live.add(child);
    child.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => { live.delete(child); resolve({ code, signal }); });
      child.on('error', (e) => { live.delete(child); resolve({ error: e.message }); });
    });
    let dead = null;
    child.exited.then((r) => { dead = r; });
    await until(`GET ${this.url}/readyz`, READY_MS, async () => {
      if (dead) throw new Error(`node exited (${JSON.stringify(dead)}): ${this.log()}`);
      const r = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(1000) });
      return r.status === 200;
    }).catch((e) => {
      if (dead) throw new Error(`node exited before ready (${JSON.stringify(dead)}):\n${this.log()}`);
      throw new Error(`${e.message}\n${this.log()}`);
    });
    return this;
  }

  // SIGTERM by PID, wait for the exit; SIGKILL if it takes longer than STOP_MS.
  async stop() {
    const child = this.child;
    if (!child) return null;
    this.child = null;
    if (!live.has(child)) return child.exited;
    try { process.kill(child.pid, 'SIGTERM'); } catch (e) { /* gone */ }
    const r = await Promise.race([child.exited, sleep(STOP_MS).then(() => null)]);
    if (r) return r;
    try { process.kill(child.pid, 'SIGKILL'); } catch (e) { /* gone */ }
    await Promise.race([child.exited, sleep(STOP_MS)]);
    throw new Error(`node ${child.pid} ignored SIGTERM for ${STOP_MS} ms (killed)`);
  }

  remove() {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // A JSON API call: resolves {status, body, headers}.  auth=false sends no token.
  async api(method, urlPath, body, auth = true) {
    const headers = {};
    if (auth) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(this.url + urlPath, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (e) { json = { unparsed: text }; }
    return { status: r.status, body: json, headers: r.headers };
  }

  // The same, failing unless the status is one of `ok`.
  async must(method, urlPath, body, ok = [200, 201]) {
    const r = await this.api(method, urlPath, body);
    if (!ok.includes(r.status)) {
      throw new Error(`${method} ${urlPath} ${JSON.stringify(body)} -> ${r.status} ${JSON.stringify(r.body)}`);
    }
    return r.body;
  }

  async addItem(sku, name, price, qty) {
    await this.must('POST', '/api/items', { sku, name, price });
    if (qty > 0) await this.must('POST', '/api/stock/add', { sku, qty });
  }

  // This node's sales as a list, whatever envelope GET /api/sales uses.
  async sales() {
    const b = await this.must('GET', '/api/sales?limit=1000', undefined, [200]);
    const list = Array.isArray(b) ? b : (b.sales || b.items || []);
    if (!Array.isArray(list)) throw new Error(`GET /api/sales: no list in ${JSON.stringify(b)}`);
    return list;
  }

  async stockItem(sku) {
    const b = await this.must('GET', '/api/stock', undefined, [200]);
    return b.items.find((it) => it.sku === sku);
  }
}

async function launchBrowser() {
  const { chromium } = require('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
    timeout: 30000,
  });
}

// For a test file whose tests open pages in one browser: registers (with
// node:test's before and after) a Chromium launched before the file's first
// test and closed after its last, and returns open(t, url, width): a page
// in a new context (en-GB, Europe/London, width x 900) that test t closes
// when it ends, waiting at most uiMs by default, with the page's uncaught
// errors in page.errors.
function browserPages(uiMs) {
  const { before, after } = require('node:test');
  let browser;
  before(async () => { browser = await launchBrowser(); });
  after(async () => { if (browser) await browser.close(); });
  async function open(t, url, width = 1280) {
    const ctx = await browser.newContext({ locale: 'en-GB', timezoneId: 'Europe/London',
                                           viewport: { width, height: 900 } });
    t.after(() => ctx.close());
    const page = await ctx.newPage();
    page.setDefaultTimeout(uiMs);
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e.message));
    await page.goto(url);
    return page;
  }
  return { open };
}

// A node named `name` for test t, started, with `items` ([sku, name,
// price, units]...) in its catalog and stock; stopped and removed when t
// ends.
async function stallFor(t, name, items) {
  const node = await Node.create(name);
  t.after(async () => {
    try { await node.stop(); } finally { node.remove(); }
  });
  await node.start();
  for (const [sku, itemName, price, qty] of items) await node.addItem(sku, itemName, price, qty);
  return node;
}

// A locator's text with runs of white space made one space, trimmed.
const textOf = async (loc) => (await loc.textContent()).replace(/\s+/g, ' ').trim();

module.exports = { Node, launchBrowser, until, sleep, freePort, BIN, browserPages, stallFor, textOf };
