/**
 * Charts for `make bench`, drawn as SVG by hand (no chart library: those that download a binary at
 * install fail on these machines) and turned into PNG by Debian's rsvg-convert (librsvg2-bin).
 */
import { writeFileSync } from 'node:fs';
import { run } from './proc.mjs';

const W = 760;
const H = 420;
const M = { l: 70, r: 20, t: 40, b: 60 };
const LEGEND = 240;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

/** A "nice" upper bound and step for an axis from 0 to max. */
function axis(max) {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => s >= raw);
  return { top: Math.ceil(max / step) * step, step };
}

function frame(title, xLabel, yLabel, xTop, xStep, yTop, yStep) {
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const x = (v) => M.l + (v / xTop) * pw;
  const y = (v) => M.t + ph - (v / yTop) * ph;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  for (let v = 0; v <= yTop + 1e-9; v += yStep) {
    out.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${M.l - 6}" y="${y(v) + 4}" text-anchor="end">${+v.toFixed(3)}</text>`);
  }
  if (xStep) for (let v = 0; v <= xTop + 1e-9; v += xStep) out.push(`<text x="${x(v)}" y="${H - M.b + 16}" text-anchor="middle">${+v.toFixed(3)}</text>`);
  out.push(`<line x1="${M.l}" x2="${M.l}" y1="${M.t}" y2="${H - M.b}" stroke="black"/><line x1="${M.l}" x2="${W - M.r}" y1="${H - M.b}" y2="${H - M.b}" stroke="black"/>`);
  out.push(`<text x="${M.l + pw / 2}" y="${H - 18}" text-anchor="middle">${esc(xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${M.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  return { out, x, y };
}

/** Lines: series [{label, points: [[x, y], ...]}]. */
export function lineChart({ title, xLabel, yLabel, series }) {
  const pts = series.flatMap((s) => s.points);
  const xa = axis(Math.max(...pts.map((p) => p[0])));
  const ya = axis(Math.max(...pts.map((p) => p[1])));
  const { out, x, y } = frame(title, xLabel, yLabel, xa.top, xa.step, ya.top, ya.step);
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const c = COLORS[i % COLORS.length];
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="1.5" points="${s.points.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(' ')}"/>`);
    out.push(`<rect x="${M.l + 12}" y="${M.t + 8 + i * 18}" width="14" height="4" fill="${c}"/><text x="${M.l + 32}" y="${M.t + 14 + i * 18}">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Stacked bars: bars [{label, parts: [{label, value}]}]; part labels share colours across bars. */
export function barChart({ title, yLabel, bars }) {
  // headroom above the tallest bar for its total
  const ya = axis(1.08 * Math.max(...bars.map((b) => b.parts.reduce((a, p) => a + p.value, 0))));
  const { out, y } = frame(title, '', yLabel, 1, 0, ya.top, ya.step);
  const names = [...new Set(bars.flatMap((b) => b.parts.map((p) => p.label)))];
  // the legend keeps the right-hand LEGEND pixels to itself, clear of the bars
  const slot = (W - M.l - M.r - LEGEND) / bars.length;
  bars.forEach((b, i) => {
    const x0 = M.l + slot * i + slot * 0.25;
    let base = 0;
    for (const p of b.parts) {
      const c = COLORS[names.indexOf(p.label) % COLORS.length];
      out.push(`<rect x="${x0}" y="${y(base + p.value)}" width="${slot * 0.5}" height="${Math.max(0, y(base) - y(base + p.value))}" fill="${c}"/>`);
      base += p.value;
    }
    out.push(`<text x="${x0 + slot * 0.25}" y="${y(base) - 6}" text-anchor="middle">${esc(`${base.toFixed(0)} ms`)}</text>`);
    out.push(`<text x="${x0 + slot * 0.25}" y="${H - M.b + 16}" text-anchor="middle">${esc(b.label)}</text>`);
  });
  names.forEach((n, i) => {
    out.push(`<rect x="${W - M.r - LEGEND + 10}" y="${M.t + 8 + i * 18}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/><text x="${W - M.r - LEGEND + 28}" y="${M.t + 18 + i * 18}">${esc(n)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Write svg to file.svg and file.png (rsvg-convert). */
export async function writeChart(file, svg) {
  writeFileSync(`${file}.svg`, svg);
  await run('rsvg-convert', ['-o', `${file}.png`, `${file}.svg`]);
}
