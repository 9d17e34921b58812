// panva's oidc-provider as an independent OpenID provider for authtoken's tests.
//
//   node server.js [PORT]        (PORT or env PORT; 0 or nothing picks a free port)
//
// Listens on 127.0.0.1 and prints ONE line on stdout once it accepts connections:
//   {"issuer": "http://127.0.0.1:PORT", "port": PORT, "resource": ..., "clients": {...}}
// and nothing else on stdout (oidc-provider's own warnings go to stderr).
//
// What it serves (oidc-provider 8.x, which supports Node 18 and 20):
// - discovery, JWKS, token, userinfo, introspection, revocation, and the authorization
//   endpoint with PKCE (S256, required) and oidc-provider's development login/consent pages;
// - grants: authorization_code, refresh_token (rotated: a used refresh token is consumed,
//   and presenting it again is refused with invalid_grant AND revokes its whole grant, as
//   OAuth 2.1's replay detection asks), client_credentials, and the password grant, which
//   oidc-provider does not ship: registered below with provider.registerGrantType against
//   an in-memory account store (alice/wonderland, bob/builder);
// - access tokens are JWTs (RS256, typ at+jwt) for the resource RESOURCE (every grant
//   defaults to it), so a resource server can check them against the JWKS;
// - GET /api/me: a protected resource that checks such a token and answers who it is for;
// - GET /_test/stats: what the token endpoint was asked (per grant, per client, the
//   sha256 of every refresh token presented); POST /_test/reset empties it; a few more
//   test-only endpoints revoke an account's grants, change a password, inject faults.
//
// Sign-in by the browser: /auth redirects to oidc-provider's devInteractions login page
// (/interaction/UID: fields "login" and "password", the password checked against the
// account store below), then its consent page (POST /interaction/UID/confirm), then the
// client's redirect_uri with code, state and iss.  The ID token carries a "groups" claim
// (alice: ["authtoken-admins"]) when the "groups" scope is asked.
//
// Environment: PORT; ACCESS_TTL (seconds, default 60; access tokens and client
// credentials tokens); REFRESH_TTL (default 3600); CLIENT_SECRET (the confidential
// clients' secret; a fixed test value by default -- the secret never goes in argv);
// REDIRECT_URIS (space-separated URLs, registered for every client besides the default
// http://127.0.0.1/callback); EXIT_WITH_STDIN=1: exit when stdin closes, so a killed test runner leaves no server behind.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';

import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const RESOURCE = 'urn:authtoken:test-api';
const RESOURCE_SCOPE = 'api:read';
const OIDC_SCOPES = ['openid', 'offline_access', 'profile', 'groups'];
// The two confidential clients differ only in what they registered: oidc-provider accepts
// a secret in the form (client_secret_post, how authtoken's adapters send it) or in HTTP
// Basic (client_secret_basic) from either.
const CLIENTS = {
  confidential: 'authtoken-confidential', // registered as client_secret_post
  basic: 'authtoken-basic', // registered as client_secret_basic
  public: 'authtoken-public', // no secret (token_endpoint_auth_method none)
};
const REDIRECT_URI = 'http://127.0.0.1/callback';
const ACCOUNTS = new Map([
  ['alice', { password: 'wonderland', name: 'Alice Liddell', groups: ['authtoken-admins'] }],
  ['bob', { password: 'builder', name: 'Bob the Builder', groups: [] }],
]);

function seconds(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive whole number of seconds, not ${JSON.stringify(raw)}`);
  }
  return value;
}

const ACCESS_TTL = seconds('ACCESS_TTL', 60);
const REFRESH_TTL = seconds('REFRESH_TTL', 3600);
const CLIENT_SECRET = process.env.CLIENT_SECRET || 'panva-test-client-secret';
const REDIRECT_URIS = [REDIRECT_URI, ...(process.env.REDIRECT_URIS ?? '').split(' ').filter(Boolean)];
for (const uri of REDIRECT_URIS) {
  if (!/^https?:\/\/[^\s#]+$/.test(uri)) throw new Error(`REDIRECT_URIS holds a malformed URL: ${JSON.stringify(uri)}`);
}
const requestedPort = Number(process.argv[2] ?? process.env.PORT ?? 0);
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  throw new Error(`the port must be a whole number from 0 to 65535, not ${process.argv[2] ?? process.env.PORT}`);
}

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

function sameText(a, b) {
  // Compare digests so that the lengths match and the time says nothing about the text.
  return timingSafeEqual(Buffer.from(sha256(a), 'hex'), Buffer.from(sha256(b), 'hex'));
}

// -- what the token endpoint was asked ---------------------------------------------------

let stats;
function resetStats() {
  stats = {
    token_requests: 0, // every POST to the token endpoint
    grants: {}, // grant_type -> requests
    succeeded: {}, // grant_type -> 2xx answers
    errors: {}, // error code -> answers
    clients: {}, // client_id -> requests
    refresh_tokens_presented: [], // sha256 hex of each refresh_token sent, in order
    refresh_tokens_processed: [], // the same, less those answered by an injected fault
    api_requests: 0, // GET /api/me, answered or not
    grants_revoked: 0, // by a reused refresh token (replay detection) or POST /_test/revoke
  };
}
resetStats();

const count = (table, key) => { table[key] = (table[key] ?? 0) + 1; };

// -- the provider ------------------------------------------------------------------------

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: 'panva-test-key', alg: 'RS256', use: 'sig' };
const { d, p, q, dp, dq, qi, ...publicKey } = signingKey;
const localKeys = createLocalJWKSet({ keys: [publicKey] });

const resourceServer = {
  scope: RESOURCE_SCOPE,
  audience: RESOURCE,
  accessTokenTTL: ACCESS_TTL,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'RS256' } },
};

const grantTypes = ['authorization_code', 'refresh_token', 'password'];
const clientScope = OIDC_SCOPES.join(' '); // a client's scope names OIDC scopes only
const configuration = {
  clients: [
    {
      client_id: CLIENTS.confidential,
      client_secret: CLIENT_SECRET,
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: [...grantTypes, 'client_credentials'],
      response_types: ['code'],
      redirect_uris: REDIRECT_URIS,
      scope: clientScope,
    },
    {
      client_id: CLIENTS.basic,
      client_secret: CLIENT_SECRET,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [...grantTypes, 'client_credentials'],
      response_types: ['code'],
      redirect_uris: REDIRECT_URIS,
      scope: clientScope,
    },
    {
      client_id: CLIENTS.public,
      token_endpoint_auth_method: 'none',
      grant_types: grantTypes,
      response_types: ['code'],
      redirect_uris: REDIRECT_URIS,
      scope: clientScope,
    },
  ],
  async findAccount(ctx, sub) {
    const account = ACCOUNTS.get(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() { return { sub, name: account.name, groups: account.groups }; },
    };
  },
  claims: { openid: ['sub'], profile: ['name'], groups: ['groups'] },
  scopes: OIDC_SCOPES,
  pkce: { methods: ['S256'], required: () => true },
  rotateRefreshToken: true,
  ttl: {
    AccessToken: ACCESS_TTL,
    ClientCredentials: ACCESS_TTL,
    RefreshToken: REFRESH_TTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    Grant: REFRESH_TTL * 10,
    Interaction: 600,
    Session: 3600,
  },
  jwks: { keys: [signingKey] },
  cookies: { keys: ['panva-test-cookie-key'] },
  conformIdTokenClaims: false, // the scopes' claims (groups) go in the ID token too
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, indicator) {
        if (indicator !== RESOURCE) throw new errors.InvalidTarget();
        return resourceServer;
      },
    },
  },
};

// The issuer names the port, so bind first, then build the provider.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(requestedPort, HOST, resolve);
});
const { port } = server.address();
const issuer = `http://${HOST}:${port}`;
const provider = new Provider(issuer, configuration);

// -- the password grant (RFC 6749 §4.3), which oidc-provider leaves to its users ----------

async function passwordGrant(ctx, next) {
  const { client, params } = ctx.oidc;
  for (const name of ['username', 'password']) {
    if (!params[name]) throw new errors.InvalidRequest(`missing required parameter '${name}'`);
  }
  const account = ACCOUNTS.get(params.username);
  // Check a password even for an unknown user, so that both cost the same.
  const expected = account ? account.password : 'no such account';
  if (!sameText(params.password, expected) || !account) {
    throw new errors.InvalidGrant('invalid username or password');
  }
  const requested = params.scope
    ? [...new Set(params.scope.split(' '))]
    : [...OIDC_SCOPES, RESOURCE_SCOPE];
  const allowed = new Set([...(client.scope ? client.scope.split(' ') : []), RESOURCE_SCOPE]);
  const refused = requested.filter((scope) => !allowed.has(scope));
  if (refused.length) throw new errors.InvalidScope('requested scope is not allowed', refused.join(' '));

  const accountId = params.username;
  const grant = new provider.Grant({ accountId, clientId: client.clientId });
  const oidcScope = requested.filter((scope) => OIDC_SCOPES.includes(scope)).join(' ');
  if (oidcScope) grant.addOIDCScope(oidcScope);
  if (requested.includes(RESOURCE_SCOPE)) grant.addResourceScope(RESOURCE, RESOURCE_SCOPE);
  const grantId = await grant.save();

  const at = new provider.AccessToken({ accountId, client, grantId, gty: 'password' });
  at.resourceServer = new provider.ResourceServer(RESOURCE, resourceServer);
  at.scope = requested.includes(RESOURCE_SCOPE) ? RESOURCE_SCOPE : undefined;
  ctx.oidc.entity('AccessToken', at);
  const accessToken = await at.save();

  let refreshToken;
  if (client.grantTypeAllowed('refresh_token') && requested.includes('offline_access')) {
    const rt = new provider.RefreshToken({
      accountId,
      client,
      grantId,
      gty: 'password',
      resource: RESOURCE,
      rotations: 0,
      scope: requested.join(' '),
    });
    ctx.oidc.entity('RefreshToken', rt);
    refreshToken = await rt.save();
  }

  ctx.body = {
    access_token: accessToken,
    expires_in: at.expiration,
    token_type: at.tokenType,
    refresh_token: refreshToken,
    scope: requested.join(' '),
  };
  await next();
}

provider.registerGrantType('password', passwordGrant, ['username', 'password', 'scope']);

// Every grant of an account, so that a test can revoke them all ("sign out everywhere").
const grantsByAccount = new Map();
provider.on('grant.saved', (grant) => {
  if (!grantsByAccount.has(grant.accountId)) grantsByAccount.set(grant.accountId, new Set());
  grantsByAccount.get(grant.accountId).add(grant.jti);
});
provider.on('grant.revoked', () => { stats.grants_revoked += 1; });

async function revokeAccount(accountId) {
  const ids = [...(grantsByAccount.get(accountId) ?? [])];
  grantsByAccount.delete(accountId);
  await Promise.all(ids.map(async (id) => {
    await provider.RefreshToken.revokeByGrantId(id);
    await provider.AuthorizationCode.revokeByGrantId(id);
    await provider.Grant.adapter.destroy(id);
  }));
  stats.grants_revoked += ids.length;
  return ids.length;
}

// -- the devInteractions login form, with the password checked ----------------------------

// devInteractions takes any login with any password: check it against the account store
// first, so that a wrong password is refused as by a real provider (401, nothing signed in).
async function loginSubmit(ctx, next) {
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > 65536) return json(ctx, 413, { error: 'invalid_request', error_description: 'body too large' });
    chunks.push(chunk);
  }
  const raw = Buffer.concat(chunks).toString('utf8');
  ctx.request.body = raw;
  const form = new URLSearchParams(raw);
  if (form.get('prompt') === 'login') {
    const account = ACCOUNTS.get(form.get('login') ?? '');
    const expected = account ? account.password : 'no such account';
    if (!sameText(form.get('password') ?? '', expected) || !account) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = '<!doctype html><title>Sign-in</title><p>Invalid login or password.</p>';
      return undefined;
    }
  }
  return next();
}

// -- test-only endpoints and the token endpoint's record ---------------------------------

function json(ctx, status, body) {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = JSON.stringify(body);
}

async function protectedResource(ctx) {
  stats.api_requests += 1;
  const [scheme, token] = (ctx.get('authorization') || '').split(' ');
  if (scheme?.toLowerCase() !== 'bearer' || !token) {
    ctx.set('WWW-Authenticate', 'Bearer realm="api"');
    json(ctx, 401, { error: 'invalid_request', error_description: 'no bearer token' });
    return;
  }
  try {
    const { payload } = await jwtVerify(token, localKeys, {
      issuer, audience: RESOURCE, typ: 'at+jwt', algorithms: ['RS256'],
    });
    json(ctx, 200, { sub: payload.sub ?? null, client_id: payload.client_id, scope: payload.scope ?? null });
  } catch (err) {
    ctx.set('WWW-Authenticate', 'Bearer realm="api", error="invalid_token"');
    json(ctx, 401, { error: 'invalid_token', error_description: err.code ?? 'invalid token' });
  }
}

async function readJSON(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
  } catch {
    return {};
  }
}

// The test-only endpoints: GET /_test/stats; POST /_test/reset (the record and the
// faults); POST /_test/fault {"grant_type", ...} (see tokenEndpoint); POST /_test/revoke
// {"username"} revokes the account's grants (its refresh tokens are refused from then
// on); POST /_test/password {"username", "password"} changes a password.
async function testEndpoint(ctx) {
  if (ctx.path === '/_test/stats' && ctx.method === 'GET') return json(ctx, 200, stats);
  if (ctx.method !== 'POST') return json(ctx, 405, { error: 'method_not_allowed' });
  if (ctx.path === '/_test/reset') {
    resetStats();
    faults.clear();
    return json(ctx, 200, stats);
  }
  if (ctx.path === '/_test/fault') {
    const fault = await readJSON(ctx);
    if (typeof fault.grant_type !== 'string') return json(ctx, 400, { error: 'grant_type is required' });
    faults.set(fault.grant_type, fault);
    return json(ctx, 200, { faults: Object.fromEntries(faults) });
  }
  const body = await readJSON(ctx);
  const account = ACCOUNTS.get(body.username);
  if (!account) return json(ctx, 404, { error: 'no_such_account' });
  if (ctx.path === '/_test/revoke') return json(ctx, 200, { revoked: await revokeAccount(body.username) });
  if (ctx.path === '/_test/password' && typeof body.password === 'string' && body.password) {
    account.password = body.password;
    return json(ctx, 200, { changed: body.username });
  }
  return json(ctx, 404, { error: 'not_found' });
}

// Faults a test can inject at the token endpoint, per grant type: answer `fail_status`
// (say 503) without processing for the next `fail_count` requests; wait `delay_before_ms`
// before processing (the request is in flight, nothing used yet) or `delay_after_ms` after
// it (the refresh token is already consumed, the answer not yet sent).
const faults = new Map();
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function tokenEndpoint(ctx, next) {
  // Read the form here (oidc-provider accepts a body read upstream) to know the grant
  // type before it is processed.
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > 65536) return json(ctx, 413, { error: 'invalid_request', error_description: 'body too large' });
    chunks.push(chunk);
  }
  const raw = Buffer.concat(chunks).toString('utf8');
  ctx.request.body = raw;
  const form = new URLSearchParams(raw);
  const grantType = form.get('grant_type') ?? '(none)';
  const refreshToken = grantType === 'refresh_token' ? form.get('refresh_token') : null;
  const fault = faults.get(grantType) ?? {};

  stats.token_requests += 1;
  count(stats.grants, grantType);
  if (refreshToken) stats.refresh_tokens_presented.push(sha256(refreshToken));
  if (fault.delay_before_ms) await sleep(fault.delay_before_ms);
  if (fault.fail_count > 0) {
    fault.fail_count -= 1;
    count(stats.errors, 'temporarily_unavailable');
    count(stats.clients, form.get('client_id') ?? '(unknown)');
    return json(ctx, fault.fail_status ?? 503, {
      error: 'temporarily_unavailable', error_description: 'a fault injected by the test',
    });
  }
  if (refreshToken) stats.refresh_tokens_processed.push(sha256(refreshToken));
  await next();
  count(stats.clients, ctx.oidc?.client?.clientId ?? form.get('client_id') ?? '(unknown)');
  if (ctx.status >= 200 && ctx.status < 300) count(stats.succeeded, grantType);
  else count(stats.errors, ctx.body?.error ?? String(ctx.status));
  if (fault.delay_after_ms) await sleep(fault.delay_after_ms);
  return undefined;
}

provider.use(async (ctx, next) => {
  if (ctx.path.startsWith('/_test/')) return testEndpoint(ctx);
  // A space's pointer to its authority, as OIDCPasswordSession.from_space(issuer) reads it.
  if (ctx.path === '/api/.well-known/oidc' && ctx.method === 'GET') {
    return json(ctx, 200, { data: { authority: issuer, client_id: CLIENTS.public } });
  }
  if (ctx.path === '/api/me' && ctx.method === 'GET') return protectedResource(ctx);
  if (ctx.path === '/token' && ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded')) {
    return tokenEndpoint(ctx, next);
  }
  if (/^\/interaction\/[^/]+$/.test(ctx.path) && ctx.method === 'POST'
      && ctx.is('application/x-www-form-urlencoded')) {
    return loginSubmit(ctx, next);
  }
  return next();
});

server.on('request', provider.callback());

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (process.env.EXIT_WITH_STDIN === '1') {
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
}

process.stdout.write(`${JSON.stringify({
  issuer,
  port,
  resource: RESOURCE,
  resource_scope: RESOURCE_SCOPE,
  redirect_uri: REDIRECT_URI,
  redirect_uris: REDIRECT_URIS,
  clients: CLIENTS,
  access_ttl: ACCESS_TTL,
  refresh_ttl: REFRESH_TTL,
})}\n`);
