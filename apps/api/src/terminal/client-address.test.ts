import { describe, expect, it } from "vitest";
import { clientAddress } from "./client-address.ts";

const req = (remoteAddress: string | undefined, xff?: string) => ({ socket: { remoteAddress }, headers: xff === undefined ? {} : { "x-forwarded-for": xff } });

describe("the audit row's client address", () => {
  it("is the right-most X-Forwarded-For hop when the peer is our own proxy (loopback or private)", () => {
    expect(clientAddress(req("127.0.0.1", "203.0.113.9, 198.51.100.7"))).toBe("198.51.100.7");
    expect(clientAddress(req("::ffff:10.1.2.3", " 198.51.100.7 "))).toBe("198.51.100.7");
    expect(clientAddress(req("fd12:3456::1", "198.51.100.7"))).toBe("198.51.100.7");
  });

  it("is the peer itself when the peer could forge the header, or sent none", () => {
    expect(clientAddress(req("198.51.100.20", "127.0.0.1"))).toBe("198.51.100.20");
    expect(clientAddress(req("172.32.0.1", "203.0.113.9"))).toBe("172.32.0.1");
    expect(clientAddress(req("127.0.0.1"))).toBe("127.0.0.1");
    expect(clientAddress(req("127.0.0.1", " , "))).toBe("127.0.0.1");
    expect(clientAddress(req(undefined, "203.0.113.9"))).toBeNull();
  });

  it("keeps at most 64 characters of a hop", () => {
    expect(clientAddress(req("127.0.0.1", "x".repeat(300)))).toHaveLength(64);
  });
});
