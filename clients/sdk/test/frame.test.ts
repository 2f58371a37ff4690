// The frame codec against docs/protocol.md §2.7's worked examples.

import assert from "node:assert/strict";
import { test } from "node:test";
import { FrameError, FrameKind, decodeFrame, encodeFrame } from "../src/frame.js";
import { Code, MissiveError, codeNamed, codeOf } from "../src/errors.js";

const hex = (text: string) => Uint8Array.from(text.split(/\s+/).filter(Boolean), (b) => parseInt(b, 16));

test("a PING request is the documented 16 bytes", () => {
  const bytes = encodeFrame({ kind: FrameKind.Request, command: 2, status: 0, seq: 1, body: new Uint8Array() });
  assert.deepEqual(bytes, hex("4D 56 01 00 00 02 00 00 00 00 00 01 00 00 00 00"));
});

test("the documented PING answer decodes", () => {
  const frame = decodeFrame(hex("4D 56 01 01 00 02 00 00 00 00 00 01 00 00 00 07 08 80 D0 95 FF BC 31"));
  assert.equal(frame.kind, FrameKind.Response);
  assert.equal(frame.command, 2);
  assert.equal(frame.seq, 1);
  assert.deepEqual(frame.body, hex("08 80 D0 95 FF BC 31"));
});

test("malformed frames are refused", () => {
  const good = hex("4D 56 01 02 00 64 00 00 00 00 00 00 00 00 00 04 08 03 10 2A");
  assert.equal(decodeFrame(good).command, 100);
  const broken = [
    good.subarray(0, 10), // shorter than a header
    Uint8Array.of(0x4e, ...good.subarray(1)), // bad magic
    Uint8Array.of(...good.subarray(0, 2), 2, ...good.subarray(3)), // frame version 2
    Uint8Array.of(...good.subarray(0, 3), 3, ...good.subarray(4)), // kind 3
    good.subarray(0, good.length - 1), // a body byte missing
    Uint8Array.of(...good, 0), // a byte after the frame
  ];
  for (const bytes of broken) assert.throws(() => decodeFrame(bytes), FrameError);
  assert.throws(() => decodeFrame(good, 3), /too large/);
});

test("codes map both ways, unknown ones to internal", () => {
  assert.equal(codeOf(24), Code.RateLimited);
  assert.equal(codeOf(999), Code.Internal);
  assert.equal(codeNamed("not_friends"), Code.NotFriends);
  assert.equal(codeNamed("no_such_code"), Code.Internal);
  assert.equal(new MissiveError(Code.Overloaded, "busy").transient, true);
  assert.equal(new MissiveError(Code.NotFound, "who").transient, false);
});
