// DOM building without innerHTML: every piece of data becomes a text node, so nothing a peer publishes
// (titles, descriptions, file names) can run as script in the operator's page.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
export function bytes(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '—';
  let i = 0;
  while (Math.abs(n) >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(1)} ${UNITS[i]}`;
}

export function duration(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), hh = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return `${d} d ${hh} h`;
  if (hh) return `${hh} h ${m} min`;
  if (m) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

export function when(unix) {
  if (!unix) return '—';
  return new Date(unix * 1000).toLocaleString();
}

export function short(id) {
  return id && id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : (id || '');
}

export function progress(done, total, label) {
  const p = h('progress', { max: Math.max(total || 0, 1), value: Math.min(done || 0, total || 0),
                            'aria-label': label });
  return h('span', {}, p, ' ', h('span', { class: 'pct' }, total ? `${Math.floor(100 * done / total)} %` : '0 %'));
}

export const STATE_WORDS = {
  'own': 'published here',
  'complete': 'complete copy held here',
  'in-progress': 'being copied here',
  'not-wanted': 'not kept here',
};

// A peer as a person reads it: the name this node knows for it (given when connecting it, or a member's), else
// a short id; the full id stays in the tooltip. `peers` is the live state's list of connected peers.
export function peerName(peerId, peers, known) {
  const p = (peers || []).find((x) => x.peer_id === peerId);
  const name = (p && p.name) || known || '';
  return h('span', { class: name ? 'peer' : 'peer mono', title: peerId }, name || short(peerId));
}
