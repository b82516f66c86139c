export { createAwsProvider, type AwsProvider } from "./provider.ts";
export {
  DEFAULT_INSTANCE_TYPES,
  DEFAULT_RUNTIME_IMAGE,
  awsOptionsFromEnv,
  zodParse,
  type AwsEnv,
  parseInstanceTypes,
  parseSshOptions,
  AMI_ID_RE,
  SUBNET_ID_RE,
  SECURITY_GROUP_ID_RE,
  REGION_RE,
  ORG_ID_RE,
  IMAGE_RE,
  EXECUTABLE_RE,
  INSTANCE_PROFILE_RE,
  type AwsProviderOptions,
} from "./config.ts";
