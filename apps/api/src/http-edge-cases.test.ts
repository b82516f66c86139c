import { connect } from "node:net";
import { brotliCompressSync, createGzip, deflateSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../test/helpers/stack.ts";

/** HTTP edge cases a client can hit by mistake (or on purpose): each answers the usual JSON error, never a 500. */
let s: Stack;
let token: string;
beforeAll(async () => {
  s = await startStack({ worker: false });
  token = (await s.org("edge")).token;
});
afterAll(() => s.close());

const errorShape = (body: any) => {
  expect(body).toEqual({ error: { code: expect.any(String), message: expect.any(String), details: expect.anything() } });
};
function expectError(r: { status: number; body: any }, status: number, code: string) {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.body?.error?.code).toBe(code);
  expect(typeof r.body.error.message).toBe("string");
  expect("details" in r.body.error).toBe(true);
}
const postEncoded = (body: Buffer | string, encoding: string, contentType = "application/json") =>
  call(s.url, "POST", "/workspaces", { token, raw: body, contentType, headers: { "content-encoding": encoding } });

/** One request over a raw socket (for framing fetch refuses to send); resolves with the status line and body. */
function rawRequest(head: string, body = ""): Promise<{ status: number; headers: string; body: string }> {
  const { port, hostname } = new URL(s.url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname);
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer within 5 s; got ${JSON.stringify(buf)}`));
    }, 5000);
    sock.setEncoding("utf8");
    sock.on("data", (d) => {
      buf += d;
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const headers = buf.slice(0, end);
      const len = /content-length: *(\d+)/i.exec(headers)?.[1];
      const rest = buf.slice(end + 4);
      if (len !== undefined && Buffer.byteLength(rest) >= Number(len)) {
        clearTimeout(timer);
        sock.destroy();
        resolve({ status: Number(headers.split(" ")[1]), headers, body: rest });
      }
    });
    sock.on("close", () => {
      clearTimeout(timer);
      const end = buf.indexOf("\r\n\r\n");
      resolve({ status: Number(buf.split(" ")[1]), headers: buf.slice(0, Math.max(end, 0)), body: end < 0 ? "" : buf.slice(end + 4) });
    });
    sock.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.write(head + body);
  });
}

describe("Content-Encoding", () => {
  it.each(["gzip", "deflate", "br", "GZIP"])("a body that is not really %s is a 400, not a 500", async (enc) => {
    const r = await postEncoded(JSON.stringify({ name: "plain" }), enc);
    expectError(r, 400, "bad_encoding");
    expect(r.body.error.message).toContain(enc.toLowerCase());
  });

  it("accepts valid gzip, deflate and br bodies", async () => {
    const body = (n: string) => Buffer.from(JSON.stringify({ name: n }));
    for (const [enc, data] of [
      ["gzip", gzipSync(body("gz"))],
      ["deflate", deflateSync(body("df"))],
      ["br", brotliCompressSync(body("br"))],
    ] as const) {
      const r = await postEncoded(data, enc);
      expect(r.status, `${enc}: ${JSON.stringify(r.body)}`).toBe(201);
      expect(r.body.name).toBe(enc === "gzip" ? "gz" : enc === "deflate" ? "df" : "br");
    }
  });

  it("an unknown or stacked encoding is a 415 that says what is accepted", async () => {
    for (const enc of ["compress", "zstd-ish", "gzip, gzip"]) {
      const r = await postEncoded(gzipSync(JSON.stringify({ name: "x" })), enc);
      expectError(r, 415, "unsupported_encoding");
      expect(r.headers.get("accept-encoding")).toBe("gzip, deflate, br");
    }
  });

  it("a zip bomb is a 413 (the limit counts decompressed bytes) and is never held in memory", async () => {
    // 32 MiB of zeros gzip to about 32 KiB: under the 64 KiB limit as sent, 512 times over it inflated.
    const bomb = async (mib: number) => {
      const gz = createGzip({ level: 9 });
      const out: Buffer[] = [];
      gz.on("data", (c: Buffer) => out.push(c));
      const zeros = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < mib; i++) gz.write(zeros);
      await new Promise<void>((resolve) => gz.end(resolve));
      return Buffer.concat(out);
    };
    const small = await bomb(32);
    expect(small.length).toBeLessThan(64 * 1024);
    const before = process.memoryUsage().rss;
    const r = await postEncoded(small, "gzip");
    expectError(r, 413, "payload_too_large");
    expect(process.memoryUsage().rss - before).toBeLessThan(24 * 1024 * 1024);
  });
});

describe("undecodable path parameters", () => {
  it("%ff and a lone % in an id are a 400 bad_id on every route with an id, with or without a token", async () => {
    const paths = (id: string) =>
      [
        ["GET", `/workspaces/${id}`],
        ["DELETE", `/workspaces/${id}`],
        ["GET", `/workspaces/${id}/events`],
        ["POST", `/workspaces/${id}/restart`],
        ["POST", `/workspaces/${id}/terminal/tickets`],
        ["GET", `/workspaces/${id}/terminal/sessions`],
        ["GET", `/workspaces/${id}/terminal`],
        // The router decodes the id before it looks at the method: still a bad id, not a 405.
        ["PUT", `/workspaces/${id}`],
      ] as const;
    for (const id of ["%ff", "%", "%e0%80", "abc%zz"]) {
      for (const [m, p] of paths(id)) {
        for (const t of [token, undefined]) {
          const r = await call(s.url, m, p, { token: t });
          expect(r.status, `${m} ${p} ${t ? "with" : "without"} token: ${JSON.stringify(r.body)}`).toBe(400);
          expect(r.body.error.code).toBe("bad_id");
          errorShape(r.body);
        }
      }
    }
  });
});

describe("workspace names", () => {
  const post = (name: string) => call(s.url, "POST", "/workspaces", { token, body: { name } });

  it.each([
    ["\u202eevil", "bidirectional", "U+202E"],
    ["a\u202ab", "bidirectional", "U+202A"],
    ["a\u2066b\u2069", "bidirectional", "U+2066"],
    ["a\u200fb", "bidirectional", "U+200F"],
    ["a\u061cb", "bidirectional", "U+061C"],
    ["zero\u200bwidth", "invisible", "U+200B"],
    ["bom\ufeff", "invisible", "U+FEFF"],
    ["soft\u00adhyphen", "invisible", "U+00AD"],
    ["line\u2028sep", "line", "U+2028"],
    ["nul\u0000", "control", "U+0000"],
    ["c1\u0085", "control", "U+0085"],
  ])("rejects %j naming the problem (%s, %s)", async (name, word, cp) => {
    const r = await post(name);
    expectError(r, 400, "validation_failed");
    const d = r.body.error.details.find((x: { field: string }) => x.field === "name");
    expect(d?.message).toContain(word);
    expect(d?.message).toContain(cp);
  });

  it("rejects a lone surrogate sent as a JSON escape", async () => {
    for (const esc of ["\\ud800", "x\\udfffy", "\\udc00\\ud800"]) {
      const r = await call(s.url, "POST", "/workspaces", { token, raw: `{"name":"${esc}"}`, contentType: "application/json" });
      expectError(r, 400, "validation_failed");
      expect(JSON.stringify(r.body.error.details)).toContain("surrogate");
    }
  });

  it("still accepts ordinary Unicode names, surrogate pairs and joiners included", async () => {
    for (const name of ["prod-agent", "café 東京", "مرحبا", "agent 🚀", "a b", "family \u{1F468}\u200d\u{1F469}\u200d\u{1F467}", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"]) {
      const r = await post(name);
      expect(r.status, `${name}: ${JSON.stringify(r.body)}`).toBe(201);
      expect(r.body.name).toBe(name);
    }
  });
});

describe("methods", () => {
  it.each([
    ["PUT", "/workspaces", "GET, HEAD, POST"],
    ["DELETE", "/workspaces", "GET, HEAD, POST"],
    ["PATCH", "/workspaces/00000000-0000-4000-8000-000000000000", "DELETE, GET, HEAD"],
    ["POST", "/workspaces/00000000-0000-4000-8000-000000000000", "DELETE, GET, HEAD"],
    ["GET", "/workspaces/00000000-0000-4000-8000-000000000000/restart", "POST"],
    ["DELETE", "/workspaces/00000000-0000-4000-8000-000000000000/events", "GET, HEAD"],
    ["GET", "/workspaces/00000000-0000-4000-8000-000000000000/terminal/tickets", "POST"],
    ["POST", "/workspaces/00000000-0000-4000-8000-000000000000/terminal/sessions", "GET, HEAD"],
    ["POST", "/workspaces/00000000-0000-4000-8000-000000000000/terminal", "GET, HEAD"],
    ["POST", "/healthz", "GET, HEAD"],
    ["DELETE", "/readyz", "GET, HEAD"],
    ["PUT", "/openapi.json", "GET, HEAD"],
    ["POST", "/metrics", "GET, HEAD"],
    ["PUT", "/workspaces/", "GET, HEAD, POST"],
  ])("%s %s is a 405 with Allow: %s", async (m, p, allow) => {
    const r = await call(s.url, m, p, { token });
    expectError(r, 405, "method_not_allowed");
    expect(r.headers.get("allow")).toBe(allow);
    expect(r.body.error.details).toEqual({ allow: allow.split(", ") });
  });

  it("HEAD is answered wherever GET is, OPTIONS lists the methods, and unknown paths stay 404", async () => {
    expect((await fetch(`${s.url}/healthz`, { method: "HEAD" })).status).toBe(200);
    const opt = await fetch(`${s.url}/workspaces`, { method: "OPTIONS" });
    expect(opt.status).toBe(200);
    expect(opt.headers.get("allow")).toBe("GET, HEAD, POST");
    for (const [m, p] of [
      ["GET", "/nope"],
      ["POST", "/nope"],
      ["PUT", "/workspaces/x/y/z"],
      ["DELETE", "/workspaces/00000000-0000-4000-8000-000000000000/nothing"],
    ] as const) {
      const r = await call(s.url, m, p, { token });
      expectError(r, 404, "not_found");
      expect(r.headers.get("allow")).toBeNull();
    }
  });

  it("a plain GET of the terminal WebSocket path (no Upgrade) is a 426, and a bad id there a 400", async () => {
    const r = await call(s.url, "GET", "/workspaces/00000000-0000-4000-8000-000000000000/terminal", { token });
    expectError(r, 426, "upgrade_required");
    expect(r.headers.get("upgrade")).toBe("websocket");
    expectError(await call(s.url, "GET", "/workspaces/nope/terminal", { token }), 400, "bad_id");
  });
});

describe("more bodies, headers and queries", () => {
  it("JSON that is not an object is a 400", async () => {
    for (const raw of ["[]", '["name"]', "null", "42", '"name"', "true"]) {
      const r = await call(s.url, "POST", "/workspaces", { token, raw, contentType: "application/json" });
      expect(r.status, raw).toBe(400);
      expect(["bad_json", "validation_failed"]).toContain(r.body.error.code);
    }
    const proto = await call(s.url, "POST", "/workspaces", { token, raw: '{"name":"p","__proto__":{"tier":9}}', contentType: "application/json" });
    expectError(proto, 400, "validation_failed");
  });

  it("a charset that is not UTF-8 is a 415 naming the charset", async () => {
    for (const cs of ["latin1", "utf-16", "shift_jis", "bogus"]) {
      const r = await call(s.url, "POST", "/workspaces", { token, raw: '{"name":"x"}', contentType: `application/json; charset=${cs}` });
      expectError(r, 415, "unsupported_charset");
      expect(r.body.error.message.toLowerCase()).toContain(cs);
    }
    const ok = await call(s.url, "POST", "/workspaces", { token, raw: '{"name":"u"}', contentType: "application/json; charset=UTF-8" });
    expect(ok.status).toBe(201);
  });

  it("a declared Content-Length over the limit is a 413 at once, before any body arrives", async () => {
    const r = await rawRequest(
      `POST /workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n`,
      '{"name":',
    );
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body).error.code).toBe("payload_too_large");
  });

  it("an unparsable request is a JSON 400, not a bare one", async () => {
    for (const head of [
      "POST /workspaces HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
      "POST /workspaces HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    ]) {
      const r = await rawRequest(head);
      expect(r.status, head).toBe(400);
      expect(JSON.parse(r.body).error.code).toBe("bad_request");
    }
  });

  it("headers over Node's limit are a JSON 431", async () => {
    const r = await rawRequest(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
    expect(r.status).toBe(431);
    expect(JSON.parse(r.body).error.code).toBe("headers_too_large");
  });

  it("repeated query keys are a 400, not a 500", async () => {
    for (const q of ["limit=1&limit=2", "status=ready&status=failed", "cursor=a&cursor=b", "limit[x]=1", "limit=%ff", "status=%"]) {
      const r = await call(s.url, "GET", `/workspaces?${q}`, { token });
      expectError(r, 400, "validation_failed");
    }
  });
});
