// The Prism dashboard. Plain JavaScript, no dependencies. Everything a
// guest or a server wrote is set as text (textContent), never as markup.
"use strict";

const TOKEN_KEY = "prism-token";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY);
let timer = null;
let job = null; // the job page's state

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path) {
  const response = await fetch(path, { headers: { authorization: "Bearer " + token } });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = { error: response.statusText };
  }
  if (!response.ok) throw new Refused(response.status, body.error || response.statusText);
  return body;
}

function ms(us) {
  return us ? new Date(us / 1000).toLocaleTimeString() : "";
}
function dur(fromUs, toUs) {
  if (!fromUs || !toUs || toUs < fromUs) return "";
  const d = (toUs - fromUs) / 1000;
  return d < 1000 ? d.toFixed(1) + " ms" : (d / 1000).toFixed(2) + " s";
}
function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function show(view) {
  for (const id of ["login-view", "nodes-view", "jobs-view", "job-view", "tenants-view"]) {
    $(id).hidden = id !== view;
  }
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", view.startsWith(a.id.replace("nav-", "")));
  }
  $("error").textContent = "";
}

function failed(e) {
  if (e instanceof Refused && e.status === 401) {
    logout("Your token was refused: " + e.message);
    return;
  }
  $("error").textContent = e.message;
}

function logout(message) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("nav").hidden = true;
  $("session").hidden = true;
  show("login-view");
  $("login-error").textContent = message || "";
}

async function login() {
  const value = $("login-token").value.trim();
  if (!value) return;
  token = value;
  try {
    const who = await api("/api/session");
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login-token").value = "";
    $("login-error").textContent = "";
    if (!location.hash || location.hash === "#/login") location.hash = "#/jobs";
    else route();
    return who;
  } catch (e) {
    logout(e.message);
  }
}

async function route() {
  if (timer) { clearTimeout(timer); timer = null; }
  if (!token) { logout(); return; }
  try {
    const who = await api("/api/session");
    $("who").textContent = `${who.subject} (${who.role}, tenant ${who.tenant})`;
    $("nav").hidden = false;
    $("session").hidden = false;
  } catch (e) { failed(e); return; }
  const hash = location.hash || "#/jobs";
  const parts = hash.slice(2).split("/");
  try {
    if (parts[0] === "nodes") await nodes();
    else if (parts[0] === "tenants") await tenants();
    else if (parts[0] === "jobs" && parts[1]) await openJob(decodeURIComponent(parts[1]));
    else await jobs();
  } catch (e) { failed(e); }
}

async function nodes() {
  show("nodes-view");
  const list = await api("/api/nodes");
  const body = $("nodes-table").tBodies[0];
  clear(body);
  for (const n of list) {
    body.append(el("tr", {},
      el("td", {}, n.node_id), el("td", {}, n.state), el("td", {}, n.total), el("td", {}, n.available),
      el("td", {}, n.running_tasks), el("td", {}, n.pending_tasks), el("td", {}, n.executed_tasks),
      el("td", {}, n.last_seen_ms ? n.last_seen_ms + " ms ago" : "now"), el("td", {}, n.gpus.join("; "))));
  }
  timer = setTimeout(route, 3000);
}

async function jobs() {
  show("jobs-view");
  const list = await api("/api/jobs");
  const body = $("jobs-table").tBodies[0];
  clear(body);
  for (const j of list) {
    const link = el("a", { href: "#/jobs/" + encodeURIComponent(j.id) }, j.id);
    body.append(el("tr", {},
      el("td", {}, link), el("td", {}, el("span", { class: "state " + j.state }, j.state)),
      el("td", {}, j.entry), el("td", {}, j.tenant), el("td", {}, j.namespace),
      el("td", {}, new Date(j.submitted_at_ms).toLocaleString()),
      el("td", {}, j.ended_at_ms ? dur(j.submitted_at_ms * 1000, j.ended_at_ms * 1000) : ""),
      el("td", {}, j.error_kind ? j.error_kind + ": " + j.error_message : "")));
  }
  timer = setTimeout(route, 3000);
}

async function tenants() {
  show("tenants-view");
  const list = await api("/api/tenants");
  const body = $("tenants-table").tBodies[0];
  clear(body);
  $("tenants-note").textContent = list.length ? "Use across the cluster against each quota (unlimited where none is set)."
    : "Your token may not read tenant records (tenant admins and cluster admins may).";
  const of = (used, quota, fmt) => (fmt ? fmt(used) : used) + (quota == null ? "" : " / " + (fmt ? fmt(quota) : quota));
  for (const t of list) {
    const q = t.quotas || {};
    const u = t.usage;
    body.append(el("tr", {},
      el("td", {}, t.name), el("td", {}, t.weight), el("td", {}, of(u.jobs, q.jobs)),
      el("td", {}, of(u.cpus, q.cpus)), el("td", {}, of(u.memory, q.memory, bytes)),
      el("td", {}, of(u.gpus, q.gpus)), el("td", {}, of(u.object_store_bytes, q.object_store_bytes, bytes)),
      el("td", {}, of(u.actors, q.actors)), el("td", {}, of(u.queued_tasks, q.queued_tasks))));
  }
  timer = setTimeout(route, 3000);
}

// ---- the job page ----

async function openJob(id) {
  show("job-view");
  if (!job || job.id !== id) {
    job = { id, logFrom: 0, view: null, selected: null, data: null };
    clear($("logs"));
    $("task-detail").hidden = true;
    $("state-filter").value = "";
    $("cause-filter").value = "";
    $("task-search").value = "";
  }
  await refreshJob();
}

async function refreshJob() {
  if (timer) { clearTimeout(timer); timer = null; }
  const id = job.id;
  const state = $("state-filter").value;
  const cause = $("cause-filter").value;
  const query = `?state=${encodeURIComponent(state)}&cause=${encodeURIComponent(cause)}`;
  const data = await api("/api/jobs/" + encodeURIComponent(id) + query);
  if (!job || job.id !== id) return;
  job.data = data;
  const j = data.job;
  $("job-id").textContent = j.id;
  $("job-state").textContent = j.state;
  $("job-state").className = "state " + j.state;
  $("job-summary").textContent = `${j.entry} in ${j.tenant}/${j.namespace}, submitted by ${j.submitted_by} at ` +
    new Date(j.submitted_at_ms).toLocaleString() + (j.ended_at_ms ? ", took " + dur(j.submitted_at_ms * 1000, j.ended_at_ms * 1000) : "");
  $("job-error").textContent = j.error_kind ? `${j.error_kind}: ${j.error_message}` : "";
  counts(data);
  drawTimeline();
  taskTable(data);
  await logs();
  // Poll while it runs and its page is the one shown.
  const live = (j.state === "running" || j.state === "pending") &&
    location.hash === "#/jobs/" + encodeURIComponent(id);
  if (live) {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => refreshJob().catch(failed), 2000);
  }
}

function counts(data) {
  const box = $("counts");
  clear(box);
  box.append(el("span", { id: "count-all" }, `${data.total} tasks`));
  for (const [state, n] of Object.entries(data.by_state)) {
    box.append(el("span", { id: "count-" + state }, `${n} ${state}`));
  }
  if (data.unrecorded) box.append(el("span", {}, `${data.unrecorded} not recorded`));
  const causes = $("causes");
  clear(causes);
  const select = $("cause-filter");
  const chosen = select.value;
  clear(select);
  select.append(el("option", { value: "" }, "any"));
  for (const [cause, n] of Object.entries(data.by_cause)) {
    causes.append(el("span", { class: "cause", id: "cause-" + cause, onclick: () => {
      $("state-filter").value = "failed";
      $("cause-filter").value = cause;
      refreshJob().catch(failed);
    } }, `${n} × ${cause}`));
    select.append(el("option", { value: cause }, cause));
  }
  select.value = chosen;
}

function taskTable(data) {
  const body = $("tasks-table").tBodies[0];
  clear(body);
  const search = $("task-search").value.trim().toLowerCase();
  let shown = 0;
  for (const t of data.tasks) {
    if (search && !t.function.toLowerCase().includes(search) && !t.task_id.includes(search)) continue;
    const last = t.attempts[t.attempts.length - 1];
    const where = last ? (t.kind === "actor_call" ? last.node + "/actor" : `${last.node}/cpu ${last.slot}`) : "";
    body.append(el("tr", { class: "clickable", "data-task": t.task_id, onclick: () => detail(t) },
      el("td", {}, t.task_id), el("td", {}, t.function), el("td", {}, el("span", { class: "state " + t.state }, t.state)),
      el("td", {}, where), el("td", {}, t.attempts.length), el("td", {}, last ? dur(last.started_us, last.ended_us) : ""),
      el("td", {}, t.error_kind)));
    shown++;
    if (job.selected === t.task_id) detail(t);
  }
  $("tasks-note").textContent = `${shown} shown` + (data.tasks.length < data.total ? ` (the newest ${data.tasks.length} that match)` : "");
}

function detail(t) {
  job.selected = t.task_id;
  $("task-detail").hidden = false;
  $("detail-id").textContent = t.task_id;
  const fields = $("detail-fields");
  clear(fields);
  const add = (k, v) => fields.append(el("dt", {}, k), el("dd", {}, v));
  add("function", `${t.function} (${t.kind})`);
  if (t.actor_id) add("actor", t.actor_id);
  add("state", t.state);
  add("submitted", `${ms(t.submitted_us)} on ${t.node}`);
  add("arguments", `${t.args_bytes} bytes by value`);
  add("depends on", t.depends_on.length ? t.depends_on.join(", ") : "nothing");
  t.attempts.forEach((a) => {
    const blocked = a.blocked.reduce((s, [b, e]) => s + ((e || b) - b), 0);
    add(`attempt ${a.attempt}`, `${a.node}, slot ${a.slot}: waited ${dur(a.queued_us || t.submitted_us, a.started_us)}, ` +
      `ran ${dur(a.started_us, a.ended_us)}, blocked ${(blocked / 1000).toFixed(1)} ms, ${a.outcome || "running"}`);
  });
  $("detail-error").textContent = t.error_kind ? `${t.error_kind}: ${t.error}` : "(none)";
  $("detail-output").textContent = t.output.length ? t.output.join("\n") : "(none)";
}

async function logs() {
  const id = job.id;
  if (job.readingLogs) return;
  job.readingLogs = true;
  try {
    await readLogs(id);
  } finally {
    if (job && job.id === id) job.readingLogs = false;
  }
}

async function readLogs(id) {
  for (let round = 0; round < 20; round++) {
    const page = await api(`/api/jobs/${encodeURIComponent(id)}/logs?from=${job.logFrom}`);
    if (!job || job.id !== id) return;
    const box = $("logs");
    for (const [fn, source, text] of page.lines) {
      box.append(document.createTextNode(`[${fn}] ${source}: ${text}\n`));
    }
    if (page.next === job.logFrom || page.lines.length === 0) return;
    job.logFrom = page.next;
  }
}

// ---- the timeline ----

const ROW = 16;
const LABEL = 170;
const COLORS = { ok: "#3d7dd8", running: "#f0a020" };

function rowsOf(data) {
  const nodes = [];
  const rows = new Map(); // node -> Set(row)
  const add = (node, row) => {
    if (!rows.has(node)) { rows.set(node, new Set()); nodes.push(node); }
    rows.get(node).add(row);
  };
  for (const [, node, row] of data.attempts) add(node, row);
  for (const [node] of data.waits) add(node, "waiting");
  const order = (r) => r.startsWith("cpu ") ? Number(r.slice(4)) : r.startsWith("gpu ") ? 1e6 : r === "waiting" ? 3e6 : 2e6;
  const list = [];
  for (const node of nodes) {
    const sorted = [...rows.get(node)].sort((a, b) => order(a) - order(b) || a.localeCompare(b));
    for (const r of sorted) list.push([node, r]);
  }
  return list;
}

function drawTimeline() {
  const data = job.data;
  const canvas = $("timeline");
  const ctx = canvas.getContext("2d");
  const width = Math.max(600, $("timeline-box").clientWidth || 1100);
  const attempts = data.attempts;
  const now = Date.now() * 1000;
  let start = Infinity, end = 0;
  for (const a of attempts) { start = Math.min(start, a[3]); end = Math.max(end, a[4] || now); }
  if (!attempts.length) { start = 0; end = 1; }
  if (!job.view) job.view = [start, Math.max(end, start + 1)];
  const [v0, v1] = job.view;
  const aggregate = $("aggregate").checked || attempts.length > 5000;
  $("aggregate").checked = aggregate;
  $("timeline-note").textContent = `${attempts.length} stretches, ${dur(v0, v1)} shown` +
    (data.timeline_truncated ? " (the earliest 50,000 only)" : "");
  const rows = aggregate ? [...new Set(attempts.map((a) => a[1]))].map((n) => [n, "running"]) : rowsOf(data);
  const rowHeight = aggregate ? 60 : ROW;
  canvas.width = width;
  canvas.height = 20 + rows.length * rowHeight + 4;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "11px sans-serif";
  const x = (t) => LABEL + ((t - v0) / (v1 - v0)) * (width - LABEL - 8);
  // Time axis.
  ctx.fillStyle = "#556";
  for (let i = 0; i <= 5; i++) {
    const t = v0 + ((v1 - v0) * i) / 5;
    ctx.fillText("+" + dur(start, t || start), x(t), 12);
  }
  const index = new Map(rows.map((r, i) => [r[0] + "\u0000" + r[1], i]));
  rows.forEach(([node, row], i) => {
    ctx.fillStyle = i % 2 ? "#f7f8fa" : "#fff";
    ctx.fillRect(0, 20 + i * rowHeight, width, rowHeight);
    ctx.fillStyle = "#223";
    ctx.fillText(`${node} · ${row}`.slice(0, 28), 4, 20 + i * rowHeight + 12);
  });
  job.boxes = [];
  if (aggregate) {
    // Tasks running per node over time, in 300 buckets of the view.
    const buckets = 300;
    const per = new Map();
    for (const [, node, , s, e] of attempts) {
      if (!per.has(node)) per.set(node, new Array(buckets).fill(0));
      const counts = per.get(node);
      const from = Math.max(0, Math.floor(((s - v0) / (v1 - v0)) * buckets));
      const to = Math.min(buckets - 1, Math.floor((((e || now) - v0) / (v1 - v0)) * buckets));
      for (let b = from; b <= to; b++) counts[b]++;
    }
    for (const [node, counts] of per) {
      const i = index.get(node + "\u0000running");
      const peak = Math.max(1, ...counts);
      ctx.fillStyle = COLORS.ok;
      counts.forEach((c, b) => {
        const h = (c / peak) * (rowHeight - 6);
        const x0 = x(v0 + ((v1 - v0) * b) / buckets);
        const x1 = x(v0 + ((v1 - v0) * (b + 1)) / buckets);
        ctx.fillRect(x0, 20 + (i + 1) * rowHeight - 2 - h, Math.max(1, x1 - x0), h);
      });
      ctx.fillStyle = "#223";
      ctx.fillText(`peak ${peak}`, LABEL - 60, 20 + i * rowHeight + 26);
    }
    return;
  }
  // Tasks waiting in get/wait, per node: a band as high as how many wait.
  const waiting = new Map();
  const buckets = 300;
  for (const [node, s, e] of data.waits) {
    if (!waiting.has(node)) waiting.set(node, new Array(buckets).fill(0));
    const counts = waiting.get(node);
    const from = Math.max(0, Math.floor(((s - v0) / (v1 - v0)) * buckets));
    const to = Math.min(buckets - 1, Math.floor((((e || now) - v0) / (v1 - v0)) * buckets));
    for (let b = from; b <= to; b++) counts[b]++;
  }
  for (const [node, counts] of waiting) {
    const i = index.get(node + "\u0000waiting");
    const peak = Math.max(1, ...counts);
    ctx.fillStyle = "#9aa7bd";
    counts.forEach((c, b) => {
      const h = (c / peak) * (rowHeight - 4);
      const x0 = x(v0 + ((v1 - v0) * b) / buckets);
      const x1 = x(v0 + ((v1 - v0) * (b + 1)) / buckets);
      if (c) ctx.fillRect(x0, 20 + (i + 1) * rowHeight - 2 - h, Math.max(1, x1 - x0), h);
    });
  }
  for (const [task, node, row, s, e, outcome, blocked] of attempts) {
    const stop = e || now;
    if (stop < v0 || s > v1) continue;
    const i = index.get(node + "\u0000" + row);
    const x0 = Math.max(LABEL, x(s));
    const x1 = Math.min(width - 8, x(stop));
    ctx.fillStyle = !e ? COLORS.running : outcome === "ok" ? COLORS.ok : "#d0312d";
    ctx.fillRect(x0, 20 + i * rowHeight + 2, Math.max(1, x1 - x0), rowHeight - 4);
    // Time blocked in get/wait: a pale band inside the run.
    ctx.fillStyle = "rgba(255, 255, 255, 0.6)";
    for (const [b0, b1] of blocked || []) {
      const bx0 = Math.max(x0, x(b0));
      const bx1 = Math.min(x1, x(b1 || stop));
      if (bx1 > bx0) ctx.fillRect(bx0, 20 + i * rowHeight + 5, bx1 - bx0, rowHeight - 10);
    }
    job.boxes.push([x0, x1, 20 + i * rowHeight, task, s, e, outcome]);
  }
}

function hover(event) {
  const tip = $("tooltip");
  if (!job || !job.boxes) { tip.hidden = true; return; }
  const rect = $("timeline").getBoundingClientRect();
  const px = event.clientX - rect.left, py = event.clientY - rect.top;
  const hit = job.boxes.find(([x0, x1, y]) => px >= x0 - 1 && px <= x1 + 1 && py >= y && py <= y + ROW);
  if (!hit) { tip.hidden = true; return; }
  const [, , , task, s, e, outcome] = hit;
  tip.textContent = `${job.data.functions[task]}\n${dur(s, e) || "running"}, ${outcome || "running"}`;
  tip.style.left = px + 12 + "px";
  tip.style.top = py + 12 + "px";
  tip.hidden = false;
}

function zoom(factor, centre) {
  if (!job || !job.view) return;
  const [v0, v1] = job.view;
  const c = centre ?? (v0 + v1) / 2;
  const span = Math.max(10, (v1 - v0) * factor);
  job.view = [c - (c - v0) * (span / (v1 - v0)), c + (v1 - c) * (span / (v1 - v0))];
  drawTimeline();
}

function wire() {
  $("login-button").addEventListener("click", login);
  $("logout").addEventListener("click", () => logout());
  $("zoom-in").addEventListener("click", () => zoom(0.5));
  $("zoom-out").addEventListener("click", () => zoom(2));
  $("zoom-reset").addEventListener("click", () => { job.view = null; drawTimeline(); });
  $("aggregate").addEventListener("change", () => job && job.data && drawTimeline());
  $("state-filter").addEventListener("change", () => refreshJob().catch(failed));
  $("cause-filter").addEventListener("change", () => refreshJob().catch(failed));
  $("task-search").addEventListener("input", () => job && job.data && taskTable(job.data));
  const canvas = $("timeline");
  canvas.addEventListener("mousemove", hover);
  canvas.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  canvas.addEventListener("wheel", (event) => {
    if (!job || !job.view) return;
    event.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const [v0, v1] = job.view;
    const at = v0 + ((event.clientX - rect.left - LABEL) / (rect.width - LABEL - 8)) * (v1 - v0);
    zoom(event.deltaY < 0 ? 0.8 : 1.25, at);
  }, { passive: false });
  let drag = null;
  canvas.addEventListener("mousedown", (event) => { drag = [event.clientX, job && job.view]; });
  window.addEventListener("mouseup", () => { drag = null; });
  canvas.addEventListener("mousemove", (event) => {
    if (!drag || !drag[1]) return;
    const [v0, v1] = drag[1];
    const shift = ((drag[0] - event.clientX) / (canvas.width - LABEL)) * (v1 - v0);
    job.view = [v0 + shift, v1 + shift];
    drawTimeline();
  });
  window.addEventListener("hashchange", route);
}

wire();
route();
