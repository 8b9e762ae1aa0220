// Tests use the same real, in-process OIDC provider that `npm start` runs.

export {
  ACCOUNTS, AGENT_CLIENT, DBWARD_RESOURCE, DEVICE_CLIENT_ID, OTHER_RESOURCE, SERVICE_CLIENT,
  startDevIssuer as startTestIssuer, type DevIssuer as TestIssuer, type DevIssuerOptions as TestIssuerOptions,
} from '../../src/embedded/dev-idp.js';
