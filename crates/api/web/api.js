// REST calls and the tab's tokens (sessionStorage: they last as long as the
// tab and are not shared with other tabs). The access token is refreshed a
// minute before it expires, and once more when a call answers 401.

const KEY = 'chat.tokens';

/** An error answer of the API: `status`, `code`, `detail` and `fields`. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || (status === 0 ? 'network' : 'error');
    this.fields = body?.fields || {};
  }
}

let tokens = load();
let refreshTimer = 0;
let refreshing = null;
const listeners = new Set();

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || null;
  } catch {
    return null;
  }
}

function save(next) {
  tokens = next;
  if (next) sessionStorage.setItem(KEY, JSON.stringify(next));
  else sessionStorage.removeItem(KEY);
  schedule();
  for (const fn of listeners) fn(Boolean(next));
}

/** Calls `fn(loggedIn)` whenever the tokens change. */
export function onAuthChange(fn) {
  listeners.add(fn);
}

export function loggedIn() {
  return Boolean(tokens?.access);
}

export function accessToken() {
  return tokens?.access || '';
}

/** Seconds since the epoch at which a JWT expires (0 when unreadable). */
function expiry(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part)).exp || 0;
  } catch {
    return 0;
  }
}

function schedule() {
  clearTimeout(refreshTimer);
  if (!tokens?.access) return;
  const ms = (expiry(tokens.access) - 60) * 1000 - Date.now();
  refreshTimer = setTimeout(() => refresh().catch(() => {}), Math.max(ms, 5000));
}

/** Gets a new access token with the refresh token; logs out when refused. */
export function refresh() {
  if (!tokens?.refresh) return Promise.reject(new ApiError(401, {}));
  refreshing ||= raw('POST', '/api/auth/token/refresh/', { refresh: tokens.refresh }, false)
    .then((body) => save({ ...tokens, access: body.access }))
    .catch((err) => {
      if (err.status === 401) save(null);
      throw err;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

async function raw(method, path, body, auth = true) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth && tokens?.access) headers.Authorization = `Bearer ${tokens.access}`;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { detail: 'The server cannot be reached.' });
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** An authenticated call; a 401 refreshes the token and tries once more. */
export async function call(method, path, body) {
  try {
    return await raw(method, path, body);
  } catch (err) {
    if (err.status !== 401 || !tokens?.refresh) throw err;
    await refresh();
    return raw(method, path, body);
  }
}

export async function login(username, password) {
  save(await raw('POST', '/api/auth/token/', { username, password }, false));
}

export function register(fields) {
  return raw('POST', '/api/auth/register/', fields, false);
}

export function logout() {
  save(null);
}

/** Every item of a paginated list (at most `pages` pages of 100). */
export async function all(path, pages = 10) {
  const out = [];
  const sep = path.includes('?') ? '&' : '?';
  for (let page = 1; page <= pages; page++) {
    const body = await call('GET', `${path}${sep}page=${page}&page_size=100`);
    out.push(...body.results);
    if (!body.next) break;
  }
  return out;
}

export const me = () => call('GET', '/api/users/me/');
export const user = (id) => call('GET', `/api/users/${encodeURIComponent(id)}/`);
export const conversations = () => all('/api/chat/conversations/');
export const conversation = (id) => call('GET', `/api/chat/conversations/${id}/`);
export const connections = () => all('/api/connections/');
export const requestConnection = (userId) => call('POST', '/api/connections/', { user_id: userId });
export const acceptConnection = (id) => call('POST', `/api/connections/${id}/accept/`);
export const rejectConnection = (id) => call('POST', `/api/connections/${id}/reject/`);
export const removeConnection = (id) => call('DELETE', `/api/connections/${id}/`);
export const markRead = (conversationId) =>
  call('POST', `/api/chat/conversations/${conversationId}/mark_read/`);

/** A cursor read of a conversation's history (`before` or `after` a message id). */
export function history(conversationId, { before, after, limit = 50 } = {}) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (before) q.set('before', String(before));
  if (after) q.set('after', String(after));
  return call('GET', `/api/chat/conversations/${conversationId}/messages/?${q}`);
}

/** Sends over HTTP (idempotent by `client_id`): the fallback when the stream is down. */
export const sendMessage = (conversationId, content, clientId, attachmentIds = []) =>
  call('POST', '/api/chat/messages/', {
    conversation_id: conversationId,
    content,
    client_id: clientId,
    attachment_ids: attachmentIds,
  });

async function uploadOnce(file) {
  const form = new FormData();
  form.append('file', file, file.name);
  let res;
  try {
    res = await fetch('/api/chat/attachments/', {
      method: 'POST',
      headers: { Accept: 'application/json', Authorization: `Bearer ${accessToken()}` },
      body: form,
    });
  } catch {
    throw new ApiError(0, { detail: 'The server cannot be reached.' });
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** Uploads a file (multipart); resolves to the attachment object. */
export async function upload(file) {
  try {
    return await uploadOnce(file);
  } catch (err) {
    if (err.status !== 401 || !tokens?.refresh) throw err;
    await refresh();
    return uploadOnce(file);
  }
}

/** A file's address with the access token, for `<img>` and download links. */
export function fileUrl(path) {
  return `${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(accessToken())}`;
}

const reactionPath = (messageId, emoji) =>
  `/api/chat/messages/${messageId}/reactions/${encodeURIComponent(emoji)}/`;
export const addReaction = (messageId, emoji) => call('PUT', reactionPath(messageId, emoji));
export const removeReaction = (messageId, emoji) => call('DELETE', reactionPath(messageId, emoji));

export function search(q, { before, conversationId } = {}) {
  const params = new URLSearchParams({ q, limit: '20' });
  if (before) params.set('before', String(before));
  if (conversationId) params.set('conversation_id', String(conversationId));
  return call('GET', `/api/chat/search/?${params}`);
}

schedule();
