// The web app's figures for docs/benchmarks.md, in Chromium against the real binary
// (MISSIVE_BIN): the bytes the browser downloads for the first page (compressed, as sent),
// the time from navigation to the conversation list for a user with 200 conversations and
// about 5,000 synced items, cold (an empty IndexedDB, everything synced) and warm (a reload,
// everything from IndexedDB), and the time to render a chat of 2,000 messages and scroll it.
// Prints one line of JSON. Run by scripts/bench-web.

import { chromium } from "playwright-core";
import { MissiveClient, pb } from "../../sdk/dist/src/index.js";
import { TestServer, uniqueName } from "../../sdk/dist/test/server.js";

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
  await Promise.all(
    writers.map(async ({ client }, i) => {
      const count = i === 0 ? LONG_CHAT : perOther;
      for (let n = 0; n < count; n++) {
        await client.call("send", {
          toUserId: reader.client.me.userId,
          kind: pb.MessageKind.TEXT,
          text: `message ${n} of ${count}: the quick brown fox jumps over the lazy dog`,
          clientMsgId: `m${n}`,
        });
      }
    }),
  );
  const seeded = Date.now() - started;

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
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
  const listShown = async () => {
    await page.waitForFunction(
      (n) => document.querySelectorAll("nav[aria-label='Conversations'] li").length >= n,
      CONVERSATIONS,
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

  // The long chat: open it, all 2,000 rendered, then scroll to its top.
  const chatStart = Date.now();
  await page.getByRole("button", { name: new RegExp(writers[0].name) }).click();
  await page.waitForFunction(
    (n) => document.querySelectorAll(".messages .bubble").length >= n,
    LONG_CHAT,
    { polling: "raf" },
  );
  const chatMs = Date.now() - chatStart;
  const scrollMs = await page.evaluate(async () => {
    const list = document.querySelector(".messages");
    const start = performance.now();
    list.scrollTop = 0;
    await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    return performance.now() - start;
  });
  await browser.close();
  console.log(JSON.stringify({
    first_page_bytes: firstPageBytes,
    conversations: listed,
    items: LONG_CHAT + perOther * (CONVERSATIONS - 1),
    seed_ms: seeded,
    cold_list_ms: coldMs,
    warm_list_ms: warmMs,
    chat_2000_render_ms: chatMs,
    chat_2000_scroll_ms: Math.round(scrollMs),
  }));
} finally {
  await server.stop();
}
