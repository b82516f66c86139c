// Fake aws-cli v2 (`aws` on PATH in tests). It behaves like the real
// `aws ec2-instance-connect open-tunnel --instance-id <id>` in stdio mode: it asks
// EC2 (AWS_ENDPOINT_URL_EC2, the local fake) for the instance and an EIC Endpoint in
// its VPC, opens the tunnel at the endpoint's DNS name, then pipes stdin/stdout
// through it. Failures print what aws-cli prints and exit with its codes.
import { createHash, createHmac } from "node:crypto";
import { request } from "node:http";
import { SignatureV4 } from "@smithy/signature-v4";
import WebSocket from "ws";

const argv = process.argv.slice(2);
const out = (s) => process.stderr.write(s);

if (argv[0] === "--version") {
  process.stdout.write("aws-cli/2.27.4 Python/3.13.2 Linux/6.1.0 exe/x86_64.debian.12\n");
  process.exit(0);
}
const opt = (name) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
if (argv[0] !== "ec2-instance-connect" || argv[1] !== "open-tunnel") {
  out(`\nusage: aws [options] <command> <subcommand> [<subcommand> ...] [parameters]\naws: error: fake aws-cli supports only ec2-instance-connect open-tunnel\n`);
  process.exit(252);
}
const instanceId = opt("instance-id");
const region = opt("region") ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
const maxTunnel = opt("max-tunnel-duration") ?? "3600";
if (!instanceId) {
  out("\nSpecify an instance id or private ip.\n");
  process.exit(252);
}
const endpoint = process.env.AWS_ENDPOINT_URL_EC2;
if (!endpoint) {
  out(`\nCould not connect to the endpoint URL: "https://ec2.${region}.amazonaws.com/"\n`);
  process.exit(255);
}
const keyId = process.env.AWS_ACCESS_KEY_ID;
if (!keyId || !process.env.AWS_SECRET_ACCESS_KEY) {
  out('\nUnable to locate credentials. You can configure credentials by running "aws configure".\n');
  process.exit(253);
}
const auth = `AWS4-HMAC-SHA256 Credential=${keyId}/20260101/${region}/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=0`;

function ec2(params) {
  const body = new URLSearchParams({ Version: "2016-11-15", ...params }).toString();
  const u = new URL(endpoint);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, method: "POST", path: "/", headers: { "content-type": "application/x-www-form-urlencoded", authorization: auth } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (text += c));
        res.on("end", () => {
          const code = /<Code>([^<]+)<\/Code>/.exec(text);
          if (code) {
            const msg = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? "";
            out(`\nAn error occurred (${code[1]}) when calling the ${params.Action} operation: ${msg}\n`);
            process.exit(254);
          }
          resolve(text);
        });
      },
    );
    req.on("error", (err) => {
      out(`\nCould not connect to the endpoint URL: "${endpoint}" (${err.message})\n`);
      process.exit(255);
      reject(err);
    });
    req.end(body);
  });
}

class Sha256 {
  constructor(secret) {
    this.h = secret === undefined ? createHash("sha256") : createHmac("sha256", Buffer.from(secret));
  }
  update(d) {
    this.h.update(typeof d === "string" ? Buffer.from(d) : Buffer.from(d.buffer, d.byteOffset, d.byteLength));
  }
  async digest() {
    return new Uint8Array(this.h.digest());
  }
}

const tag = (xml, name) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];

const inst = await ec2({ Action: "DescribeInstances", "InstanceId.1": instanceId });
const vpcId = tag(inst, "vpcId");
const subnetId = tag(inst, "subnetId");
const privateIp = tag(inst, "privateIpAddress");
const eices = await ec2({
  Action: "DescribeInstanceConnectEndpoints",
  "Filter.1.Name": "state",
  "Filter.1.Value.1": "create-complete",
  "Filter.1.Value.2": "update-in-progress",
  "Filter.1.Value.3": "update-failed",
  "Filter.1.Value.4": "update-complete",
  "Filter.2.Name": "vpc-id",
  "Filter.2.Value.1": vpcId ?? "",
});
const items = [...eices.matchAll(/<item>([\s\S]*?)<\/item>/g)].map((m) => ({ id: tag(m[1], "instanceConnectEndpointId"), dns: tag(m[1], "dnsName"), subnet: tag(m[1], "subnetId") }));
const eice = items.find((e) => e.subnet === subnetId) ?? items[0];
if (!eice) {
  out("\nThere are no available instance connect endpoints.\n");
  process.exit(252);
}
// As aws-cli's eicesigner.py: SigV4 query presigning for ec2-instance-connect, 60 s, host only.
const signer = new SignatureV4({
  service: "ec2-instance-connect",
  region,
  credentials: { accessKeyId: keyId, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY, sessionToken: process.env.AWS_SESSION_TOKEN },
  sha256: Sha256,
});
const [hostname, port] = eice.dns.split(":");
const signed = await signer.presign(
  {
    method: "GET",
    protocol: "https:",
    hostname,
    path: "/openTunnel",
    query: { instanceConnectEndpointId: eice.id, remotePort: "22", privateIpAddress: privateIp ?? "", maxTunnelDuration: maxTunnel },
    headers: { host: eice.dns },
  },
  { expiresIn: 60 },
);
const qs = new URLSearchParams(signed.query).toString();
// The fake endpoint speaks plain ws:// on loopback; real endpoints are wss://.
const ws = new WebSocket(`${port ? "ws" : "wss"}://${eice.dns}/openTunnel?${qs}`, { perMessageDeflate: false });
ws.on("unexpected-response", (_req, res) => {
  let text = "";
  res.setEncoding("utf8");
  res.on("data", (c) => (text += c));
  res.on("end", () => {
    out(`${text}\n\nAWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE: Failed to upgrade HTTP connection to Websocket. (status ${res.statusCode}, request id ${res.headers["x-amzn-requestid"] ?? "-"})\n`);
    process.exit(255);
  });
});
ws.on("error", (err) => {
  out(`\nAWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE: ${err.message}\n`);
  process.exit(255);
});
ws.on("open", () => {
  process.stdin.on("data", (b) => {
    for (let at = 0; at < b.length; at += 65_000) ws.send(b.subarray(at, at + 65_000), { binary: true });
  });
  process.stdin.on("end", () => ws.close(1000));
  ws.on("message", (data, isBinary) => {
    if (!isBinary) {
      out(`\nWebsocket error: ${data.toString()}\n`);
      process.exit(255);
    }
    process.stdout.write(data);
  });
  ws.on("close", (code, reason) => {
    if (code !== 1000) {
      out(`\nWebsocket closed with code ${code}: ${reason.toString()}\n`);
      process.exit(255);
    }
    process.exit(0);
  });
});
