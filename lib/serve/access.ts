// Who may call the server, checked before any body is read (a fastify onRequest hook):
//
// - API keys (Authorization: Bearer KEY, as OpenAI's clients send them): every route but /health and /ready needs one
//   once any key is configured. Several keys may be given (rotation).
// - Admin keys: loading and unloading adapters and the user routes (status, rollback) need one of them. With API keys
//   but no admin key these routes are off (403): a client key never manages the server.
// - Host allow-list: a request whose Host header is not an allowed name is refused (403), so a web page cannot reach a
//   loopback server through a DNS name it rebinds to 127.0.0.1.
//
// Failures answer in OpenAI's error shape: 401 invalid_api_key without a valid key, 403 when the key lacks the right.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

export interface AccessOptions {
  /** Bearer keys of clients (inference, feedback, model list, metrics). None: those routes are open. */
  apiKeys?: readonly string[];
  /** Bearer keys of administrators (adapter load/unload, user status and rollback); also valid as API keys. */
  adminKeys?: readonly string[];
  /**
   * Host header names accepted besides the loopback ones (localhost, 127.0.0.1, ::1) and the address listened on.
   * Default: any Host when listening beyond loopback, only those names when listening on loopback.
   */
  allowedHosts?: readonly string[];
}

/** Routes anyone may call: probes of orchestrators carry no key. */
const PUBLIC = new Set(['/health', '/ready']);

/** Routes that change what the server serves, or show other users' state. */
const ADMIN: ReadonlyArray<{ method: string; url: string }> = [
  { method: 'POST', url: '/v1/adapters' },
  { method: 'DELETE', url: '/v1/adapters/:name' },
  { method: 'GET', url: '/v1/users/:id' },
  { method: 'POST', url: '/v1/users/:id/rollback' },
];

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];

export function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.includes(host) || host.startsWith('127.') || host === '[::1]';
}

/** Keys are compared as SHA-256 digests in constant time: the time taken tells nothing of a key. */
const digest = (key: string) => createHash('sha256').update(key).digest();

function keyChecker(keys: readonly string[] | undefined): ((key: string) => boolean) | null {
  const list = (keys ?? []).filter((k) => k !== '');
  if (list.length === 0) return null;
  const digests = list.map(digest);
  return (key) => {
    const d = digest(key);
    // Every digest is compared (no early exit), so which key matched is not timed either.
    return digests.reduce((found, k) => timingSafeEqual(k, d) || found, false);
  };
}

/** The hostname of a Host header ('example.com:8080' -> 'example.com', '[::1]:80' -> '::1'). */
export function hostName(header: string | undefined): string {
  if (!header) return '';
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') < 0 ? undefined : h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

function bearer(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1]! : null;
}

const unauthorized = (message: string) => new ApiError(401, 'invalid_api_key', message, null, 'invalid_request_error', { 'www-authenticate': 'Bearer' });
const forbidden = (code: string, message: string) => new ApiError(403, code, message, null, 'invalid_request_error');

/**
 * The warning to print when the server is reachable beyond this machine without a key; null when it is not.
 */
export function exposureWarning(host: string, access: AccessOptions): string | null {
  if (isLoopback(host) || (access.apiKeys ?? []).some((k) => k !== '')) return null;
  // Only the admin key set: the client routes are open to the network.
  return `pigg serve listens on ${host} WITHOUT an API key: anyone who can reach this address can ground, send feedback that trains users' adapters`
    + `${(access.adminKeys ?? []).some((k) => k !== '') ? '' : ', and load or unload adapters'}. Set --api-key (or PIGG_API_KEY) and --admin-key, or listen on 127.0.0.1.`;
}

/**
 * Installs the checks on `app` (before its routes). `host` is the address the server listens on; `warn` gets the
 * exposure warning (default process.emitWarning).
 */
export function registerAccess(app: FastifyInstance, access: AccessOptions, host: string,
  warn: (message: string) => void = (message) => process.emitWarning(message, 'PiggSecurityWarning')): void {
  const exposed = exposureWarning(host, access);
  if (exposed) warn(exposed);
  const apiKeys = (access.apiKeys ?? []).filter((k) => k !== '');
  const adminKeys = (access.adminKeys ?? []).filter((k) => k !== '');
  const admin = keyChecker(adminKeys);
  const known = keyChecker([...apiKeys, ...adminKeys]);
  const hosts = access.allowedHosts || isLoopback(host)
    ? new Set([...LOOPBACK_NAMES, ...(isIP(host) && host !== '0.0.0.0' && host !== '::' ? [host] : []), ...(access.allowedHosts ?? []).map(hostName)])
    : null;

  app.addHook('onRequest', async (request) => {
    if (hosts && !hosts.has(hostName(request.headers.host))) {
      throw forbidden('host_not_allowed', `the Host '${String(request.headers.host ?? '').slice(0, 100)}' is not one this server answers to (see --allowed-host)`);
    }
    const url = request.routeOptions.url;
    if (url !== undefined && PUBLIC.has(url)) return;
    const isAdmin = ADMIN.some((r) => r.method === request.method && r.url === url);
    // No key at all: a loopback development server, open (exposureWarning says so when it is not on loopback).
    if (!known || (!isAdmin && apiKeys.length === 0)) return;
    const key = bearer(request);
    if (key === null) throw unauthorized('no API key: send it as the header Authorization: Bearer KEY');
    if (!known(key)) throw unauthorized('the API key is not valid');
    if (!isAdmin) return;
    if (!admin) throw forbidden('permission_denied', 'this route needs an admin key, and this server has none (start it with --admin-key or PIGG_ADMIN_KEY)');
    if (!admin(key)) throw forbidden('permission_denied', 'this route needs an admin key; the key sent is a client key');
  });
}
