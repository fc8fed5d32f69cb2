// The dashboard's figures turned into text and SVG, and the history its time chart keeps.

const HISTORY_MS = 15 * 60 * 1000;

export function escape(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

// What the time chart keeps: one point per refresh over HISTORY_MS, and the figures of the
// previous refresh.
const history = { points: [], previous: null };

// Per node new sessions/s since the last poll, and the totals kept for the time chart.
export function sample(stats, now) {
  const totals = { sessions: 0, bytes: 0 };
  const nodes = new Map();
  for (const up of stats.upstreams) {
    for (const node of up.nodes) {
      const id = `${up.key} ${node.host}:${node.port}`;
      nodes.set(id, node);
      totals.sessions += node.sessions;
      totals.bytes += node.bytes_to_upstream + node.bytes_to_client;
    }
  }
  const rates = new Map();
  const previous = history.previous;
  if (previous) {
    const seconds = Math.max((now - previous.at) / 1000, 0.001);
    for (const [id, node] of nodes) {
      const before = previous.nodes.get(id);
      rates.set(id, before ? Math.max(node.sessions - before.sessions, 0) / seconds : 0);
    }
    history.points.push({
      at: now,
      sessions: Math.max(totals.sessions - previous.totals.sessions, 0) / seconds,
      bytes: Math.max(totals.bytes - previous.totals.bytes, 0) / seconds,
    });
    history.points = history.points.filter((point) => now - point.at <= HISTORY_MS);
  }
  history.previous = { at: now, nodes, totals };
  return rates;
}

export function drawSpread(svg, stats) {
  const bars = [];
  for (const up of stats.upstreams) {
    for (const node of up.nodes) bars.push({ label: `${node.host}:${node.port}`, value: node.active_sessions });
  }
  const height = Math.max(bars.length * 22 + 8, 30);
  const max = Math.max(1, ...bars.map((b) => b.value));
  svg.setAttribute("viewBox", `0 0 1100 ${height}`);
  svg.innerHTML = bars.map((bar, i) => {
    const width = Math.round((bar.value / max) * 760);
    const y = 4 + i * 22;
    return `<text x="0" y="${y + 13}">${escape(bar.label)}</text>
      <rect class="bar" data-node="${escape(bar.label)}" x="220" y="${y}" width="${width}" height="16"></rect>
      <text x="${226 + width}" y="${y + 13}">${bar.value}</text>`;
  }).join("") || `<text x="0" y="20">no upstream nodes</text>`;
}

// The time chart of the points `sample` kept; returns the latest point.
export function drawTimeline(svg) {
  const points = history.points;
  const [width, height, top] = [1100, 115, 16];
  const now = Date.now();
  const x = (at) => (width * (1 - (now - at) / HISTORY_MS)).toFixed(1);
  const line = (field, cls) => {
    const max = Math.max(1, ...points.map((p) => p[field]));
    const coords = points.map((p) => `${x(p.at)},${(top + height - (p[field] / max) * height).toFixed(1)}`);
    return `<polyline class="${cls}" points="${coords.join(" ")}"></polyline>`;
  };
  const peak = (field, format) => format(Math.max(0, ...points.map((p) => p[field])));
  svg.innerHTML = `<line class="axis" x1="0" y1="${top + height}" x2="${width}" y2="${top + height}"></line>
    ${line("sessions", "line-sessions")}${line("bytes", "line-bytes")}
    <text x="0" y="${top + height + 12}">−15 min</text><text x="${width - 24}" y="${top + height + 12}">now</text>
    <text x="0" y="${top}">peak ${peak("sessions", (v) => v.toFixed(1))} sessions/s, ${peak("bytes", (v) => bytes(Math.round(v)))}/s</text>`;
  return points[points.length - 1];
}
