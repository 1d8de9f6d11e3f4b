import { api } from '../api.js';
import { h, replace, bytes, progress } from '../dom.js';

export function render(main, state) {
  const field = (id, label, attrs = {}) => h('label', {}, label, h('input', { id, name: id, ...attrs }));
  const msg = h('p', { class: 'msg', role: 'status', id: 'publish-msg' });
  const jobs = h('div', { id: 'jobs' });
  const button = h('button', { type: 'submit' }, 'Publish');
  const form = h('form', { class: 'inline', id: 'publish', onsubmit: async (e) => {
    e.preventDefault();
    const v = (id) => form.querySelector(`#${id}`).value.trim();
    button.disabled = true; msg.className = 'msg'; msg.textContent = 'Publishing…';
    try {
      const r = await api('POST', '/api/v1/datasets', {
        path: v('pub-path'), title: v('pub-title'), licence: v('pub-licence'), description: v('pub-description'),
      });
      msg.replaceChildren(`Published version ${r.version}: `, h('a', { href: `#/datasets/${encodeURIComponent(r.id)}` }, r.id));
    } catch (err) { msg.className = 'msg error'; msg.textContent = err.message; }
    button.disabled = false;
  } },
    field('pub-path', 'Path on the node’s machine', { required: true, size: 40, placeholder: '/srv/data/survey' }),
    field('pub-title', 'Title', { required: true }),
    field('pub-licence', 'Licence (SPDX)', { required: true, placeholder: 'CC-BY-4.0' }),
    field('pub-description', 'Description'), button);
  main.append(h('h1', {}, 'Operations'), h('h2', {}, 'Publish a file or folder'),
    h('p', { class: 'muted' }, 'The path is read by the node, on its own machine, within the folders its configuration allows.'),
    form, msg, h('h2', {}, 'Publishing jobs'), jobs);
  return function update(s, keys) {
    if (!keys.includes('publishing')) return;
    const list = (s.publishing || []).slice().reverse();
    replace(jobs, list.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Path'), h('th', {}, 'State'), h('th', {}, 'Progress'))),
      h('tbody', {}, list.map((j) => h('tr', { 'data-job': j.id }, h('td', { class: 'mono' }, j.path), h('td', { class: 'job-state' }, j.state),
        h('td', {}, progress(j.bytes_done, j.bytes_total, `publishing ${j.path}`),
          h('div', { class: 'muted' }, `${bytes(j.bytes_done)} of ${bytes(j.bytes_total)}, ${j.files_done}/${j.files_total} files`)))))) :
      h('p', { class: 'muted' }, 'No publishing since the node started.'));
  };
}
