import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { waitFor } from "../../../../test/helpers/http.ts";
import { SessionClient, SUBPROTOCOL_V1 } from "./session-client.ts";

/**
 * A server of the time before counted input (protocol v1 without `input_from`): it ignores the
 * query parameter, says hello without it, echoes input as output and never sends `input_ack`.
 * The CLI installed from a newer tarball must still work against it.
 */
async function olderServer() {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: (p) => (p.has(SUBPROTOCOL_V1) ? SUBPROTOCOL_V1 : false) });
  await new Promise((r) => wss.once("listening", r));
  const urls: string[] = [];
  wss.on("connection", (ws, req) => {
    urls.push(req.url ?? "");
    ws.send(JSON.stringify({ type: "hello", session: "00000000-0000-4000-8000-000000000001", offset: 0, cols: 80, rows: 24 }));
    ws.on("message", (data, binary) => {
      if (binary) ws.send(data, { binary: true });
    });
  });
  return { api: `http://127.0.0.1:${(wss.address() as AddressInfo).port}`, urls, close: () => new Promise((r) => wss.close(r)) };
}

let server: Awaited<ReturnType<typeof olderServer>> | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

describe("SessionClient against a server that does not count input", () => {
  it("an upload larger than the unacknowledged maximum goes through uncounted (it would wait for ever for an ack)", async () => {
    server = await olderServer();
    const received: Buffer[] = [];
    const client = new SessionClient({
      api: server.api,
      token: "mol_test",
      workspaceId: "00000000-0000-4000-8000-00000000000a",
      userAgent: "test",
      cols: 80,
      rows: 24,
      countInput: true,
      onOutput: (d, done) => {
        received.push(d);
        done();
      },
      onNotice: () => {},
      onReconnect: () => {},
    });
    // Typed before the session is open: kept, sent once it is.
    client.input(Buffer.from("early:"));
    await client.start();
    expect(server.urls[0]).toContain("input_from=0");
    const data = randomBytes(12 * 1024 * 1024);
    for (let at = 0; at < data.length; at += 64 * 1024) {
      if (!client.input(data.subarray(at, at + 64 * 1024))) await client.writable();
    }
    const want = 6 + data.length;
    await waitFor(async () => received.reduce((n, b) => n + b.length, 0) >= want, 30_000, 5);
    const got = Buffer.concat(received);
    expect(got.length).toBe(want);
    expect(got.subarray(0, 6).toString()).toBe("early:");
    expect(got.subarray(6).equals(data)).toBe(true);
    client.close();
    expect(await client.ended).toEqual({ kind: "closed" });
  });
});
