// The testbed page of `cargo xtask cluster ui`: polls /api/state about once a second and draws
// it, follows /api/deliveries for the chosen topic, publishes through /node/I/v1/topics/T and
// sends the buttons' actions to /api/action. Plain JS, no dependency.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const RADIUS = 230;
const $ = (id) => document.getElementById(id);

let topic = $("topic").value;
let view = null;          // the last /api/state answer
let selected = 0;         // the node publishes go through
let published = null;     // {payload, t0, via, id, latency: Map(node -> ms)}
let deliveries = null;    // the EventSource of /api/deliveries
const nodeEls = [];       // persistent <g> per node, so that a flash survives a redraw

function log(text, error) {
  const li = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  li.append(time, text);
  if (error) li.className = "error";
  $("log").prepend(li);
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.append(e);
  return e;
}

// Positions on the circle: one group (no partition) is evenly spread; several groups each get
// an arc, with a gap between groups where a cut line is drawn.
function layout(nodes, groups) {
  const pos = new Map();
  const cuts = [];
  const labels = []; // [angle, side] at the middle of each group's arc
  const n = nodes.length;
  if (groups.length <= 1) {
    nodes.forEach((node, k) => {
      const a = -Math.PI / 2 + (2 * Math.PI * k) / Math.max(n, 1);
      pos.set(node.index, [RADIUS * Math.cos(a), RADIUS * Math.sin(a)]);
    });
    return { pos, cuts, labels };
  }
  const side = new Map(nodes.map((n) => [n.index, n.side]));
  const slots = n + groups.length; // one empty slot per gap
  let slot = 0;
  for (const group of groups) {
    cuts.push(-Math.PI / 2 + (2 * Math.PI * (slot - 0.5)) / slots);
    labels.push([-Math.PI / 2 + (2 * Math.PI * (slot + group.length / 2)) / slots, side.get(group[0])]);
    for (const i of group) {
      const a = -Math.PI / 2 + (2 * Math.PI * (slot + 0.5)) / slots;
      pos.set(i, [RADIUS * Math.cos(a), RADIUS * Math.sin(a)]);
      slot += 1;
    }
    slot += 1;
  }
  return { pos, cuts, labels };
}

function nodeEl(i) {
  if (nodeEls[i]) return nodeEls[i];
  const g = el("g", { class: "node", tabindex: "0", role: "button" }, $("node-layer"));
  el("circle", { class: "flash", r: "30" }, g);
  el("circle", { class: "ring", r: "36" }, g);
  el("circle", { class: "body", r: "28" }, g);
  const index = el("text", { class: "index" }, g);
  index.textContent = i;
  el("text", { class: "sub", y: "56" }, g);
  el("text", { class: "latency", y: "-44" }, g);
  g.addEventListener("click", () => select(i));
  g.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(i); }
  });
  nodeEls[i] = g;
  return g;
}

function select(i) {
  selected = i;
  $("via").value = String(i);
  if (view) render(view);
}

function latencyText(i) {
  if (!published) return "";
  const ms = published.latency.get(i);
  return ms === undefined ? "" : `${Math.round(ms)} ms`;
}

function render(v) {
  view = v;
  $("dir").textContent = v.dir;
  const prom = $("prometheus");
  prom.hidden = !v.prometheus;
  if (v.prometheus) { prom.href = v.prometheus; prom.textContent = `Prometheus ${v.prometheus}`; }
  const { pos, cuts, labels } = layout(v.nodes, v.groups);

  const cutLayer = $("cut-layer");
  cutLayer.replaceChildren();
  for (const a of cuts) {
    const [x, y] = [(RADIUS + 70) * Math.cos(a), (RADIUS + 70) * Math.sin(a)];
    el("line", { class: "cut", x1: 0, y1: 0, x2: x, y2: y }, cutLayer);
    el("text", { class: "cut", x: x * 0.9, y: y * 0.9 - 8 }, cutLayer).textContent = "cut";
  }
  if (cuts.length) {
    el("circle", { r: 6, fill: "var(--dead)" }, cutLayer);
  }
  for (const [a, side] of labels) {
    const t = el("text", { class: "side", x: (RADIUS + 66) * Math.cos(a), y: (RADIUS + 66) * Math.sin(a) }, cutLayer);
    t.textContent = side === "-" ? "on neither side" : `side ${side}`;
  }

  const linkLayer = $("link-layer");
  linkLayer.replaceChildren();
  const bad = (s) => s === "suspect" || s === "dead" || s === "left";
  for (const l of v.links) {
    const [a, b] = [pos.get(l.a), pos.get(l.b)];
    const cls = bad(l.a_sees_b) || bad(l.b_sees_a) ? "bad" : "member";
    const line = el("line", { class: cls, x1: a[0], y1: a[1], x2: b[0], y2: b[1] }, linkLayer);
    el("title", {}, line).textContent =
      `${l.a} sees ${l.b}: ${l.a_sees_b ?? "—"}; ${l.b} sees ${l.a}: ${l.b_sees_a ?? "—"}`;
  }

  const treeLayer = $("tree-layer");
  treeLayer.replaceChildren();
  const pairs = new Map();
  for (const e of v.tree) {
    const key = e.from < e.to ? `${e.from}-${e.to}` : `${e.to}-${e.from}`;
    pairs.set(key, (pairs.get(key) || false) || e.eager);
  }
  for (const [key, eager] of pairs) {
    const [x, y] = key.split("-").map(Number);
    const [a, b] = [pos.get(x), pos.get(y)];
    const line = el("line", { class: eager ? "eager" : "lazy", x1: a[0], y1: a[1], x2: b[0], y2: b[1] }, treeLayer);
    el("title", {}, line).textContent = `${eager ? "eager" : "lazy"} ${x} – ${y} in ${v.topic}`;
  }
  const note = $("tree-note");
  note.hidden = v.topics_supported && v.tree.length > 0;
  note.textContent = v.topics_supported
    ? `No topic-tree edges for "${v.topic}" yet (nodes join it when the page subscribes).`
    : "No topic-tree edges: the nodes answer 404 for GET /v1/topics (an older bavard).";

  for (const node of v.nodes) {
    const g = nodeEl(node.index);
    const [x, y] = pos.get(node.index);
    g.setAttribute("transform", `translate(${x} ${y})`);
    g.setAttribute("class", `node ${node.state}${node.process === "paused" ? " paused" : ""}${node.index === selected ? " selected" : ""}`);
    const votes = Object.entries(node.votes).map(([s, c]) => `${c} ${s}`).join(", ") || "no votes";
    g.setAttribute("aria-label", `node ${node.index}: ${node.state}, process ${node.process} (${votes}); Enter publishes through it`);
    g.querySelector(".sub").textContent = `${node.state}${node.process === "paused" ? " (paused)" : ""}`;
    if (node.side) g.setAttribute("aria-label", `${g.getAttribute("aria-label")}, side ${node.side}`);
    g.querySelector(".latency").textContent = latencyText(node.index);
  }
  renderTable(v);
  renderVia(v);
}

function button(text, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", () => act(action));
  return b;
}

function renderTable(v) {
  const tbody = $("nodes").tBodies[0];
  const focused = document.activeElement && document.activeElement.dataset.key;
  tbody.replaceChildren();
  for (const node of v.nodes) {
    const tr = tbody.insertRow();
    if (node.index === selected) tr.className = "selected";
    const cells = [node.index, node.state, node.process, node.side || "–", node.members_alive ?? "–",
      node.connected_peers ?? "–", latencyText(node.index) || "–"];
    cells.forEach((c, k) => {
      const td = tr.insertCell();
      td.textContent = c;
      if (k === 1) { td.className = `state ${node.state}`; td.title = JSON.stringify(node.votes); }
    });
    const td = tr.insertCell();
    td.className = "actions";
    const nodes = String(node.index);
    const buttons = [
      node.process === "down" ? null : button("Kill", { action: "kill", nodes }),
      button("Restart", { action: "restart", nodes }),
      node.process === "paused" ? button("Resume", { action: "resume", nodes })
        : node.process === "running" ? button("Pause", { action: "pause", nodes }) : null,
      button("Isolate", { action: "isolate", node: node.index }),
    ].filter(Boolean);
    for (const b of buttons) {
      // Keep the keyboard focus on "the same" button across the redraw.
      b.dataset.key = `${node.index}-${b.textContent}`;
      td.append(b);
      if (b.dataset.key === focused) b.focus();
    }
  }
}

function renderVia(v) {
  const via = $("via");
  if (via.options.length === v.nodes.length) return;
  via.replaceChildren(...v.nodes.map((n) => new Option(`${n.index}`, `${n.index}`)));
  via.value = String(selected);
}

async function poll() {
  try {
    const r = await fetch(`/api/state?topic=${encodeURIComponent(topic)}`);
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    render(body);
    $("poll").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("poll").className = "";
  } catch (e) {
    $("poll").textContent = `no state: ${e.message}`;
    $("poll").className = "error";
  } finally {
    setTimeout(poll, 1000);
  }
}

function flash(i) {
  const c = nodeEl(i).querySelector("circle.flash");
  c.classList.remove("on");
  void c.getBoundingClientRect(); // restart the animation
  c.classList.add("on");
}

function follow() {
  if (deliveries) deliveries.close();
  deliveries = new EventSource(`/api/deliveries?topic=${encodeURIComponent(topic)}`);
  deliveries.addEventListener("delivery", (e) => {
    const { node, data } = JSON.parse(e.data);
    flash(node);
    if (published && data === published.payload && !published.latency.has(node)) {
      published.latency.set(node, performance.now() - published.t0);
      if (view) render(view);
      if (view && published.latency.size === view.nodes.filter((n) => n.answers).length) {
        const worst = Math.max(...published.latency.values());
        log(`${published.id || `"${published.payload}"`} delivered on ${published.latency.size} nodes, the last after ${Math.round(worst)} ms`);
      }
    }
  });
  deliveries.onerror = () => $("poll").textContent = "delivery stream interrupted, reconnecting…";
}

async function act(action) {
  const what = Object.values(action).join(" ");
  log(`${what}…`);
  try {
    const r = await fetch("/api/action", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(action),
    });
    const body = await r.json();
    if (!body.ok) throw new Error(body.error || `HTTP ${r.status}`);
    for (const line of body.lines) log(line);
  } catch (e) {
    log(`${what} failed: ${e.message}`, true);
  }
}

$("topic-form").addEventListener("submit", (e) => {
  e.preventDefault();
  topic = $("topic").value.trim() || "ui-demo";
  published = null;
  follow();
  log(`showing topic ${topic}`);
});

$("publish-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const via = Number($("via").value);
  selected = via;
  // A nonce makes the payload unique, so its deliveries are told from an earlier one's.
  const nonce = Math.random().toString(36).slice(2, 8);
  const payload = `${$("message").value} #${nonce}`;
  published = { payload, t0: performance.now(), via, id: null, latency: new Map() };
  try {
    const r = await fetch(`/node/${via}/v1/topics/${encodeURIComponent(topic)}`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: payload,
    });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || body.message || `HTTP ${r.status}`);
    published.id = body.message_id;
    log(`published ${body.message_id} ("${payload}") through node ${via}`);
  } catch (err) {
    log(`publish through node ${via} failed: ${err.message}`, true);
  }
});

$("partition-form").addEventListener("submit", (e) => {
  e.preventDefault();
  act({ action: "partition", a: $("side-a").value, b: $("side-b").value });
});
$("heal").addEventListener("click", () => act({ action: "heal" }));

follow();
poll();
