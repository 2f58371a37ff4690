// The web app's figures for docs/benchmarks.md, in Chromium against the real binary
// (MISSIVE_BIN): the bytes the browser downloads for the first page (compressed, as sent),
// the time from navigation to the conversation list for a user with 200 conversations and
// about 5,000 synced items, cold (an empty IndexedDB, everything synced) and warm (a reload,
// everything from IndexedDB), and the time to render a chat of 2,000 messages and scroll it.
// Prints one line of JSON. Run by scripts/bench-web.

import { MissiveClient, pb } from "../../sdk/dist/src/index.js";
import { TestServer, uniqueName } from "../../sdk/dist/test/server.js";
import { launchChromium } from "./browser.mjs";

const PASSWORD = "correct horse battery";
const CONVERSATIONS = 200;
const LONG_CHAT = 2000;
const ITEMS = 5000;

const server = await TestServer.start(["--direct-messages", "anyone", "--rate-limits", "false"]);
try {
  // The reader, and 200 others who write to it: one 2,000 messages, the rest the remainder.
  const register = async (prefix) => {
    const name = uniqueName(prefix);
    const client = new MissiveClient({ server: server.http });
    await client.register(name, PASSWORD);
    await client.login(name, PASSWORD);
    return { name, client };
  };
  const reader = await register("reader");
  const writers = [];
  for (let i = 0; i < CONVERSATIONS; i++) writers.push(await register("writer"));
  const perOther = Math.ceil((ITEMS - LONG_CHAT) / (CONVERSATIONS - 1));
  const started = Date.now();
  // 16 writers at a time: the short link's connections from one address are capped (256),
  // and the page must still get one.
  const queue = writers.map((writer, i) => ({ ...writer, count: i === 0 ? LONG_CHAT : perOther }));
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await write(next);
    }),
  );
  async function write({ client, count }) {
    for (let n = 0; n < count; n++) {
      await client.send({
        toUserId: reader.client.me.userId,
        kind: pb.MessageKind.TEXT,
        text: `message ${n} of ${count}: the quick brown fox jumps over the lazy dog`,
        clientMsgId: `m${n}`,
      });
    }
  }
  const seeded = Date.now() - started;

  const browser = await launchChromium();
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(120_000);

  // The first page, compressed as sent: every response of the load, headers excluded.
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  let firstPageBytes = 0;
  cdp.on("Network.loadingFinished", (event) => (firstPageBytes += event.encodedDataLength));
  cdp.on("Network.responseReceived", (event) => (firstPageBytes -= event.response.encodedDataLength ?? 0));
  await page.goto(`${server.http}/`, { waitUntil: "networkidle" });
  await cdp.send("Network.disable");

  const rows = () => page.locator("nav[aria-label='Conversations'] li").count();
  // The list is whole when it has every conversation and the newest message of the long
  // chat (the last item synced) is previewed.
  const listShown = async () => {
    await page.waitForFunction(
      ([n, last]) =>
        document.querySelectorAll("nav[aria-label='Conversations'] li").length >= n &&
        [...document.querySelectorAll(".preview")].some((p) => p.textContent.includes(last)),
      [CONVERSATIONS, `message ${LONG_CHAT - 1} of ${LONG_CHAT}:`],
      { polling: "raf" },
    );
  };

  // Cold: log in with nothing stored; the list is whole once every item is synced.
  await page.getByLabel("Username").fill(reader.name);
  await page.getByLabel("Password").fill(PASSWORD);
  const coldStart = Date.now();
  await page.getByRole("button", { name: "Log in" }).click();
  await listShown();
  const coldMs = Date.now() - coldStart;

  // Warm: a reload, everything from IndexedDB (the server has nothing new).
  const warmStart = Date.now();
  await page.reload();
  await listShown();
  const warmMs = Date.now() - warmStart;
  const listed = await rows();

  // The long chat: open it (the newest messages shown), then scroll up to its first
  // message, a page of earlier messages at a time.
  // Timed in the page, from the click to the frame that shows the newest message.
  const row = await page.getByRole("button", { name: new RegExp(`^${writers[0].name}(,|$)`) }).elementHandle();
  const chatMs = await row.evaluate(async (button, last) => {
    const start = performance.now();
    button.click();
    const shown = () => [...document.querySelectorAll(".messages .bubble")].some((b) => b.textContent.includes(last));
    while (!shown()) await new Promise((resolve) => requestAnimationFrame(resolve));
    return performance.now() - start;
  }, `message ${LONG_CHAT - 1} of ${LONG_CHAT}:`);
  const scroll = await page.evaluate(async (first) => {
    const list = document.querySelector(".messages");
    const start = performance.now();
    let steps = 0;
    const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
    while (![...list.querySelectorAll(".bubble")].some((b) => b.textContent.includes(first))) {
      list.scrollTop = 0;
      steps += 1;
      await frame();
      await frame();
    }
    return { ms: performance.now() - start, steps, shown: list.querySelectorAll(".bubble").length };
  }, `message 0 of ${LONG_CHAT}:`);
  await browser.close();
  console.log(JSON.stringify({
    first_page_bytes: firstPageBytes,
    conversations: listed,
    items: LONG_CHAT + perOther * (CONVERSATIONS - 1),
    seed_ms: seeded,
    cold_list_ms: coldMs,
    warm_list_ms: warmMs,
    chat_2000_open_ms: Math.round(chatMs),
    chat_2000_scroll_to_first_ms: Math.round(scroll.ms),
    chat_2000_scroll_steps: scroll.steps,
    chat_2000_shown_at_first: scroll.shown,
  }));
} finally {
  await server.stop();
}
