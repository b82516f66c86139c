import { describe, expect, it } from "vitest";
import { decodeIn } from "@molecule/shared";
import { RESEND_MS, SentInput } from "./sent-input.ts";

const seqOf = (b: Buffer) => decodeIn(b)?.seq;

describe("SentInput (what a resync sends again)", () => {
  it("numbers a connection's messages from 1 under one stream id", () => {
    const s = new SentInput(() => 0);
    const a = decodeIn(s.next({ data: Buffer.from("a") }));
    const b = decodeIn(s.next({ data: Buffer.from("b") }));
    expect([a?.seq, b?.seq]).toEqual([1, 2]);
    expect(a?.stream).toBe(s.stream);
    expect(new SentInput().stream).not.toBe(s.stream);
  });

  it("gives back what came after the worker's last, from the first one kept", () => {
    const s = new SentInput(() => 0);
    for (const c of "abcde") s.next({ data: Buffer.from(c) });
    const r = s.since(2);
    expect(r.from).toBe(3);
    expect(r.payloads.map(seqOf)).toEqual([3, 4, 5]);
    // Nothing after it: the next one to come is said, nothing sent.
    expect(s.since(5)).toEqual({ from: 6, payloads: [] });
  });

  it("keeps a few seconds of it: older messages are dropped, not run late, and `from` says where what is kept starts", () => {
    let now = 0;
    const s = new SentInput(() => now);
    s.next({ data: Buffer.from("old") });
    now = RESEND_MS - 100;
    s.next({ data: Buffer.from("young") });
    now = RESEND_MS + 1;
    expect(s.since(0)).toMatchObject({ from: 2 });
    expect(s.since(0).payloads.map((p) => decodeIn(p))).toMatchObject([{ data: Buffer.from("young") }]);
    now = 2 * RESEND_MS;
    expect(s.since(0)).toEqual({ from: 3, payloads: [] });
  });

  it("keeps at most 256 KiB of it", () => {
    const s = new SentInput(() => 0);
    for (let i = 0; i < 8; i++) s.next({ data: Buffer.alloc(64 * 1024) });
    const r = s.since(0);
    expect(r.payloads.length).toBe(3);
    expect(r.from).toBe(6);
  });
});
