// The web client as two people use it, in headless Chromium (Debian's
// /usr/bin/chromium; playwright-core never downloads a browser), against
// the real server binary: register, connect, chat, typing, ticks, unread
// badges, presence, a reaction, an image and a file, search, scroll-back; a network drop and a
// server restart while messages are sent lose and duplicate nothing.
// Screenshots of each step go to artifacts/ (not committed).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { ServerProcess, serverBinary } from './server.js';

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const WAIT = 20000;
/** The restarted server's send allowance: bursts of 10, one a second. */
const TIGHT_LIMITS = {
  CHAT__RATE_LIMITS__MESSAGES_BURST: '10',
  CHAT__RATE_LIMITS__MESSAGES_PER_SECOND: '1',
};
const PASSWORD = 'correct horse battery';

/** A PNG of `w` x `h` pixels (a gradient), built with zlib only. */
function png(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const rows = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) rows.set([x % 256, y % 256, 128], y * (w * 3 + 1) + 1 + x * 3);
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}


let shots = 0;
async function shot(page, name) {
  shots += 1;
  await page.screenshot({ path: join(ARTIFACTS, `${String(shots).padStart(2, '0')}-${name}.png`) });
}

/** Watches a page for uncaught errors, CSP violations and requests to other origins. */
function watch(page, origin, problems) {
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy/i.test(msg.text())) {
      problems.push(`CSP: ${msg.text()}`);
    }
  });
  page.on('request', (req) => {
    const url = req.url();
    if (!url.startsWith(origin) && !url.startsWith('data:') && !url.startsWith(origin.replace('http', 'ws'))) {
      problems.push(`external request: ${url}`);
    }
  });
}

/** The message texts on screen, top to bottom. */
const texts = (page) => page.$$eval('#messages li .content', (els) => els.map((e) => e.textContent));

/** Waits until the chat shows exactly `expected` (in order) and nothing pending. */
async function showsExactly(page, expected) {
  try {
    await page.waitForFunction((want) => {
      const got = [...document.querySelectorAll('#messages li .content')].map((e) => e.textContent);
      return JSON.stringify(got) === JSON.stringify(want)
        && !document.querySelector('#messages li.pending, #messages li.failed');
    }, expected, { timeout: WAIT });
  } catch (err) {
    assert.deepEqual(await texts(page), expected, err.message);
  }
}

/** Waits until the chat shows each of `expected` exactly once (in any order), nothing pending. */
async function showsOnce(page, expected) {
  try {
    await page.waitForFunction((want) => {
      const got = [...document.querySelectorAll('#messages li .content')].map((e) => e.textContent);
      return got.length === want.length && want.every((w) => got.filter((g) => g === w).length === 1)
        && !document.querySelector('#messages li.pending, #messages li.failed');
    }, expected, { timeout: WAIT });
  } catch (err) {
    assert.deepEqual([...(await texts(page))].sort(), [...expected].sort(), err.message);
  }
}

async function register(page, url, username, firstName) {
  await page.goto(`${url}/`);
  await page.click('#tab-register');
  await page.fill('#register-username', username);
  await page.fill('#register-password', PASSWORD);
  await page.fill('#register-first', firstName);
  await page.click('#register-form button[type=submit]');
  await page.waitForSelector('#shell:not([hidden])', { timeout: WAIT });
  return Number(await page.textContent('#me-id'));
}

/** An access token of `username`, from the API (for requests the test makes itself). */
async function accessToken(url, username) {
  const login = await fetch(`${url}/api/auth/token/`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD }),
  });
  assert.equal(login.status, 200);
  return (await login.json()).access;
}

async function send(page, text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
}

const online = (page) => page.waitForSelector('#offline[hidden]', { state: 'attached', timeout: WAIT });
const offline = (page) => page.waitForSelector('#offline:not([hidden])', { timeout: WAIT });

test('two people use the web client', { timeout: 240000 }, async (t) => {
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(ARTIFACTS, { recursive: true });
  const server = new ServerProcess(serverBinary(), ARTIFACTS);
  await server.start();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const problems = [];
  t.after(async () => {
    await browser.close();
    await server.cleanup();
  });
  // Alice on a laptop-sized window, Bob on a phone-sized one.
  const aliceContext = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const bobContext = await browser.newContext({ viewport: { width: 390, height: 760 }, hasTouch: true });
  const alice = await aliceContext.newPage();
  const bob = await bobContext.newPage();
  watch(alice, server.url, problems);
  watch(bob, server.url, problems);
  let refreshes = 0;
  alice.on('request', (req) => {
    if (req.url().endsWith('/api/auth/token/refresh/')) refreshes += 1;
  });
  const conversation = [];
  let bobId = 0;

  await t.test('register', async () => {
    await alice.goto(`${server.url}/`);
    await alice.waitForSelector('#login-form');
    await shot(alice, 'login');
    await register(alice, server.url, 'alice', 'Alice');
    bobId = await register(bob, server.url, 'bob', 'Bob');
    await shot(bob, 'bob-registered');
  });

  await t.test('connect: request and accept, live', async () => {
    await alice.click('#tab-contacts');
    await alice.fill('#find-input', String(bobId));
    await alice.press('#find-input', 'Enter');
    await alice.click('#found button.primary');
    await alice.waitForSelector('#outgoing li', { timeout: WAIT });
    await shot(alice, 'request-sent');
    await bob.waitForSelector('#contacts-badge:not([hidden])', { timeout: WAIT });
    assert.equal((await bob.textContent('#contacts-badge')).trim(), '1');
    await bob.click('#tab-contacts');
    await bob.waitForSelector('#incoming li', { timeout: WAIT });
    await shot(bob, 'request-received');
    await bob.click('#incoming button:has-text("Accept")');
    await bob.waitForSelector('#accepted li', { timeout: WAIT });
    await alice.waitForSelector('#accepted li', { timeout: WAIT });
    for (const page of [alice, bob]) {
      await page.click('#tab-chats');
      await page.waitForSelector('#conversations li', { timeout: WAIT });
    }
  });

  await t.test('presence: Bob shows online', async () => {
    await alice.waitForSelector('#conversations .dot.online', { timeout: WAIT });
    await shot(alice, 'presence-online');
  });

  await t.test('unread badge and delivered ticks', async () => {
    await alice.click('#conversations a');
    await alice.waitForSelector('#chat:not([hidden])');
    for (const text of ['Hello Bob', 'Say <b>hello</b> & bye']) {
      await send(alice, text);
      conversation.push(text);
    }
    await showsExactly(alice, conversation);
    await bob.waitForFunction(() => document.querySelector('#conversations .badge')?.textContent === '2',
      null, { timeout: WAIT });
    assert.match(await bob.textContent('#conversations .preview'), /Say <b>hello<\/b> & bye/);
    await shot(bob, 'unread-badge');
    // Bob's client acknowledged them without opening the chat.
    await alice.waitForFunction(() => {
      const ticks = [...document.querySelectorAll('#messages .msg.own .ticks')];
      return ticks.length === 2 && ticks.every((t) => t.classList.contains('delivered'));
    }, null, { timeout: WAIT });
    await shot(alice, 'delivered');
  });

  await t.test('read ticks once Bob opens the chat', async () => {
    await bob.click('#conversations a');
    await showsExactly(bob, conversation);
    await bob.waitForSelector('#chats-badge[hidden]', { state: 'attached', timeout: WAIT });
    await alice.waitForFunction(() => {
      const ticks = [...document.querySelectorAll('#messages .msg.own .ticks')];
      return ticks.length === 2 && ticks.every((t) => t.classList.contains('read'));
    }, null, { timeout: WAIT });
    await shot(alice, 'read');
    await shot(bob, 'bob-chat');
  });

  await t.test('typing indicator, then the reply', async () => {
    await bob.type('#composer-input', 'Fine, thanks', { delay: 40 });
    await alice.waitForFunction(() => /Bob is typing/.test(document.querySelector('#typing').textContent),
      null, { timeout: WAIT });
    await shot(alice, 'typing');
    await bob.press('#composer-input', 'Enter');
    conversation.push('Fine, thanks');
    await showsExactly(alice, conversation);
    await showsExactly(bob, conversation);
    await alice.waitForFunction(() => document.querySelector('#typing').textContent === '', null,
      { timeout: WAIT });
  });

  await t.test('a reaction', async () => {
    await alice.click('#messages li.theirs .chip.add');
    await alice.click('#messages li.theirs .picker button[aria-label="React with 👍"]');
    await bob.waitForFunction(() => document.querySelector('#messages li.own .chip:not(.add)')?.textContent === '👍 1',
      null, { timeout: WAIT });
    await alice.waitForSelector('#messages li.theirs .chip[aria-pressed="true"]', { timeout: WAIT });
    await shot(bob, 'reaction');
  });

  await t.test('an image (thumbnail shown) and a file (download link)', async () => {
    await alice.fill('#composer-input', 'Holiday photo');
    await alice.setInputFiles('#attach-input', { name: 'photo.png', mimeType: 'image/png', buffer: png(640, 480) });
    conversation.push('Holiday photo');
    await showsExactly(alice, conversation);
    await showsExactly(bob, conversation);
    // The thumbnail, loaded through the token in its URL: 320 x 240.
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => {
        const img = [...document.querySelectorAll('#messages .attachments img')].at(-1);
        return img?.complete && img.naturalWidth === 320 && img.naturalHeight === 240;
      }, null, { timeout: WAIT });
    }
    await shot(bob, 'image');
    // A text file with no text: a download link on the other side.
    await bob.setInputFiles('#attach-input', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('my notes\n') });
    conversation.push('');
    await showsExactly(bob, conversation);
    await showsExactly(alice, conversation);
    await alice.waitForSelector('#messages li.theirs .attachments a.file', { timeout: WAIT });
    const link = await alice.$eval('#messages li.theirs .attachments a.file', (a) => a.textContent);
    assert.match(link, /notes\.txt/);
    const [status, body, disposition] = await alice.evaluate(async () => {
      const a = [...document.querySelectorAll('#messages li.theirs .attachments a.file')].at(-1);
      const res = await fetch(a.href);
      return [res.status, await res.text(), res.headers.get('content-disposition')];
    });
    assert.deepEqual([status, body], [200, 'my notes\n']);
    assert.match(disposition, /^attachment;/);
    await shot(alice, 'file');
  });

  await t.test('search with a safe highlight', async () => {
    await alice.fill('#search-input', 'hello');
    await alice.press('#search-input', 'Enter');
    await alice.waitForFunction(() => document.querySelectorAll('#search-list li').length === 2, null,
      { timeout: WAIT });
    const snippets = await alice.$$eval('#search-list .snippet', (els) => els.map((e) => ({
      text: e.textContent,
      marks: [...e.querySelectorAll('mark')].map((m) => m.textContent),
      elements: [...e.querySelectorAll('*')].map((n) => n.tagName).filter((n) => n !== 'MARK' && n !== 'SPAN'),
    })));
    // The server's escaped text comes out as text; only <mark> becomes an element.
    assert.deepEqual(snippets.map((s) => s.text), ['You: Say <b>hello</b> & bye', 'You: Hello Bob']);
    assert.deepEqual(snippets.map((s) => s.marks), [['hello'], ['Hello']]);
    assert.deepEqual(snippets.flatMap((s) => s.elements), []);
    await shot(alice, 'search');
    await alice.click('#search-clear');
  });

  await t.test('a network drop: messages both ways, nothing lost or doubled', async () => {
    await bobContext.setOffline(true);
    await offline(bob);
    for (const text of ['While you were away 1', 'While you were away 2']) {
      await send(alice, text);
      conversation.push(text);
    }
    await send(bob, 'Sent while offline');
    await bob.waitForSelector('#messages li.pending:has-text("Waiting for the connection")', { timeout: WAIT });
    await shot(bob, 'offline-pending');
    await bobContext.setOffline(false);
    conversation.push('Sent while offline');
    await online(bob);
    await showsExactly(bob, conversation);
    await showsExactly(alice, conversation);
    await shot(bob, 'back-online');
  });

  await t.test('a steady stream is acknowledged while it lasts', async () => {
    const conversationId = Number(/#\/c\/(\d+)/.exec(alice.url())[1]);
    const access = await accessToken(server.url, 'alice');
    // Bob's page records the ack frames it sends.
    await bob.evaluate(() => {
      window.sentAcks = [];
      const send = WebSocket.prototype.send;
      WebSocket.prototype.send = function (data) {
        try {
          const frame = JSON.parse(data);
          if (frame.type === 'ack') window.sentAcks.push(Date.now());
        } catch { /* not JSON */ }
        return send.call(this, data);
      };
    });
    // One message every 40 ms for a second: never a 100 ms pause.
    let last = 0;
    for (let i = 1; i <= 25; i++) {
      const res = await fetch(`${server.url}/api/chat/messages/`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${access}` },
        body: JSON.stringify({ conversation_id: conversationId, content: `Stream ${i}`, client_id: `stream-${i}` }),
      });
      assert.equal(res.status, 201);
      conversation.push(`Stream ${i}`);
      last = Date.now();
      await new Promise((r) => setTimeout(r, 40));
    }
    await showsExactly(alice, conversation);
    const acks = await bob.evaluate(() => window.sentAcks);
    assert.ok(acks.filter((at) => at < last).length >= 2,
      `Bob's client acked ${acks.length} times, ${acks.filter((at) => at < last).length} before the stream ended`);
  });

  await t.test('scroll-back through the history (cursor paging)', async () => {
    const conversationId = Number(/#\/c\/(\d+)/.exec(alice.url())[1]);
    const access = await accessToken(server.url, 'alice');
    for (let i = 1; i <= 60; i++) {
      const post = () => fetch(`${server.url}/api/chat/messages/`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${access}` },
        body: JSON.stringify({ conversation_id: conversationId, content: `Bulk ${i}`, client_id: `bulk-${i}` }),
      });
      let res = await post();
      // The server's own rate limit (10 a second, bursts of 30) stays on.
      while (res.status === 429) {
        await new Promise((r) => setTimeout(r, 500));
        res = await post();
      }
      assert.equal(res.status, 201);
      conversation.push(`Bulk ${i}`);
    }
    await showsExactly(alice, conversation);
    // A reload keeps the tab's session and starts from the newest 50.
    await bob.reload();
    await bob.waitForFunction(() => document.querySelectorAll('#messages li').length === 50, null,
      { timeout: WAIT });
    assert.equal(await bob.isVisible('#older'), true);
    await shot(bob, 'history-latest');
    // Scrolling to the top loads the older pages (the button does the same from the keyboard).
    await bob.$eval('#history', (el) => { el.scrollTop = 0; });
    await showsExactly(bob, conversation);
    await bob.waitForSelector('#older[hidden]', { state: 'attached', timeout: WAIT });
    await shot(bob, 'history-all');
  });

  await t.test('a server restart while both send: nothing lost or doubled', async () => {
    await server.stop();
    await offline(alice);
    await offline(bob);
    await shot(alice, 'server-down');
    const during = ['During the restart 1', 'During the restart 2', 'Bob during the restart'];
    await send(alice, during[0]);
    await send(alice, during[1]);
    await send(bob, during[2]);
    // It comes back with a tight send allowance, for the retry step below.
    await server.start(TIGHT_LIMITS);
    await online(alice);
    await online(bob);
    await showsOnce(alice, [...conversation, ...during]);
    await showsOnce(bob, [...conversation, ...during]);
    // Both show the same order (by message id), and Alice's own order held.
    const seen = await texts(alice);
    assert.deepEqual(await texts(bob), seen);
    assert.ok(seen.indexOf(during[0]) < seen.indexOf(during[1]), seen.join(' | '));
    conversation.splice(0, conversation.length, ...seen);
    await shot(alice, 'after-restart');
  });

  await t.test('retry after a failure (the server refuses sends over its allowance)', async () => {
    // 15 sends through the composer at once, over the allowance of 10: each
    // refused one gets an `error` event with its client_id and shows
    // "Not sent" with Retry; retried (one a second, as the allowance
    // refills), each shows exactly once.
    const sent = Array.from({ length: 15 }, (_, i) => `Quick ${i + 1}`);
    await alice.evaluate((texts) => {
      const input = document.getElementById('composer-input');
      for (const text of texts) {
        input.value = text;
        document.getElementById('composer').requestSubmit();
      }
    }, sent);
    await alice.waitForSelector('#messages li.failed button.retry', { timeout: WAIT });
    await shot(alice, 'send-failed');
    for (let i = 0; i < 40 && (await alice.$('#messages li.failed')); i++) {
      await new Promise((r) => setTimeout(r, 1100));
      await alice.click('#messages li.failed button.retry');
    }
    await showsOnce(alice, [...conversation, ...sent]);
    await showsOnce(bob, [...conversation, ...sent]);
    conversation.splice(0, conversation.length, ...(await texts(alice)));
  });

  await t.test('reject and remove, live on both sides', async () => {
    const carolContext = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const carol = await carolContext.newPage();
    watch(carol, server.url, problems);
    await register(carol, server.url, 'carol', 'Carol');
    const aliceId = Number(await alice.textContent('#me-id'));
    const request = async () => {
      await carol.click('#tab-contacts');
      await carol.fill('#find-input', String(aliceId));
      await carol.press('#find-input', 'Enter');
      await carol.click('#found button.primary');
      await carol.waitForSelector('#outgoing li', { timeout: WAIT });
      await alice.click('#tab-contacts');
      await alice.waitForSelector('#incoming li:has-text("Carol")', { timeout: WAIT });
    };
    await request();
    await alice.click('#incoming button:has-text("Reject")');
    await carol.waitForSelector('#outgoing li', { state: 'detached', timeout: WAIT });
    await request();
    await alice.click('#incoming button:has-text("Accept")');
    await carol.waitForSelector('#accepted li:has-text("Alice")', { timeout: WAIT });
    await carol.click('#accepted button:has-text("Chat")');
    await carol.waitForSelector('#composer:not([hidden])', { timeout: WAIT });
    alice.once('dialog', (dialog) => dialog.accept());
    await alice.click('#accepted li:has-text("Carol") button:has-text("Remove")');
    await alice.waitForSelector('#accepted li:has-text("Carol")', { state: 'detached', timeout: WAIT });
    // Carol keeps the history but can no longer send.
    await carol.waitForSelector('#cannot-send:not([hidden])', { timeout: WAIT });
    await shot(carol, 'removed');
    await carolContext.close();
    await alice.click('#tab-chats');
  });

  await t.test('presence: Bob goes offline when he leaves', async () => {
    await bobContext.close();
    await alice.waitForFunction(() => document.querySelector('#chat-presence').textContent !== 'online'
      && !document.querySelector('#conversations .dot.online'), null, { timeout: WAIT });
    await shot(alice, 'bob-left');
  });

  await t.test('no errors, no CSP violations, no request to another origin', () => {
    assert.deepEqual(problems, []);
    // Access tokens live a minute here: the client refreshed them as it went.
    assert.ok(refreshes > 0, 'no token refresh');
  });
});
