import { api } from '../api.js';
import { h, replace, when, short } from '../dom.js';

export function render(main) {
  const policy = h('div', { id: 'policy' }), members = h('div', { id: 'members' });
  const proposals = h('div', { id: 'proposals' }), audit = h('div', { id: 'audit' });
  const logList = h('div', { id: 'govlog' });
  main.append(h('h1', {}, 'Governance'),
    h('p', { class: 'muted' }, 'Members vote with their own keys (communs vote); this page shows what is decided.'),
    h('h2', {}, 'Policy in force'), policy, h('h2', {}, 'Members'), members,
    h('h2', {}, 'Proposals'), proposals, h('h2', {}, 'Governance log'), audit, logList);

  // The log, newest first, PAGE entries at a time: `cursors` holds the `before` of each page shown so far, so
  // "Newer" goes back exactly to the page it came from (the log only grows at its newest end).
  const PAGE = 25;
  let cursors = [null];
  async function drawLog() {
    const before = cursors[cursors.length - 1];
    const q = `?limit=${PAGE}` + (before === null ? '' : `&before=${before}`);
    let page;
    try { page = await api('GET', `/api/v1/governance/entries${q}`); } catch (e) {
      replace(logList, h('p', { class: 'msg error' }, e.message)); return;
    }
    const rows = page.entries;
    const first = rows.length ? rows[0].seq : 0, last = rows.length ? rows[rows.length - 1].seq : 0;
    const newer = h('button', { type: 'button', id: 'govlog-newer', disabled: cursors.length === 1,
      onclick: () => { cursors.pop(); drawLog(); } }, '← Newer');
    const older = h('button', { type: 'button', id: 'govlog-older', disabled: page.next_before === null,
      onclick: () => { cursors.push(page.next_before); drawLog(); } }, 'Older →');
    replace(logList, rows.length ? h('table', {},
      h('caption', { class: 'muted' }, `Entries ${first} to ${last} of ${page.total}, newest first`),
      h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Kind'), h('th', {}, 'Proposal'),
        h('th', {}, 'Signed by'), h('th', {}, 'Outcome'))),
      h('tbody', {}, rows.map((e) => h('tr', { 'data-seq': String(e.seq) },
        h('td', {}, when(e.at)),
        h('td', { class: 'kind' }, e.kind),
        h('td', {}, e.summary, e.proposal ? h('div', { class: 'muted mono' }, short(e.proposal)) : null),
        h('td', { class: 'signer' }, e.signer.name || h('span', { class: 'mono' }, short(e.signer.peer_id)),
          e.signer.name ? h('div', { class: 'muted mono' }, short(e.signer.peer_id)) : null),
        h('td', { class: 'outcome' }, e.outcome)))))
      : h('p', { class: 'muted' }, 'The log is empty.'),
    h('p', { class: 'pager' }, newer, ' ', older, ' ',
      h('a', { href: '/api/v1/governance/log', download: 'governance.log' }, 'Download the governance log'),
      ' (verify it anywhere with communs audit).'));
  }

  async function section(el, path, draw) {
    try { draw(await api('GET', path)); } catch (e) { replace(el, h('p', { class: 'msg error' }, e.message)); }
  }
  function load() {
    section(policy, '/api/v1/policy', (p) => replace(policy,
      h('p', {}, `Version ${p.version ?? p.policy_version ?? '—'}`, p.enacted_at ? `, enacted ${when(p.enacted_at)}` : ''),
      Array.isArray(p.summary) ? h('ul', {}, p.summary.map((t) => h('li', {}, t)))
        : h('p', {}, String(p.summary || '')),
      h('details', {}, h('summary', {}, 'as TOML'), h('pre', {}, p.toml || ''))));
    section(members, '/api/v1/members', (m) => replace(members, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Peer id'))),
      h('tbody', {}, (m.members || []).map((x) => h('tr', {}, h('td', {}, x.name), h('td', { class: 'mono' }, x.peer_id)))))));
    section(proposals, '/api/v1/proposals', (list) => replace(proposals, list.length ? h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Proposal'), h('th', {}, 'By'), h('th', {}, 'Closes'), h('th', {}, 'Tally'))),
      h('tbody', {}, list.slice().sort((a, b) => b.closes - a.closes).map((p) => h('tr', {},
        h('td', {}, p.summary || p.kind, h('div', { class: 'muted mono' }, short(p.id))),
        h('td', {}, p.proposer_name || short(p.proposer)),
        h('td', {}, when(p.closes), p.enacted ? h('div', { class: 'ok' }, 'enacted') : null),
        h('td', {}, tally(p.tally), h('div', { class: 'muted' }, `${(p.ballots || []).length} ballot(s)`)))))) :
      h('p', { class: 'muted' }, 'No proposal yet.')));
    section(audit, '/api/v1/governance/audit', (a) => replace(audit,
      h('p', { class: a.ok ? 'ok' : 'bad' }, a.ok ? 'Last audit: the log verifies.' : 'Last audit: the log does NOT verify.'),
      h('p', {}, a.summary || '', ` (${a.entries} entries)`)));
    if (cursors.length === 1) drawLog();  // on the newest page, new entries show up; an older page stays put
  }
  load();
  return function update(s, keys) { if (keys.includes('governance')) load(); };
}

function tally(t) {
  if (!t || typeof t !== 'object') return '—';
  if (t.summary) return t.summary;  // the tally in words, as the CLI prints it
  const parts = Object.entries(t).filter(([, v]) => typeof v !== 'object').map(([k, v]) => `${k}: ${v}`);
  return parts.join(' · ');
}
