import { ProviderError } from "../types.ts";

/** Where every AWS message points: the setup and troubleshooting guide. */
export const INFRA_DOC = "docs/infra/workspace-terminal.md";

/** What the SDK throws: a service error (name = AWS error code) or a client-side error. */
export interface AwsErrorLike {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

export function awsCode(err: unknown): string {
  const e = (err ?? {}) as AwsErrorLike;
  // Node network errors are plain Errors with a `code` (ECONNREFUSED...).
  if (e.name && e.name !== "Error") return e.name;
  return e.code ?? e.name ?? "Error";
}

export function awsMessage(err: unknown): string {
  const m = ((err ?? {}) as AwsErrorLike).message ?? String(err);
  // AWS appends a long encoded authorization blob; the user needs the first sentence, not that.
  return m.replace(/\s*Encoded authorization failure message:.*$/s, "").trim();
}

const THROTTLING = new Set([
  "RequestLimitExceeded",
  "Throttling",
  "ThrottlingException",
  "TooManyRequestsException",
  "RequestThrottled",
  "RequestThrottledException",
  "SlowDown",
]);
const SERVER_SIDE = new Set(["InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable", "ServiceException", "RequestTimeout", "RequestTimeoutException"]);
const NETWORK = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "TimeoutError", "RequestTimeout", "NetworkingError"]);
const CREDENTIALS = new Set(["AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException", "IncompleteSignature", "MissingAuthenticationToken", "InvalidAccessKeyId", "ExpiredToken", "ExpiredTokenException"]);

export function isThrottling(err: unknown): boolean {
  return THROTTLING.has(awsCode(err));
}

/** Worth retrying with backoff: throttling, AWS-side 5xx, network trouble. */
export function isTransientAws(err: unknown): boolean {
  const code = awsCode(err);
  if (THROTTLING.has(code) || SERVER_SIDE.has(code) || NETWORK.has(code)) return true;
  const status = ((err ?? {}) as AwsErrorLike).$metadata?.httpStatusCode;
  return status !== undefined && status >= 500;
}

/** The worker could not authenticate to AWS at all (no credentials, bad or expired ones). */
export function isCredentialsError(err: unknown): boolean {
  const code = awsCode(err);
  return CREDENTIALS.has(code) || code === "CredentialsProviderError" || /Could not load credentials/i.test(awsMessage(err));
}

export function isAccessDenied(err: unknown): boolean {
  const code = awsCode(err);
  return code === "UnauthorizedOperation" || code === "AccessDeniedException" || code === "AccessDenied" || code === "AuthException";
}

export interface Ec2Context {
  /** The EC2 action, e.g. "RunInstances". */
  op: string;
  region: string;
  amiId?: string;
  instanceType?: string;
  subnetId?: string;
}

/**
 * Turns an EC2 error into a ProviderError the user can act on: what went wrong,
 * which setting or permission to fix, and whether a retry can help.
 */
export function ec2ProviderError(err: unknown, c: Ec2Context): ProviderError {
  const code = awsCode(err);
  const msg = awsMessage(err);
  const say = (text: string, transient: boolean, kind: string) => new ProviderError(`${text} (AWS ${code} on ${c.op})`, transient, kind);
  if (isThrottling(err)) return say(`AWS is throttling EC2 calls in ${c.region}; retrying with backoff`, true, "aws_throttled");
  if (isCredentialsError(err)) {
    return say(
      `AWS rejected or could not find the terminal worker's credentials: ${msg}. The worker takes credentials from the AWS SDK default chain (environment, shared config/profile, container or instance role); fix them there, see ${INFRA_DOC}`,
      false,
      "aws_credentials",
    );
  }
  if (isAccessDenied(err)) {
    return say(`the worker's IAM identity may not call ec2:${c.op}: ${msg}. Grant it as shown in ${INFRA_DOC}#iam-policy`, false, "aws_access_denied");
  }
  switch (code) {
    case "InstanceLimitExceeded":
    case "VcpuLimitExceeded":
    case "MaxSpotInstanceCountExceeded":
      return say(
        `the AWS account has reached its EC2 quota in ${c.region}${c.instanceType ? ` for ${c.instanceType}` : ""}: ${msg}. Request a higher "Running On-Demand instances" vCPU quota in Service Quotas, or delete unused workspaces`,
        false,
        "aws_quota",
      );
    case "InsufficientInstanceCapacity":
    case "InsufficientCapacity":
    case "InsufficientHostCapacity":
      return say(
        `AWS has no capacity for ${c.instanceType ?? "this instance type"} in the availability zone of ${c.subnetId ?? "the subnet"} right now: ${msg}. Restart the workspace later, or configure another subnet (MOLECULE_AWS_SUBNET_ID) or instance type (MOLECULE_AWS_INSTANCE_TYPES)`,
        false,
        "aws_capacity",
      );
    case "InvalidAMIID.NotFound":
    case "InvalidAMIID.Malformed":
    case "InvalidAMIID.Unavailable":
      return say(`the configured AMI ${c.amiId ?? ""} does not exist or is not available in ${c.region}: ${msg}. Set MOLECULE_AWS_AMI_ID to an AMI of this region`, false, "aws_ami");
    case "InvalidSubnetID.NotFound":
    case "InvalidSubnetID.Malformed":
      return say(`the configured subnet ${c.subnetId ?? ""} does not exist in ${c.region}: ${msg}. Check MOLECULE_AWS_SUBNET_ID`, false, "aws_config");
    case "InvalidGroup.NotFound":
    case "InvalidGroupId.Malformed":
      return say(`the configured security group does not exist: ${msg}. Check MOLECULE_AWS_SECURITY_GROUP_ID`, false, "aws_config");
    case "OptInRequired":
    case "PendingVerification":
    case "Blocked":
      return say(`the AWS account cannot launch instances in ${c.region} yet: ${msg}`, false, "aws_account");
    case "Unsupported":
    case "InvalidParameterValue":
    case "InvalidParameterCombination":
    case "InvalidParameter":
    case "UnsupportedOperation":
      return say(`AWS refused the launch settings: ${msg}. Check the instance type map and the AMI (see ${INFRA_DOC})`, false, "aws_config");
  }
  if (isTransientAws(err)) return say(`EC2 in ${c.region} is not answering properly (${msg}); retrying with backoff`, true, "aws_unavailable");
  return say(`EC2 ${c.op} failed: ${msg}`, false, "aws_error");
}
