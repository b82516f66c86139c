// The EC2 Instance Connect Endpoint tunnel on the wire: a WebSocket to a presigned
// openTunnel URL carrying raw TCP bytes in binary frames both ways (as aws-cli v2
// does: at most 65,000 bytes a frame). A text frame from the server is an error, a
// close code other than 1000 carries a UTF-8 reason, a refused handshake says why in
// its body and x-amzn-requestid. Plain JavaScript: the ssh ProxyCommand (eic-proxy.mjs)
// runs it with plain node, without a TypeScript loader's start-up cost at every open.
import WebSocket from "ws";

/** aws-cli's largest frame. */
export const MAX_FRAME = 65_000;
/** What eic-proxy.mjs prints before each failure: `molecule-eic[<kind>]: <message>` (ssh-command.ts reads it). */
export const TAG = "molecule-eic";
const HIGH_WATER = 1 << 20;
const EARLY = Symbol("early");

export class TunnelError extends Error {
  /**
   * @param {string} kind denied | credentials | unknown_endpoint | limit | unavailable | handshake | unreachable | error_frame | closed | max_duration
   * @param {string} message
   * @param {{ status?: number, code?: string, requestId?: string }} [info]
   */
  constructor(kind, message, info = {}) {
    super(message);
    this.name = "TunnelError";
    this.kind = kind;
    this.status = info.status;
    this.code = info.code;
    this.requestId = info.requestId;
  }
}

/** Classifies a refused handshake (status, AWS error code, message) as aws-cli users see it. */
export function handshakeError(status, body, requestId) {
  let code = "";
  let msg = body.trim();
  try {
    const j = JSON.parse(body);
    code = String(j.ErrorCode ?? j.__type ?? j.code ?? "");
    msg = String(j.Message ?? j.message ?? msg);
  } catch {
    // Not JSON (a proxy's page, say): the raw text is the reason.
  }
  const rid = requestId ? `, request id ${requestId}` : "";
  const what = `${status}${code ? ` ${code}` : ""}${rid}`;
  const info = { status, code, requestId };
  if (status === 429 || /limit|too many/i.test(code) || /maximum number of concurrent/i.test(msg)) {
    return new TunnelError("limit", `OpenTunnel refused: the endpoint's concurrent connection limit is reached (${what}): ${msg}`, info);
  }
  if (/AccessDenied|not authorized/i.test(`${code} ${msg}`)) return new TunnelError("denied", `OpenTunnel refused (${what}): ${msg}`, info);
  if (/Signature|Expired|Token|UnrecognizedClient|InvalidClientTokenId|AuthFailure|MissingAuthentication|Credential/i.test(`${code} ${msg}`)) {
    return new TunnelError("credentials", `OpenTunnel rejected the request's signature or credentials (${what}): ${msg}`, info);
  }
  if (/instance connect endpoint does not exist|ResourceNotFound|InvalidInstanceConnectEndpointId/i.test(`${code} ${msg}`)) {
    return new TunnelError("unknown_endpoint", `OpenTunnel: no such EC2 Instance Connect Endpoint (${what}): ${msg}`, info);
  }
  // AWS-side trouble: worth a retry, not a setup problem.
  if (status >= 500) return new TunnelError("unavailable", `OpenTunnel: the EC2 Instance Connect Endpoint is unavailable (${what})${msg ? `: ${msg.slice(0, 300)}` : ""}; try again in a moment`, info);
  return new TunnelError("handshake", `OpenTunnel handshake failed (${what})${msg ? `: ${msg.slice(0, 300)}` : ""}`, info);
}

/**
 * Opens the tunnel. Resolves with the open WebSocket; rejects with a TunnelError.
 * @param {string} url presigned wss:// (ws:// for local fakes) openTunnel URL
 * @param {{ timeoutMs?: number }} [o]
 * @returns {Promise<WebSocket>}
 */
export function openTunnel(url, o = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { handshakeTimeout: o.timeoutMs ?? 15_000, perMessageDeflate: false, maxPayload: 16 << 20 });
    let settled = false;
    const fail = (err) => {
      if (settled) return;
      settled = true;
      ws.terminate();
      reject(err);
    };
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => {
        if (body.length < 8192) body += c;
      });
      res.on("end", () => fail(handshakeError(res.statusCode ?? 0, body, String(res.headers["x-amzn-requestid"] ?? ""))));
      res.on("error", () => fail(handshakeError(res.statusCode ?? 0, body, String(res.headers["x-amzn-requestid"] ?? ""))));
    });
    ws.on("error", (err) => fail(new TunnelError("handshake", `could not reach the EC2 Instance Connect Endpoint: ${err.message}`)));
    ws.on("open", () => {
      settled = true;
      ws.removeAllListeners("error");
      // The instance's first bytes (sshd's banner) may come in the same read as the 101, and
      // the endpoint may close at once: both are kept until pipeTunnel listens.
      const early = { messages: [], close: null };
      const onMessage = (data, isBinary) => early.messages.push([data, isBinary]);
      const onClose = (code, reason) => (early.close = [code, reason]);
      ws.on("message", onMessage);
      ws.on("close", onClose);
      // An error now is followed by the close recorded above; unhandled it would throw.
      ws.on("error", () => {});
      ws[EARLY] = { early, onMessage, onClose };
      resolve(ws);
    });
  });
}

/**
 * Pipes `input` into the tunnel and the tunnel into `output` with backpressure both
 * ways. Resolves when the tunnel closed normally; rejects with a TunnelError that
 * says why it ended otherwise (reason of a close code other than 1000, a text frame,
 * the endpoint closing before the instance's port 22 said anything, the duration limit).
 * @param {WebSocket} ws
 * @param {NodeJS.ReadableStream} input
 * @param {NodeJS.WritableStream} output
 * @param {{ maxTunnelSec?: number, openedAt?: number (performance.now() when the tunnel opened), target?: string }} [o]
 * @returns {Promise<{ bytesIn: number, bytesOut: number }>}
 */
export function pipeTunnel(ws, input, output, o = {}) {
  const openedAt = o.openedAt ?? performance.now();
  let bytesIn = 0;
  let bytesOut = 0;
  let errorText = null;
  return new Promise((resolve, reject) => {
    const onData = (chunk) => {
      const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      for (let at = 0; at < buf.length; at += MAX_FRAME) {
        const part = buf.subarray(at, at + MAX_FRAME);
        bytesOut += part.length;
        ws.send(part, { binary: true }, () => {
          if (ws.bufferedAmount < HIGH_WATER) input.resume();
        });
      }
      if (ws.bufferedAmount >= HIGH_WATER) input.pause();
    };
    input.on("data", onData);
    // ssh closed its side: end the tunnel cleanly.
    input.on("end", () => ws.close(1000));
    const onMessage = (data, isBinary) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (!isBinary) {
        errorText = buf.toString("utf8").slice(0, 500);
        ws.close(1000);
        return;
      }
      bytesIn += buf.length;
      if (!output.write(buf)) {
        ws.pause();
        output.once("drain", () => ws.resume());
      }
    };
    ws.on("error", () => {
      // The close event follows with code 1006 and says the rest.
    });
    const onClose = (code, reasonBuf) => {
      input.off("data", onData);
      const reason = reasonBuf.toString("utf8");
      const ranSec = (performance.now() - openedAt) / 1000;
      const target = o.target ? ` ${o.target}` : "";
      if (errorText !== null) return reject(new TunnelError("error_frame", `the EC2 Instance Connect Endpoint reported an error: ${errorText}`));
      // Ended at (about) maxTunnelDuration: the endpoint's limit, not a fault.
      if (o.maxTunnelSec && ranSec >= o.maxTunnelSec - Math.min(1, o.maxTunnelSec / 10)) {
        return reject(
          new TunnelError("max_duration", `the tunnel reached its maximum duration of ${o.maxTunnelSec} s (AWS allows one EC2 Instance Connect tunnel at most 1 hour) and was closed; open the Terminal again`),
        );
      }
      if (bytesIn === 0) {
        return reject(
          new TunnelError("unreachable", `the endpoint closed the tunnel before port 22 of the instance${target} answered (close ${code}${reason ? `: ${reason}` : ""})`),
        );
      }
      if (code !== 1000 && code !== 1005) return reject(new TunnelError("closed", `the EC2 Instance Connect Endpoint closed the tunnel (${code}${reason ? `: ${reason}` : ""})`));
      resolve({ bytesIn, bytesOut });
    };
    // Take over from openTunnel's early listeners: what came before is replayed in order.
    const pre = ws[EARLY];
    if (pre) {
      ws.off("message", pre.onMessage);
      ws.off("close", pre.onClose);
      delete ws[EARLY];
      for (const [data, isBinary] of pre.early.messages) onMessage(data, isBinary);
    }
    if (pre?.early.close) onClose(...pre.early.close);
    else {
      ws.on("message", onMessage);
      ws.on("close", onClose);
    }
  });
}
