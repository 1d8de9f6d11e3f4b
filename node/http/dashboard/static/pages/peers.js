import { api } from '../api.js';
import { h, replace } from '../dom.js';

export function render(main, state) {
  const list = h('div', { id: 'peer-list' });
  const msg = h('p', { class: 'msg', role: 'status', id: 'connect-msg' });
  const addr = h('input', { id: 'peer-addr', name: 'addr', size: 70, required: true,
                            placeholder: '/ip4/192.0.2.1/tcp/4001/p2p/12D3KooW…' });
  const button = h('button', { type: 'submit' }, 'Connect');
  main.append(h('h1', {}, 'Peers'),
    h('form', { class: 'inline', id: 'connect', onsubmit: async (e) => {
      e.preventDefault();
      button.disabled = true; msg.className = 'msg'; msg.textContent = 'Connecting…';
      try {
        const r = await api('POST', '/api/v1/peers', { addr: addr.value.trim() });
        msg.textContent = `Connected to ${r.peer_id}.`;
        addr.value = '';
      } catch (err) { msg.className = 'msg error'; msg.textContent = err.message; }
      button.disabled = false;
    } }, h('label', {}, 'Peer address (multiaddr ending in /p2p/<peer id>)', addr), button),
    msg, h('h2', {}, 'Connected'), list);
  return function update(s, keys) {
    if (!keys.includes('peers')) return;
    const peers = s.peers || [];
    replace(list, peers.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Peer id'), h('th', {}, 'Addresses'))),
      h('tbody', {}, peers.map((p) => h('tr', { 'data-peer': p.peer_id }, h('td', { class: 'mono' }, p.peer_id),
        h('td', {}, (p.addrs || []).map((a) => h('div', { class: 'mono' }, a))))))) :
      h('p', { class: 'muted' }, 'No peer is connected.'));
  };
}
