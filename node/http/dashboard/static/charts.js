// A line chart as inline SVG: points [[unix time, value], ...] over the last hour. Drawn with DOM calls
// (no style attributes, which the Content-Security-Policy forbids; the stylesheet colours the classes).

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

export function lineChart(points, { label, format, now }) {
  const W = 600, H = 140, L = 64, B = 18, T = 8;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label,
                         preserveAspectRatio: 'none' });
  svg.append(s('title', {}, label));
  const t1 = now || Date.now() / 1000, t0 = t1 - 3600;
  const max = Math.max(1, ...points.map((p) => p[1]));
  const x = (t) => L + (W - L - 4) * (t - t0) / 3600;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  svg.append(s('line', { class: 'axis', x1: L, y1: H - B, x2: W, y2: H - B }));
  svg.append(s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
  svg.append(s('text', { x: 2, y: T + 10 }, format(max)));
  svg.append(s('text', { x: 2, y: H - B }, format(0)));
  svg.append(s('text', { x: L, y: H - 4 }, '1 hour ago'));
  svg.append(s('text', { x: W - 30, y: H - 4 }, 'now'));
  const shown = points.filter((p) => p[0] >= t0);
  if (shown.length) {
    const d = shown.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
    svg.append(s('polyline', { class: 'line', points: d }));
  } else {
    svg.append(s('text', { x: L + 10, y: H / 2 }, 'no samples yet'));
  }
  return svg;
}
