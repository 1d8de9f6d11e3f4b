// The JSON API, called with the session cookie (never the admin token: the page never sees it). Unsafe
// requests carry the session's CSRF token in a header, fetched once from /dashboard/session.

let csrf = null;

export class SignedOut extends Error {}

async function csrfToken() {
  if (csrf) return csrf;
  const r = await fetch('/dashboard/session', { credentials: 'same-origin', cache: 'no-store' });
  if (r.status === 401) throw new SignedOut('signed out');
  csrf = (await r.json()).csrf;
  return csrf;
}

export async function api(method, path, body) {
  const headers = {};
  if (method !== 'GET') headers['X-CSRF-Token'] = await csrfToken();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store',
                            body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (_) {  // the browser's own words ("Failed to fetch") say nothing an operator can act on
    throw new Error('The node did not answer: it is stopped or restarting, or the network is down.');
  }
  if (r.status === 401) { csrf = null; toSignIn(); throw new SignedOut('signed out'); }
  const type = r.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await r.json() : await r.text();
  if (!r.ok) throw new Error(data && data.error ? data.error : `${r.status} ${r.statusText}`);
  return data;
}

export function toSignIn() {
  window.location.assign('/login');
}

export async function signOut() {
  try { await api('POST', '/logout'); } catch (e) { if (!(e instanceof SignedOut)) throw e; }
  csrf = null;
  toSignIn();
}

// Server-sent events: each `state` event carries the sections that changed. When the stream breaks
// (node stopped or restarted), EventSource retries by itself; if the session is gone by then (a restart
// empties the session table), the page goes to sign-in.
export function live(onState, onLink) {
  const es = new EventSource('/dashboard/events');
  es.addEventListener('open', () => onLink(true));
  es.addEventListener('state', (ev) => onState(JSON.parse(ev.data)));
  es.addEventListener('error', async () => {
    onLink(false);
    try {
      const r = await fetch('/dashboard/session', { credentials: 'same-origin', cache: 'no-store' });
      if (r.status === 401) { es.close(); toSignIn(); }
    } catch (_) { /* the node is down: EventSource keeps retrying */ }
  });
  return es;
}
