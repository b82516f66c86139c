import { controlMessage, workerEvent, type ControlMessage, type WorkerEvent } from "./bus-messages.ts";

/**
 * The wire format of messages between the terminal-worker and API nodes over
 * Redis. Output chunks and input bytes are raw binary with a one-byte tag (the
 * hot path); events and control messages are small JSON documents.
 */

const TAG_DATA = 0x64; // 'd': output chunk, uint64 BE start offset, bytes
const TAG_EVENT = 0x65; // 'e': worker event (JSON)
const TAG_INPUT = 0x69; // 'i': input bytes
const TAG_CONTROL = 0x63; // 'c': control (JSON)
const TAG_SEQUENCED = 0x73; // 's': uint32 BE stream, uint32 BE sequence number, then an input or control message
export const DATA_HEADER = 9;
const SEQ_HEADER = 9;

/** `chunk` may be the PTY reads of one batch: they are copied once, straight behind the header. */
export function encodeData(offset: number, chunk: Buffer | readonly Buffer[]): Buffer {
  const parts = Buffer.isBuffer(chunk) ? [chunk] : chunk;
  let length = 0;
  for (const p of parts) length += p.length;
  const buf = Buffer.allocUnsafe(DATA_HEADER + length);
  buf[0] = TAG_DATA;
  buf.writeBigUInt64BE(BigInt(offset), 1);
  let at = DATA_HEADER;
  for (const p of parts) at += p.copy(buf, at);
  return buf;
}

export type OutMessage = { kind: "data"; offset: number; chunk: Buffer } | { kind: "event"; event: WorkerEvent };
/** `stream`/`seq`: sent by a client connection's bridge, numbered so a worker can tell what it missed (resync). */
export type InMessage = ({ kind: "input"; data: Buffer } | { kind: "control"; control: ControlMessage }) & { stream?: number; seq?: number };

export function encodeEvent(e: WorkerEvent): Buffer {
  return Buffer.concat([Buffer.of(TAG_EVENT), Buffer.from(JSON.stringify(e))]);
}
export function encodeInput(data: Buffer): Buffer {
  const buf = Buffer.allocUnsafe(1 + data.length);
  buf[0] = TAG_INPUT;
  data.copy(buf, 1);
  return buf;
}
export function encodeControl(c: ControlMessage): Buffer {
  return Buffer.concat([Buffer.of(TAG_CONTROL), Buffer.from(JSON.stringify(c))]);
}

/**
 * Input (`data`, copied once) or an encoded control message (`control`, from encodeControl) as
 * message `seq` of `stream`: one client connection's messages, numbered from 1.
 */
export function encodeSequenced(stream: number, seq: number, m: { data: Buffer } | { control: Buffer }): Buffer {
  const body = "data" in m ? m.data : m.control;
  const inner = "data" in m ? 1 : 0; // input gets its tag here; a control message has its own
  const buf = Buffer.allocUnsafe(SEQ_HEADER + inner + body.length);
  buf[0] = TAG_SEQUENCED;
  buf.writeUInt32BE(stream, 1);
  buf.writeUInt32BE(seq, 5);
  if (inner) buf[SEQ_HEADER] = TAG_INPUT;
  body.copy(buf, SEQ_HEADER + inner);
  return buf;
}

/** Returns null for anything malformed: a bad message is dropped, never thrown into a session. */
export function decodeOut(buf: Buffer): OutMessage | null {
  if (buf.length >= DATA_HEADER && buf[0] === TAG_DATA) {
    return { kind: "data", offset: Number(buf.readBigUInt64BE(1)), chunk: buf.subarray(DATA_HEADER) };
  }
  if (buf.length > 1 && buf[0] === TAG_EVENT) {
    const r = workerEvent.safeParse(safeJson(buf.subarray(1)));
    return r.success ? { kind: "event", event: r.data } : null;
  }
  return null;
}

export function decodeIn(buf: Buffer): InMessage | null {
  if (buf.length > SEQ_HEADER && buf[0] === TAG_SEQUENCED) {
    const seq = buf.readUInt32BE(5);
    if (seq === 0) return null;
    const stream = buf.readUInt32BE(1);
    // The hot path (a keystroke): one object, no copy.
    if (buf[SEQ_HEADER] === TAG_INPUT) return { kind: "input", data: buf.subarray(SEQ_HEADER + 1), stream, seq };
    // One level: a sequenced message does not hold another.
    const m = buf[SEQ_HEADER] === TAG_CONTROL ? decodeIn(buf.subarray(SEQ_HEADER)) : null;
    return m?.kind === "control" ? { kind: "control", control: m.control, stream, seq } : null;
  }
  if (buf.length >= 1 && buf[0] === TAG_INPUT) return { kind: "input", data: buf.subarray(1) };
  if (buf.length > 1 && buf[0] === TAG_CONTROL) {
    const r = controlMessage.safeParse(safeJson(buf.subarray(1)));
    return r.success ? { kind: "control", control: r.data } : null;
  }
  return null;
}

function safeJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString("utf8"));
  } catch {
    return undefined;
  }
}
