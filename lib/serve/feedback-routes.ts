// The HTTP face of a Personalizer, mounted by lib/serve/server.ts when `pigg serve --feedback DIR` runs:
//
//   POST /v1/feedback            {user, image (base64 or data URI), instruction, tap: {x, y}, referring?}  -> 201
//   GET  /v1/users/:id           sample count, new samples since the last training, version served (and the adapter
//                                name requests use for it), its held-out metrics, versions kept, whether training
//                                runs, the last decision; no server path
//   POST /v1/users/:id/rollback  {version: N | null}  (null: the base model)
//
// Errors are the API's (lib/serve/errors.ts): 400 with the field named, 404 for a user with no samples.
import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { withoutFolders } from './adapter-roots.js';
import { ApiError, badRequest } from './errors.js';
import { base64ImageBytes } from './requests.js';
import type { FeedbackReceipt, Personalizer, UserStatus } from '../personalize/personalizer.js';
import { checkUser, type FeedbackError } from '../personalize/store.js';
import { isObject } from '../util/json.js';

/** What the server needs of a Personalizer. */
export type ServedPersonalizer = Pick<Personalizer, 'feedback' | 'status' | 'knows' | 'adapterFor' | 'rollback' | 'dir'>;

/** The adapter to ground a request's user with: a user the personalizer knows but has no version yet gets the base model. */
export function servedUser(personalizer: ServedPersonalizer | undefined, user: string | null): string | null {
  if (!personalizer || user === null || !personalizer.knows(user)) return user;
  return personalizer.adapterFor(user);
}

/** A FeedbackError (store and personalizer checks) as a 400 naming its field; anything else as it is. */
function apiError(error: unknown): unknown {
  const e = error as FeedbackError & { notFound?: boolean; conflict?: boolean };
  if ((e?.code === 'INVALID_ARGUMENT' || e?.code === 'INVALID_IMAGE') && typeof e.param === 'string') {
    if (e.notFound) return new ApiError(404, 'version_not_found', e.message, e.param);
    if (e.conflict) return new ApiError(409, 'name_taken', e.message, e.param);
    return badRequest(e.code === 'INVALID_IMAGE' ? 'invalid_image' : `invalid_${e.param.replace(/\W+/g, '_')}`, e.message, e.param);
  }
  return error;
}

/**
 * A user's status as clients see it: the adapter by the name a request asks for (`model` / `user`), never its
 * folder, and the feedback folder cut out of a decision's messages (paths in them read relative to it).
 */
function userObject(status: UserStatus, personalizer: ServedPersonalizer): Record<string, unknown> {
  const { user, samples, pending, version, metrics, versions, training, queued, job, lastDecision, quarantined } = status;
  const folders = [...new Set([personalizer.dir, resolve(personalizer.dir)])];
  const redact = (text: string | undefined) => (text === undefined ? undefined : withoutFolders(text, folders));
  const decision = lastDecision && {
    ...lastDecision,
    reason: redact(lastDecision.reason),
    error: redact(lastDecision.error),
    quarantined: lastDecision.quarantined?.map((q) => ({ ...q, reason: redact(q.reason)! })),
  };
  return {
    id: user, object: 'user', samples, pending, version, adapter: personalizer.adapterFor(user), metrics, versions, training, queued, job, last_decision: decision, quarantined,
  };
}

export function registerFeedbackRoutes(app: FastifyInstance, personalizer: ServedPersonalizer, limits: { maxImageBytes: number }): void {
  app.post('/v1/feedback', async (request, reply) => {
    const body = request.body;
    if (!isObject(body)) throw badRequest('invalid_body', 'the request body must be a JSON object {user, image, instruction, tap: {x, y}}');
    if (body.user === undefined || body.user === null) throw badRequest('missing_user', 'no user: send user, the id whose adapter learns from this tap', 'user');
    if (!isObject(body.tap)) throw badRequest('invalid_tap', 'tap must be an object {x, y} in pixels of the image', 'tap');
    if (body.referring !== undefined && body.referring !== null && typeof body.referring !== 'string') throw badRequest('invalid_referring', 'referring must be a string or null', 'referring');
    const image = base64ImageBytes(body.image, 'image', limits.maxImageBytes);
    let receipt: FeedbackReceipt;
    try {
      receipt = await personalizer.feedback({
        user: body.user as string, image, instruction: body.instruction as string, tap: body.tap as { x: number; y: number }, referring: body.referring as string | null | undefined,
      });
    } catch (error) {
      throw apiError(error);
    }
    return reply.code(201).send({ object: 'feedback', ...receipt });
  });

  const known = (id: string): string => {
    try {
      checkUser(id, 'id');
    } catch (error) {
      throw apiError(error);
    }
    if (!personalizer.knows(id)) throw new ApiError(404, 'user_not_found', `no user '${id}': no feedback has been stored for it`, 'id');
    return id;
  };

  app.get<{ Params: { id: string } }>('/v1/users/:id', async (request) => userObject(await personalizer.status(known(request.params.id)), personalizer));

  app.post<{ Params: { id: string } }>('/v1/users/:id/rollback', async (request) => {
    const id = known(request.params.id);
    const body = request.body;
    if (!isObject(body) || !('version' in body)) throw badRequest('missing_version', 'send {"version": N} (a version kept) or {"version": null} (the base model)', 'version');
    try {
      return userObject(await personalizer.rollback(id, body.version as number | null), personalizer);
    } catch (error) {
      throw apiError(error);
    }
  });
}
