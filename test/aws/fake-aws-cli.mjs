// Fake aws-cli v2 (`aws` on PATH in tests). It behaves like the real
// `aws ec2-instance-connect open-tunnel --instance-id <id>` in stdio mode: it asks
// EC2 (AWS_ENDPOINT_URL_EC2, the local fake) for the instance and an EIC Endpoint in
// its VPC, opens the tunnel at the endpoint's DNS name, then pipes stdin/stdout
// through it. Failures print what aws-cli prints and exit with its codes.
import { request } from "node:http";

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
const [host, port] = eice.dns.split(":");
const q = new URLSearchParams({ instanceConnectEndpointId: eice.id, remotePort: "22", privateIpAddress: privateIp ?? "", maxTunnelDuration: maxTunnel });
const req = request({
  host,
  port: Number(port ?? 443),
  path: `/openTunnel?${q}`,
  headers: { connection: "Upgrade", upgrade: "websocket", authorization: auth.replace("/ec2/", "/ec2-instance-connect/") },
});
req.on("response", (res) => {
  let text = "";
  res.setEncoding("utf8");
  res.on("data", (c) => (text += c));
  res.on("end", () => {
    out(`${text}\n\nAWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE: Failed to upgrade HTTP connection to Websocket.\n`);
    process.exit(255);
  });
});
req.on("upgrade", (_res, sock, head) => {
  if (head.length) process.stdout.write(head);
  process.stdin.pipe(sock);
  sock.pipe(process.stdout);
  process.stdin.on("end", () => sock.end());
  sock.on("close", () => process.exit(0));
  sock.on("error", () => process.exit(0));
});
req.on("error", (err) => {
  out(`\nAWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE: ${err.message}\n`);
  process.exit(255);
});
req.end();
