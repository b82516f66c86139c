import { describe, expect, it } from "vitest";
import { InputCounter } from "./input-counter.ts";

const b = (s: string) => new TextEncoder().encode(s);
const text = (parts: Uint8Array[]) => parts.map((p) => new TextDecoder().decode(p)).join("");

describe("InputCounter (a client's counted input)", () => {
  it("keeps what is not acknowledged, across chunk edges, and sends all of it again to a counting server", () => {
    const c = new InputCounter();
    c.add(b("abc"), true);
    c.add(b("defg"), true);
    c.ack(5);
    expect(c.acked).toBe(5);
    expect(c.keptBytes).toBe(2);
    // A late or repeated ack changes nothing.
    c.ack(4);
    expect(c.keptBytes).toBe(2);
    // Dropped; typed while away; back.
    c.add(b("hi"), false);
    expect(c.unsentBytes).toBe(2);
    expect(text(c.hello(5))).toBe("fghi");
    expect(c.unsentBytes).toBe(0);
    expect(c.active).toBe(true);
    c.ack(9);
    expect(c.keptBytes).toBe(0);
  });

  it("the data given is copied: a caller's buffer reused afterwards does not change what is sent again", () => {
    const c = new InputCounter();
    const buf = b("xy");
    c.add(buf, true);
    buf[0] = 0x7a;
    expect(text(c.hello(0))).toBe("xy");
  });

  it("a server that does not count (hello without input_from): only what never went out is sent, and counting stops", () => {
    const c = new InputCounter();
    c.add(b("sent-on-the-old-connection"), true);
    c.add(b("ty"), false);
    c.add(b("ped"), false);
    expect(text(c.hello(undefined))).toBe("typed");
    expect(c.active).toBe(false);
    expect(c.keptBytes).toBe(0);
    expect(c.hello(undefined)).toEqual([]);
  });
});
