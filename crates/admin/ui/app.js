// streamgate's dashboard: reads the Admin API and the control API (under /ui/control) with the
// key the user gave, which stays in this tab's sessionStorage, and writes only through the Admin
// API, so a viewer key gives a read-only page.
import { bytes, drawSpread, drawTimeline, escape, sample } from "./view.js";

const ADMIN = "/apisix/admin";
const CONTROL = "/ui/control/v1";
const REFRESH_MS = 2000;
const EXPIRY_WARN_DAYS = 30;
const TEMPLATES = {
  stream_routes: { server_port: 9100, plugins: { "mqtt-proxy": { protocol_name: "MQTT", protocol_level: 4 } },
    upstream_id: "1" },
  upstreams: { type: "chash", key: "mqtt_client_id", nodes: [{ host: "127.0.0.1", port: 1883, weight: 1 }] },
  ssls: { cert: "-----BEGIN CERTIFICATE-----\n…", key: "-----BEGIN PRIVATE KEY-----\n…", snis: ["broker.example.com"] },
};

const state = { key: null, role: null, timer: null, objects: {}, armed: null };
const ARM_MS = 3000;
const $ = (id) => document.getElementById(id);

// One call with the key; resolves to {status, body} with the body parsed when it is JSON.
async function call(method, path, body) {
  const init = { method, headers: { "X-API-KEY": state.key } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch (_) { /* nginx pages are HTML */ }
  return { status: response.status, body: parsed };
}

function errorText(reply) {
  const body = reply.body;
  if (body && typeof body === "object" && "error_msg" in body) return body.error_msg;
  return typeof body === "string" ? body : JSON.stringify(body);
}

// --- Login: the key's role is what the Admin API says of a write that changes nothing. ---

async function login(key) {
  state.key = key;
  const probe = await call("POST", `${ADMIN}/schema/validate/stream_routes`, {});
  if (probe.status === 401) {
    const description = probe.body && probe.body.description;
    if (description !== "invalid method for role viewer") {
      state.key = null;
      throw new Error(`${errorText(probe)}: ${description || ""}`);
    }
    state.role = "viewer";
  } else {
    state.role = "admin";
  }
  sessionStorage.setItem("streamgate-key", key);
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("logout").hidden = false;
  $("role").textContent = state.role === "viewer" ? "viewer (read-only)" : "admin";
  document.body.classList.toggle("viewer", state.role === "viewer");
  await refresh();
  state.timer = setInterval(refresh, REFRESH_MS);
}

function logout() {
  sessionStorage.removeItem("streamgate-key");
  location.reload();
}

// --- Polling ---

async function list(kind) {
  const reply = await call("GET", `${ADMIN}/${kind}`);
  if (reply.status !== 200) throw new Error(`${kind}: ${reply.status} ${errorText(reply)}`);
  return (reply.body.list || []).map((item) => ({ id: item.key.split("/").pop(), value: item.value }));
}

async function control(path) {
  const reply = await call("GET", `${CONTROL}/${path}`);
  if (reply.status !== 200) throw new Error(`control API ${path}: ${reply.status} ${errorText(reply)}`);
  return reply.body;
}

async function refresh() {
  try {
    const [routes, upstreams, ssls, stats, certificates, errors] = await Promise.all([
      list("stream_routes"), list("upstreams"), list("ssls"),
      control("stats"), control("certificates"), control("config/errors"),
    ]);
    state.objects = { stream_routes: routes, upstreams, ssls };
    const now = Date.now();
    const rates = sample(stats, now);
    $("revision").textContent = `revision ${stats.revision}`;
    renderErrors(errors);
    renderRoutes(routes, stats);
    renderUpstreams(upstreams, routes, stats, rates);
    drawSpread($("spread"), stats);
    const last = drawTimeline($("timeline"));
    $("now-sessions").textContent = last ? last.sessions.toFixed(1) : "–";
    $("now-bytes").textContent = last ? bytes(Math.round(last.bytes)) : "–";
    renderSsls(ssls, certificates);
    $("poll-error").textContent = "";
  } catch (e) {
    $("poll-error").textContent = `Refresh failed: ${e.message}`;
  }
}

// --- Rendering ---

function renderErrors(errors) {
  $("banner").hidden = errors.total === 0;
  $("config-errors").innerHTML = errors.errors
    .map((e) => `<li><code>${escape(e.key)}</code>: ${escape(e.reason)}</li>`).join("");
}

function editButtons(path, kind, id) {
  if (state.role !== "admin") return "";
  const armed = state.armed && state.armed.path === path && Date.now() < state.armed.until;
  return `<td class="edit-control"><button class="edit" data-kind="${kind}" data-id="${escape(id)}">Edit</button>
    <button class="delete${armed ? " armed" : ""}" data-path="${escape(path)}">${armed ? "Really delete?" : "Delete"}</button></td>`;
}

function routeMatch(route) {
  const parts = [];
  for (const field of ["server_addr", "server_port", "remote_addr", "sni"]) {
    if (route[field] !== undefined) parts.push(`${field}=${route[field]}`);
  }
  return parts.length ? parts.join(", ") : "every connection";
}

function renderRoutes(routes, stats) {
  const figures = new Map(stats.routes.map((r) => [r.id, r]));
  $("routes").innerHTML = routes.map(({ id, value }) => {
    const live = figures.get(id) || {};
    const upstream = value.upstream_id !== undefined ? `upstream ${value.upstream_id}`
      : value.upstream ? "inline" : "none";
    return `<tr data-route-id="${escape(id)}"><td>${escape(id)}</td><td>${escape(value.name)}</td>
      <td>${escape(routeMatch(value))}</td><td>${escape(Object.keys(value.plugins || {}).join(", "))}</td>
      <td>${escape(upstream)}</td><td class="num open">${live.active_sessions ?? "–"}</td>
      <td class="num">${bytes(live.bytes_to_upstream || 0)}</td><td class="num">${bytes(live.bytes_to_client || 0)}</td>
      ${editButtons(`${ADMIN}/stream_routes/${id}`, "stream_routes", id)}</tr>`;
  }).join("");
}

// The nodes of a stored upstream in the array form, whichever form it was stored in.
function nodeList(nodes) {
  if (Array.isArray(nodes)) return nodes.map((n) => ({ ...n }));
  return Object.entries(nodes || {}).map(([address, weight]) => {
    const at = address.lastIndexOf(":");
    return { host: address.slice(0, at), port: Number(address.slice(at + 1)), weight };
  });
}

const bare = (host) => String(host).replace(/^\[|\]$/g, "");

// The stored object without the fields the store adds.
function stored(value) {
  const body = { ...value };
  for (const field of ["id", "create_time", "update_time"]) delete body[field];
  return body;
}

// Every upstream the configuration holds: named ones and routes' inline ones, each with how its
// node list is written: PATCH of a named upstream's `nodes`, or the whole route again (stream
// routes take no PATCH).
function configuredUpstreams(upstreams, routes) {
  const named = upstreams.map(({ id, value }) => ({ key: `upstreams/${id}`, title: `upstream ${id}`,
    name: value.name, nodes: nodeList(value.nodes),
    write: (nodes) => call("PATCH", `${ADMIN}/upstreams/${id}/nodes`, nodes) }));
  const inline = routes.filter(({ value }) => value.upstream).map(({ id, value }) => ({
    key: `stream_routes/${id}`, title: `route ${id} (inline)`, name: value.upstream.name,
    nodes: nodeList(value.upstream.nodes),
    write: (nodes) => call("PUT", `${ADMIN}/stream_routes/${id}`,
      { ...stored(value), upstream: { ...value.upstream, nodes } }) }));
  return named.concat(inline);
}

function renderUpstreams(upstreams, routes, stats, rates) {
  const compiled = new Map(stats.upstreams.map((up) => [up.key, up]));
  $("upstreams").innerHTML = configuredUpstreams(upstreams, routes).map((up) => {
    const live = compiled.get(up.key);
    const checks = live && live.checks
      ? [live.checks.active && "active", live.checks.passive && "passive"].filter(Boolean).join(" + ") : "none";
    const rows = up.nodes.map((node, index) => {
      const address = `${node.host}:${node.port}`;
      const figures = live && live.nodes.find((n) => bare(n.host) === bare(node.host) && n.port === node.port);
      const draining = Boolean(node.metadata && node.metadata.draining);
      const health = draining ? `<span class="draining">draining</span>`
        : !figures ? `<span class="muted">not in use</span>`
        : figures.health ? `<span class="health-${escape(figures.health.status)}">${escape(figures.health.status)}</span>`
        : `<span class="muted">unchecked</span>`;
      const rate = figures ? (rates.get(`${up.key} ${figures.host}:${figures.port}`) || 0).toFixed(1) : "–";
      const action = state.role !== "admin" ? ""
        : `<td class="edit-control"><button class="${draining ? "undrain" : "drain"}" data-upstream="${escape(up.key)}"
            data-index="${index}">${draining ? "Undrain" : "Drain"}</button></td>`;
      return `<tr data-node="${escape(address)}"><td>${escape(address)}</td><td class="num">${escape(node.weight)}</td>
        <td class="health">${health}</td><td class="num active">${figures ? figures.active_sessions : 0}</td>
        <td class="num rate">${rate}</td><td class="num">${figures ? bytes(figures.bytes_to_upstream) : "–"}</td>
        <td class="num">${figures ? bytes(figures.bytes_to_client) : "–"}</td>
        <td class="num failures">${figures ? figures.connect_failures : "–"}</td>${action}</tr>`;
    }).join("");
    const add = state.role !== "admin" ? "" : `<form class="add-node edit-control" data-upstream="${escape(up.key)}">
        <input name="address" placeholder="host:port" required><input name="weight" type="number" value="1" min="0">
        <button type="submit">Add node</button></form>`;
    const [kind, id] = up.key.split("/");
    const edit = kind === "upstreams" ? editButtons(`${ADMIN}/upstreams/${id}`, "upstreams", id) : "";
    return `<div class="upstream" data-upstream-key="${escape(up.key)}">
      <h3>${escape(up.title)} ${up.name ? `· ${escape(up.name)}` : ""}
        <span class="muted">checks: ${escape(checks)}</span></h3>
      <table><thead><tr><th>node</th><th>weight</th><th>health</th><th>open</th><th>new/s</th>
        <th>bytes in</th><th>bytes out</th><th>connect failures</th><th class="edit-control"></th></tr></thead>
        <tbody>${rows}</tbody></table>
      ${add}<table><tbody><tr>${edit}</tr></tbody></table></div>`;
  }).join("");
}

function renderSsls(ssls, certificates) {
  const compiled = new Map(certificates.ssls.map((s) => [s.id, s]));
  const now = Date.now() / 1000;
  $("ssls").innerHTML = ssls.map(({ id, value }) => {
    const live = compiled.get(id);
    const leaf = live && live.certificates[0];
    const days = leaf ? Math.floor((leaf.not_after - now) / 86400) : null;
    const expiring = days !== null && days < EXPIRY_WARN_DAYS;
    const expiry = leaf ? `${new Date(leaf.not_after * 1000).toISOString().slice(0, 10)} (${days} days)`
      : `<span class="muted">not in use</span>`;
    const snis = live ? live.snis : value.snis || (value.sni ? [value.sni] : []);
    return `<tr data-ssl-id="${escape(id)}" class="${expiring ? "expiring" : ""}"><td>${escape(id)}</td>
      <td>${escape(value.type || "server")}</td><td>${escape(snis.join(", "))}</td>
      <td>${escape(leaf ? leaf.subject : "")}</td><td>${escape(leaf ? leaf.issuer : "")}</td>
      <td class="expiry">${expiry}</td>${editButtons(`${ADMIN}/ssls/${id}`, "ssls", id)}</tr>`;
  }).join("");
}

// --- Editing, through the Admin API only ---

function openEditor(kind, id) {
  const existing = id && (state.objects[kind] || []).find((o) => o.id === id);
  const body = existing ? stored(existing.value) : TEMPLATES[kind];
  $("edit-kind").value = kind;
  $("edit-id").value = id || "";
  $("edit-body").value = JSON.stringify(body, null, 2);
  $("editor-title").textContent = existing ? `Edit ${kind}/${id}` : `New ${kind}`;
  $("edit-error").textContent = "";
  // The Admin API never returns private keys.
  $("edit-status").textContent = kind === "ssls" && existing
    ? 'The private key is not shown: add it again as "key" to save.' : "";
  $("editor").hidden = false;
  $("editor").scrollIntoView();
}

async function save(event) {
  event.preventDefault();
  const kind = $("edit-kind").value;
  const id = $("edit-id").value.trim();
  const reply = id ? await call("PUT", `${ADMIN}/${kind}/${encodeURIComponent(id)}`, $("edit-body").value)
    : await call("POST", `${ADMIN}/${kind}`, $("edit-body").value);
  if (reply.status >= 200 && reply.status < 300) {
    $("edit-error").textContent = "";
    $("edit-status").textContent = `Saved ${reply.body.key || ""} (${reply.status})`;
    $("editor").hidden = true;
    await refresh();
  } else {
    $("edit-status").textContent = `The Admin API answered ${reply.status}:`;
    $("edit-error").textContent = errorText(reply);
  }
}

// Deleting takes a second click within three seconds (kept across refreshes, which redraw the
// button).
async function remove(button) {
  const path = button.dataset.path;
  if (!(state.armed && state.armed.path === path && Date.now() < state.armed.until)) {
    state.armed = { path, until: Date.now() + ARM_MS };
    button.classList.add("armed");
    button.textContent = "Really delete?";
    setTimeout(() => {
      if (state.armed && state.armed.path === path && Date.now() >= state.armed.until) refresh();
    }, ARM_MS + 10);
    return;
  }
  state.armed = null;
  const reply = await call("DELETE", path);
  $("poll-error").textContent = reply.status === 200 ? "" : `Delete failed (${reply.status}): ${errorText(reply)}`;
  await refresh();
}

// Writes an upstream's whole node list, after `change` edited it.
async function writeNodes(upstreamKey, change) {
  const up = configuredUpstreams(state.objects.upstreams, state.objects.stream_routes)
    .find((u) => u.key === upstreamKey);
  if (!up) return;
  const nodes = up.nodes;
  const problem = change(nodes);
  if (problem) { $("poll-error").textContent = problem; return; }
  const reply = await up.write(nodes);
  $("poll-error").textContent = reply.status === 200 ? "" : `The Admin API answered ${reply.status}: ${errorText(reply)}`;
  await refresh();
}

function setDraining(button, draining) {
  const index = Number(button.dataset.index);
  return writeNodes(button.dataset.upstream, (nodes) => {
    const node = nodes[index];
    node.metadata = { ...(node.metadata || {}), draining };
    if (!draining) delete node.metadata.draining;
    if (Object.keys(node.metadata).length === 0) delete node.metadata;
  });
}

function addNode(form) {
  const address = form.elements.address.value.trim();
  const at = address.lastIndexOf(":");
  const port = Number(address.slice(at + 1));
  return writeNodes(form.dataset.upstream, (nodes) => {
    if (at <= 0 || !Number.isInteger(port)) return `"${address}" is not host:port`;
    nodes.push({ host: bare(address.slice(0, at)), port, weight: Number(form.elements.weight.value) });
    return null;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    login($("key").value).catch((e) => { $("login-error").textContent = e.message; });
  });
  $("logout").addEventListener("click", logout);
  $("editor-form").addEventListener("submit", save);
  $("edit-cancel").addEventListener("click", () => { $("editor").hidden = true; });
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || state.role !== "admin") return;
    if (button.classList.contains("new")) openEditor(button.dataset.kind, null);
    else if (button.classList.contains("edit")) openEditor(button.dataset.kind, button.dataset.id);
    else if (button.classList.contains("delete")) remove(button);
    else if (button.classList.contains("drain")) setDraining(button, true);
    else if (button.classList.contains("undrain")) setDraining(button, false);
  });
  document.addEventListener("submit", (event) => {
    if (!event.target.classList.contains("add-node")) return;
    event.preventDefault();
    addNode(event.target);
  });
  const saved = sessionStorage.getItem("streamgate-key");
  if (saved) login(saved).catch(() => sessionStorage.removeItem("streamgate-key"));
});
