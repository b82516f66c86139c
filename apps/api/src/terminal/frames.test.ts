import { once } from "node:events";
import type { AddressInfo } from "node:net";
import WebSocket, { WebSocketServer } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FrameWriter, sendError } from "./frames.ts";

let wss: WebSocketServer;
let url: string;
beforeAll(async () => {
  wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await once(wss, "listening");
  url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const c of wss.clients) c.terminate();
  await new Promise((resolve) => wss.close(resolve));
});

/** A connected pair: the server's socket and what its client receives, as [isBinary, text] in order. */
async function pair(): Promise<{ server: WebSocket; client: WebSocket; received: [boolean, string][]; until(n: number): Promise<void> }> {
  const serverSide = once(wss, "connection") as Promise<[WebSocket]>;
  const client = new WebSocket(url);
  const received: [boolean, string][] = [];
  const waiters: (() => void)[] = [];
  client.on("message", (data, isBinary) => {
    received.push([isBinary, (data as Buffer).toString("utf8")]);
    for (const w of waiters.splice(0)) w();
  });
  await once(client, "open");
  const [server] = await serverSide;
  const until = async (n: number) => {
    const deadline = Date.now() + 5000;
    while (received.length < n) {
      if (Date.now() > deadline) throw new Error(`only ${received.length} of ${n} frames`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 100).unref();
      });
    }
  };
  return { server, client, received, until };
}

describe("frames", () => {
  it("v1: errors and messages are JSON text, output is binary", async () => {
    const p = await pair();
    const w = new FrameWriter(p.server, "v1");
    w.message({ type: "pong" });
    w.output(Buffer.from("hi\r\n"));
    w.error("bad_message", "text frames must be one JSON object");
    sendError(p.server, "v1", "policy", "frame larger than 10 bytes");
    await p.until(4);
    expect(p.received).toEqual([
      [false, '{"type":"pong"}'],
      [true, "hi\r\n"],
      [false, '{"type":"error","code":"bad_message","message":"text frames must be one JSON object"}'],
      [false, '{"type":"error","code":"policy","message":"frame larger than 10 bytes"}'],
    ]);
  });

  it("raw: an error is one line the terminal prints, no messages, no bad_message; output is binary", async () => {
    const p = await pair();
    const w = new FrameWriter(p.server, "raw");
    w.message({ type: "pong" });
    w.error("bad_message", "ignored");
    let sent = false;
    w.output(Buffer.from("$ "), () => {
      sent = true;
    });
    w.error("restarting", "this API node is restarting");
    await p.until(2);
    expect(p.received).toEqual([
      [true, "$ "],
      [false, "Error: this API node is restarting\r\n"],
    ]);
    expect(sent).toBe(true);
  });

  it("nothing is sent on a socket that is no longer open", async () => {
    const p = await pair();
    const closed = once(p.client, "close");
    p.server.close();
    sendError(p.server, "v1", "policy", "late");
    new FrameWriter(p.server, "v1").message({ type: "pong" });
    await closed;
    expect(p.received).toEqual([]);
  });
});
