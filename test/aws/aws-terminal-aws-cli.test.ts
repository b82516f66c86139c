/**
 * The same AWS Terminal tests as aws-terminal.test.ts, with MOLECULE_AWS_TUNNEL=aws-cli:
 * ssh's ProxyCommand is (the fake) `aws ec2-instance-connect open-tunnel`, which
 * presigns and opens the same fake openTunnel endpoint as the native tunnel.
 */
process.env.MOLECULE_TEST_AWS_TUNNEL = "aws-cli";
await import("./aws-terminal.test.ts");
