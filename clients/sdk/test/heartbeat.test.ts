// The smart heartbeat (docs/protocol.md §5.4): the policy alone, then the loop on mocked
// timers against a simulated network path that forgets links idle longer than it allows.

import assert from "node:assert/strict";
import { mock, test } from "node:test";
import { HeartbeatPolicy, STEP_S, keepHeartbeat } from "../src/heartbeat.js";

const range = { startS: 30, minS: 10, maxS: 300 };

test("each interval is proven twice, then the next probe is one step longer, up to the maximum", () => {
  const policy = new HeartbeatPolicy(range);
  const waited: number[] = [];
  for (let i = 0; i < 40; i++) {
    waited.push(policy.interval);
    policy.answered();
  }
  assert.deepEqual(waited.slice(0, 6), [30, 30, 60, 60, 90, 90]);
  assert.equal(policy.interval, 300, "the maximum is reached");
  assert.ok(waited.every((s) => s <= 300));
  assert.equal(policy.good, 300);
});

test("a failed probe goes back to the proven interval and settles there", () => {
  const policy = new HeartbeatPolicy(range);
  for (let i = 0; i < 4; i++) policy.answered(); // 30, 30, 60, 60 proven; now at 90
  assert.equal(policy.interval, 90);
  policy.unanswered();
  assert.equal(policy.interval, 60);
  assert.ok(policy.isSettled);
  for (let i = 0; i < 10; i++) policy.answered();
  assert.equal(policy.interval, 60, "a settled client probes no more");
});

test("a proven interval that fails is one step shorter, never below the minimum", () => {
  const policy = new HeartbeatPolicy({ startS: 30, minS: 10, maxS: 300 });
  policy.unanswered();
  assert.equal(policy.interval, 10, "30 - 30 is below the minimum");
  const long = new HeartbeatPolicy({ startS: 120, minS: 10, maxS: 300 });
  long.unanswered();
  assert.equal(long.interval, 120 - STEP_S);
});

test("a server that names no range keeps the interval fixed", () => {
  const policy = new HeartbeatPolicy({ startS: 45, minS: 0, maxS: 0 });
  for (let i = 0; i < 10; i++) policy.answered();
  assert.equal(policy.interval, 45);
  assert.equal(policy.nextIfAnswered(), 45);
});

test("the loop finds the longest interval a path keeps, on mocked time", async () => {
  mock.timers.enable({ apis: ["setTimeout", "Date"] });
  try {
    for (const forgetsAfterS of [100, 200, 1000]) {
      const policy = new HeartbeatPolicy(range);
      let connectedAt = Date.now();
      let lastHeardAt = Date.now();
      const told: number[] = [];
      // The path forgets a link idle longer than it allows; a forgotten link answers nothing.
      const ping = async (nextS: number) => {
        const idleS = (Date.now() - lastHeardAt) / 1000;
        if (idleS > forgetsAfterS) throw new Error("no answer");
        told.push(nextS);
        lastHeardAt = Date.now();
        return nextS;
      };
      const sleep = (ms: number) => new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms));
      let links = 0;
      // Reconnect after each loss, as the client does, keeping what the policy learnt.
      while (links < 5) {
        links++;
        connectedAt = lastHeardAt = Date.now();
        const run = keepHeartbeat(policy, ping, sleep);
        // Let the loop run for a simulated day at most; a link kept that long is kept.
        let lost = false;
        for (let t = 0; t < 24 * 3600 && !lost; t += 10) {
          mock.timers.tick(10_000);
          lost = await ended(run);
        }
        if (!lost) break;
      }
      assert.ok(Date.now() - connectedAt >= 24 * 3600 * 1000 - 10_000, "the last link was kept");
      const expected = Math.min(300, Math.floor(forgetsAfterS / STEP_S) * STEP_S);
      assert.equal(policy.interval, expected, `a path that forgets after ${forgetsAfterS} s`);
      assert.ok(told.every((s) => s >= 10 && s <= 300), "the server is told only intervals in range");
      if (forgetsAfterS < 300) assert.equal(links, 2, "one loss, when the probe went too far");
    }
  } finally {
    mock.timers.reset();
  }
});

/** Whether the loop has ended, once the microtasks queued by the last tick have run. */
async function ended(run: Promise<void>): Promise<boolean> {
  let done = false;
  void run.then(() => (done = true));
  for (let i = 0; i < 10; i++) await Promise.resolve();
  return done;
}
