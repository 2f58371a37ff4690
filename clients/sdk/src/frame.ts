// The long-link frame (docs/protocol.md §2): a 16-byte big-endian header, then the body.

/** Bytes of a frame header. */
export const HEADER_BYTES = 16;
/** `"MV"`. */
export const MAGIC = 0x4d56;
export const FRAME_VERSION = 1;
/** The largest body this client accepts from a server (the reference client's figure). */
export const SERVER_BODY_BYTES_MAX = 16 * 1024 * 1024;

export enum FrameKind {
  Request = 0,
  Response = 1,
  Push = 2,
}

export interface Frame {
  kind: FrameKind;
  command: number;
  /** 0 in requests and pushes; in responses 0 or an error code (docs/protocol.md §9). */
  status: number;
  seq: number;
  body: Uint8Array;
}

/** Bytes that are not one well-formed frame. */
export class FrameError extends Error {
  override name = "FrameError";
}

export function encodeFrame(frame: Frame): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(HEADER_BYTES + frame.body.length);
  const header = new DataView(out.buffer, 0, HEADER_BYTES);
  header.setUint16(0, MAGIC);
  header.setUint8(2, FRAME_VERSION);
  header.setUint8(3, frame.kind);
  header.setUint16(4, frame.command);
  header.setUint16(6, frame.status);
  header.setUint32(8, frame.seq);
  header.setUint32(12, frame.body.length);
  out.set(frame.body, HEADER_BYTES);
  return out;
}

/** Decodes exactly one frame: a WebSocket message carries one, nothing before or after it. */
export function decodeFrame(bytes: Uint8Array, bodyMax = SERVER_BODY_BYTES_MAX): Frame {
  if (bytes.length < HEADER_BYTES) {
    throw new FrameError(`frame of ${bytes.length} bytes is shorter than its header`);
  }
  const header = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  if (header.getUint16(0) !== MAGIC) throw new FrameError("bad magic");
  if (header.getUint8(2) !== FRAME_VERSION) {
    throw new FrameError(`unknown frame version ${header.getUint8(2)}`);
  }
  const kind = header.getUint8(3);
  if (kind > FrameKind.Push) throw new FrameError(`unknown frame kind ${kind}`);
  const bodyLen = header.getUint32(12);
  if (bodyLen > bodyMax) throw new FrameError(`frame body of ${bodyLen} bytes is too large`);
  if (bodyLen !== bytes.length - HEADER_BYTES) {
    throw new FrameError(
      `frame announces ${bodyLen} body bytes but carries ${bytes.length - HEADER_BYTES}`,
    );
  }
  return {
    kind,
    command: header.getUint16(4),
    status: header.getUint16(6),
    seq: header.getUint32(8),
    body: bytes.subarray(HEADER_BYTES),
  };
}
