// The web app in a real browser (Debian's Chromium, driven by playwright-core) against the
// real binary: MISSIVE_BIN serves it, MISSIVE_CLI is the protocol-1 client in the group.
// Screenshots of the main screens go to ARTIFACTS (default target/test-artifacts).
//
//   MISSIVE_BIN=target/release/missive MISSIVE_CLI=target/release/missive-cli \
//     node --test clients/web/test/app.test.mjs
// (the SDK's test helpers must be built: `npm run build --workspace sdk` in clients/)

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { TestServer, uniqueName } from "../../sdk/dist/test/server.js";
import { launchChromium } from "./browser.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const artifacts = process.env.ARTIFACTS ?? path.resolve(here, "../../../target/test-artifacts");
const PASSWORD = "correct horse battery";
const TIMEOUT = 15_000;
const run = promisify(execFile);

let server;
let browser;

before(async () => {
  await mkdir(artifacts, { recursive: true });
  server = await TestServer.start();
  browser = await launchChromium();
});

after(async () => {
  // What each page showed at the end, to look at when a step failed.
  for (const [index, page] of pages.entries()) {
    await page.screenshot({ path: path.join(artifacts, `web-last-${index}.png`) }).catch(() => undefined);
  }
  await browser?.close();
  await server?.stop();
});

/** A new browser (its own storage) with a page on the app, the page's errors collected. */
const pages = [];

async function openPage(viewport = { width: 1100, height: 760 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  pages.push(page);
  page.setDefaultTimeout(TIMEOUT);
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(String(error)));
  page.on("console", (message) => message.type() === "error" && page.errors.push(message.text()));
  await page.goto(`${server.http}/`);
  return page;
}

async function register(page, prefix) {
  const name = uniqueName(prefix);
  await page.getByRole("button", { name: "New here? Create an account" }).click();
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Display name").fill(`${prefix} web`);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("button", { name: "Log out" }).waitFor();
  await page.getByText("Online", { exact: true }).waitFor();
  return name;
}

async function befriend(asker, askerName, answerer, answererName) {
  await asker.getByRole("tab", { name: /Contacts/ }).click();
  await asker.getByLabel("Username").fill(answererName);
  await asker.getByLabel("Greeting").fill(`hi ${answererName}, it's ${askerName}`);
  await asker.getByRole("button", { name: "Send request" }).click();
  await asker.getByText(`Request sent to ${answererName}.`).waitFor();
  await answerer.getByRole("tab", { name: /Contacts/ }).click();
  await answerer.getByText(`“hi ${answererName}, it's ${askerName}”`).waitFor();
  await answerer.getByRole("button", { name: "Accept" }).click();
  await asker.locator("section", { hasText: "Friends" }).getByText(`@${answererName}`).waitFor();
}

/** Opens the chat with a friend from the contact list. */
async function openChat(page, title) {
  await page.getByRole("tab", { name: /Contacts/ }).click();
  await page.locator(".contacts").getByRole("button", { name: new RegExp(title) }).first().click();
  await page.getByRole("heading", { name: title }).waitFor();
}

async function say(page, text) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByLabel("Message", { exact: true }).press("Enter");
}

function bubble(page, text) {
  return page.locator(".messages .bubble", { hasText: text });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, `web-${name}.png`) });
}

/** The command-line client in a profile of its own. */
async function cli(profile, ...args) {
  const binary = process.env.MISSIVE_CLI;
  if (!binary) throw new Error("MISSIVE_CLI must name missive-cli");
  const { stdout } = await run(binary, ["--server", server.http, "--profile", profile, ...args]);
  return stdout;
}

// A 2x2 PNG.
const PNG = Buffer.from(
  "89504e470d0a1a0a0000000d494844520000000200000002080600000072b60d240000001149444154789c63f8" +
    "cfc0f01f8419600c0047ca07f967596eb70000000049454e44ae426082",
  "hex",
);

test("two browsers chat, share an image, recall, read, group with a third and a protocol-1 client, reload and restart", async () => {
  const alice = await openPage();
  await shot(alice, "login");
  const aliceName = await register(alice, "alice");
  const bob = await openPage();
  const bobName = await register(bob, "bob");
  await befriend(alice, aliceName, bob, bobName);
  await shot(bob, "contacts");

  // 1:1, both ways, live.
  await openChat(alice, "bob web");
  await say(alice, "hello bob, from the browser");
  await bob.getByRole("tab", { name: "Chats" }).click();
  const row = bob.getByRole("button", { name: /alice web, 1 unread/ });
  await row.waitFor();
  assert.match(await bob.title(), /^\(1\) Missive$/);
  await row.click();
  await bubble(bob, "hello bob, from the browser").waitFor();
  await say(bob, "hello alice");
  await bubble(alice, "hello alice").waitFor();
  // Bob has the chat open: his receipt shows on alice's message.
  await bubble(alice, "hello bob, from the browser").getByText("Read").waitFor();

  // Version 3, live on the other side: presence, typing, an edit and a reaction.
  const status = (page) => page.locator(".chat-head .presence");
  await status(alice).getByText("online", { exact: true }).waitFor();
  await bob.getByLabel("Message", { exact: true }).pressSequentially("still typ");
  await status(alice).getByText("typing…").waitFor();
  await bob.getByLabel("Message", { exact: true }).fill("");
  await status(alice).getByText("online", { exact: true }).waitFor();
  bob.once("dialog", (dialog) => dialog.accept("hello alice, edited"));
  await bubble(bob, "hello alice").getByRole("button", { name: "Edit" }).click();
  await bubble(alice, "hello alice, edited").getByText("edited", { exact: true }).waitFor();
  await bubble(alice, "hello alice, edited").getByRole("button", { name: "React" }).click();
  await alice.getByRole("menuitem", { name: "React 👍" }).click();
  await bubble(bob, "hello alice, edited").getByRole("button", { name: "👍 1" }).waitFor();
  await bubble(alice, "hello alice, edited").getByRole("button", { name: "👍 1", pressed: true }).click();
  await bubble(bob, "hello alice, edited").getByRole("button", { name: "👍 1" }).waitFor({ state: "detached" });

  // An image, inline on the other side.
  const file = path.join(await mkdtemp(path.join(tmpdir(), "missive-web-")), "dot.png");
  await writeFile(file, PNG);
  await alice.locator('input[type="file"]').setInputFiles(file);
  const image = bob.locator(".messages img[alt='dot.png']");
  await image.waitFor();
  await bob.waitForFunction(() => document.querySelector(".messages img[alt='dot.png']")?.naturalWidth === 2);
  await image.click();
  await bob.getByRole("dialog", { name: "Image" }).waitFor();
  await bob.getByRole("button", { name: "Close" }).click();

  // A recall, gone on the other side.
  await say(alice, "oops, wrong chat");
  await bubble(bob, "oops, wrong chat").waitFor();
  await bubble(alice, "oops, wrong chat").getByRole("button", { name: "Recall" }).click();
  await bob.locator(".messages").getByText("alice web recalled a message").waitFor();
  assert.equal(await bubble(bob, "oops, wrong chat").count(), 0);
  await shot(alice, "chat");

  // A group with a third browser user and a protocol-1 command-line user.
  const carol = await openPage();
  const carolName = await register(carol, "carol");
  await befriend(carol, carolName, alice, aliceName);
  const profile = await mkdtemp(path.join(tmpdir(), "missive-cli-"));
  const daveName = uniqueName("dave");
  await cli(profile, "register", daveName, PASSWORD);
  await cli(profile, "login", daveName, PASSWORD);
  await cli(profile, "friend", "add", aliceName, "--greeting", "dave here");
  await alice.getByRole("tab", { name: /Contacts/ }).click();
  await alice.getByText("“dave here”").waitFor();
  await alice.getByRole("button", { name: "Accept" }).click();

  await alice.getByRole("button", { name: "New group" }).click();
  await alice.getByLabel("Group name").fill("weekend");
  await alice.getByRole("checkbox", { name: "bob web" }).check();
  await alice.getByRole("button", { name: "Create" }).click();
  await alice.getByRole("heading", { name: "weekend" }).waitFor();
  await say(alice, "before carol joined");
  await alice.getByRole("button", { name: "Group info" }).click();
  // The owner renames the group and sets its announcement in one save.
  await alice.getByLabel("Name", { exact: true }).fill("weekend trip");
  await alice.getByLabel("Announcement").fill("Bring snacks");
  await alice.getByRole("button", { name: "Save" }).click();
  await alice.getByRole("heading", { name: "weekend trip" }).first().waitFor();
  await alice.locator(".chat-head .announcement", { hasText: "Bring snacks" }).waitFor();
  await alice.getByRole("button", { name: "Invite friends" }).click();
  await alice.getByRole("checkbox", { name: "carol web" }).check();
  await alice.getByRole("checkbox", { name: daveName }).check();
  await alice.getByRole("button", { name: "Invite", exact: true }).click();
  await alice.locator(".members").getByText("carol web").waitFor();
  await shot(alice, "group");

  // @mention from the member picker.
  const box = alice.getByLabel("Message", { exact: true });
  await box.fill("");
  await box.pressSequentially("welcome @car");
  await alice.getByRole("option", { name: /carol web/ }).waitFor();
  await box.press("Enter");
  await box.pressSequentially("and everyone");
  await box.press("Enter");

  await carol.getByRole("tab", { name: "Chats" }).click();
  await carol.getByRole("button", { name: /weekend trip \(group\)/ }).click();
  await carol.locator("mark.mention", { hasText: "@carol web" }).waitFor();
  await carol.getByText(/invited/).first().waitFor();
  await say(carol, "thanks, happy to be here");
  await bubble(alice, "thanks, happy to be here").waitFor();
  await bubble(bob, "thanks, happy to be here").waitFor().catch(async () => {
    await bob.getByRole("button", { name: /weekend/ }).click();
    await bubble(bob, "thanks, happy to be here").waitFor();
  });

  // Dave, on protocol 1, sees the group as a contact and writes to it.
  const synced = await cli(profile, "--protocol", "1", "sync");
  const groupHandle = /(\d+)@chatroom/.exec(synced);
  assert.ok(groupHandle, `dave's sync shows the group's contact: ${synced}`);
  // A group message reaches protocol 1 from the group's contact, the sender's name in front.
  assert.match(synced, /@chatroom -> dave\w*: .*thanks, happy to be here/, synced);
  await cli(profile, "--protocol", "1", "send", groupHandle[0], "dave from an old client");
  await bubble(carol, "dave from an old client").waitFor();

  // A reload resumes from IndexedDB: everything once.
  await bob.reload();
  await bob.getByRole("button", { name: "Log out" }).waitFor();
  await bob.getByRole("button", { name: /alice web/ }).click();
  await bubble(bob, "hello bob, from the browser").waitFor();
  assert.equal(await bubble(bob, "hello bob, from the browser").count(), 1);
  // The image shows once its bytes are fetched again (the text comes first).
  await bob.locator(".messages img[alt='dot.png']").first().waitFor();
  assert.equal(await bob.locator(".messages img[alt='dot.png']").count(), 1);

  // The server goes away and comes back; the pages reconnect and catch up.
  await server.kill();
  await bob.getByText(/Reconnecting|Offline/).first().waitFor();
  await server.restart();
  await cli(profile, "--protocol", "1", "send", groupHandle[0], "sent while the pages reconnect");
  await bob.getByRole("button", { name: /weekend/ }).click();
  await bubble(bob, "sent while the pages reconnect").waitFor({ timeout: 30_000 });
  await bob.getByText("Online", { exact: true }).waitFor({ timeout: 30_000 });

  // A phone-sized screen.
  const phone = await openPage({ width: 390, height: 780 });
  await phone.getByLabel("Username").fill(aliceName);
  await phone.getByLabel("Password").fill(PASSWORD);
  await phone.getByRole("button", { name: "Log in" }).click();
  await phone.getByRole("button", { name: /weekend/ }).click();
  await bubble(phone, "sent while the pages reconnect").waitFor();
  await shot(phone, "phone");

  for (const page of [alice, bob, carol, phone]) {
    const unexpected = page.errors.filter((e) => !/ERR_CONNECTION_REFUSED|WebSocket|Failed to load resource/.test(e));
    assert.deepEqual(unexpected, [], "no errors in the page");
  }
});
