// The bavard web console. A plain script over the node's public HTTP API (see ui.rs); no
// dependencies, no build step. Every API error is shown as the API states it.
"use strict";

(function () {
  const TOKEN_KEY = "bavard.api-token";
  const POLL_MS = 1000;
  const SLOW_POLL_MS = 5000;
  const POLL_TIMEOUT_MS = 5000;
  const FEED_MAX = 200;

  const $ = (id) => document.getElementById(id);

  // ---- API access -----------------------------------------------------------------------

  /** An API answer that was not a success: its status and the API's own error text. */
  class ApiError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
    toString() {
      return `${this.status}${this.code ? " " + this.code : ""}: ${this.message}`;
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const t = token();
    if (t) h["Authorization"] = "Bearer " + t;
    return h;
  }

  /** Turns a failed response into an ApiError, keeping the API's `error` text verbatim. */
  async function failure(resp) {
    const text = await resp.text();
    let message = text;
    let code = "";
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === "string") {
        message = body.error;
        code = body.code || "";
      }
    } catch (_) {
      // Not JSON: show the body as it came.
    }
    if (!message) message = resp.statusText || "request failed";
    if (resp.status === 401) askForToken(message);
    return new ApiError(resp.status, message, code);
  }

  /** A fetch failure as an ApiError (an abort by the caller is passed on as it is). */
  function unreachable(e) {
    if (e.name === "AbortError") return e;
    if (e.name === "TimeoutError") {
      return new ApiError(0, `the node did not answer within ${POLL_TIMEOUT_MS / 1000} s`, "timeout");
    }
    return new ApiError(0, "the node did not answer (" + e.message + ")", "unreachable");
  }

  /** Sends a request; resolves to the Response when it succeeded, throws ApiError otherwise. */
  async function request(method, path, body, signal) {
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers: headers(body !== undefined ? { "Content-Type": "application/octet-stream" } : {}),
        body,
        signal,
        cache: "no-store",
      });
    } catch (e) {
      throw unreachable(e);
    }
    if (!resp.ok) throw await failure(resp);
    return resp;
  }

  /** A poll: a GET with a deadline, so that a frozen node shows as such instead of stalling
   * the page. */
  async function poll(path) {
    const resp = await request("GET", path, undefined, AbortSignal.timeout(POLL_TIMEOUT_MS));
    try {
      return path === "/metrics" ? await resp.text() : await resp.json();
    } catch (e) {
      throw unreachable(e);
    }
  }

  async function getJson(path) {
    return (await request("GET", path)).json();
  }

  function showError(id, err) {
    const el = $(id);
    if (!el) return;
    if (err) {
      el.textContent = String(err);
      el.hidden = false;
    } else {
      el.textContent = "";
      el.hidden = true;
    }
  }

  // ---- token -------------------------------------------------------------------------------

  function askForToken(message) {
    const panel = $("token-panel");
    const wasHidden = panel.hidden;
    panel.hidden = false;
    showError("token-error", token() ? "the token was refused: " + message : null);
    if (wasHidden) $("token-input").focus();
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    $("token-panel").hidden = true;
    showError("token-error", null);
    refresh();
    slowRefresh();
    for (const sub of subscriptions.values()) if (sub.state !== "open") sub.restart();
  });

  // ---- formatting ------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function shortId(id) {
    return id && id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : id;
  }

  function duration(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24;
    const m = Math.floor(s / 60) % 60, sec = s % 60;
    if (d) return `${d} d ${h} h`;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${sec} s`;
    return `${sec} s`;
  }

  function orDash(v) {
    return v === undefined || v === null ? "—" : String(v);
  }

  /** Bytes as text when they are UTF-8, else base64 (with the size). */
  function describeBytes(buf) {
    const bytes = new Uint8Array(buf);
    try {
      return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), binary: false };
    } catch (_) {
      let s = "";
      for (const b of bytes) s += String.fromCharCode(b);
      return { text: btoa(s), binary: true };
    }
  }

  // ---- live panels -------------------------------------------------------------------------

  let selfId = null;

  function renderStatus(s) {
    selfId = s.peer_id;
    $("st-peer").textContent = s.peer_id;
    $("node-name").textContent = shortId(s.peer_id);
    document.title = "bavard " + shortId(s.peer_id);
    $("st-version").textContent = orDash(s.version);
    $("st-uptime").textContent = s.uptime_s === undefined ? "—" : duration(s.uptime_s);
    $("st-alive").textContent = orDash(s.members_alive);
    $("st-connected").textContent = orDash(s.connected_peers);
    $("st-routing").textContent = orDash(s.routing_table_size);
    $("st-records").textContent = orDash(s.records_stored);
    $("st-cluster").textContent = orDash(s.cluster_id);
    const addrs = $("st-addrs");
    addrs.replaceChildren(...(s.listen_addrs || []).map((a) => el("li", { text: a })));
    const r = s.replication || {};
    for (const name of ["keys_behind", "ranges_pending", "hints_queued", "read_repairs",
      "anti_entropy_rounds", "anti_entropy_failures"]) {
      if (r[name] !== undefined) setReplica(name, r[name], "status");
    }
  }

  /** One replica-health figure; a figure from /v1/status wins over one from /metrics. */
  function setReplica(name, value, source) {
    const dd = $("rp-" + name);
    if (!dd) return;
    if (source === "metrics" && dd.dataset.source === "status") return;
    dd.textContent = String(value);
    dd.dataset.source = source;
    dd.classList.toggle("warn", (name === "keys_behind" || name === "ranges_pending" ||
      name === "hints_queued" || name === "anti_entropy_failures" ||
      name === "quorum_failures") && Number(value) > 0);
    dd.title = source === "metrics" ? "from /metrics" : "from /v1/status";
  }

  function memberRow(m) {
    const state = String(m.state || "unknown");
    const row = el("tr", { "data-peer": m.peer_id, "data-state": state },
      el("td", { class: "mono", title: m.peer_id },
        shortId(m.peer_id), m.peer_id === selfId ? el("span", { class: "self", text: " (this node)" }) : null),
      el("td", {}, el("span", { class: "state state-" + state.replace(/[^a-z]/g, ""), text: state })),
      el("td", { class: "num", text: orDash(m.incarnation) }),
      el("td", { class: "num", "data-field": "suspicion_timeout_ms", text: orDash(m.suspicion_timeout_ms) }),
      el("td", { class: "num", "data-field": "suspicion_confirmations", text: orDash(m.suspicion_confirmations) }),
      el("td", { class: "mono addrs" }, ...(m.addrs || []).map((a) => el("div", { text: a }))));
    return row;
  }

  const STATE_ORDER = { alive: 0, suspect: 1, dead: 2, left: 3 };

  function renderMembers(members) {
    members = members.slice().sort((a, b) =>
      (STATE_ORDER[a.state] ?? 9) - (STATE_ORDER[b.state] ?? 9) || a.peer_id.localeCompare(b.peer_id));
    $("members-body").replaceChildren(...members.map(memberRow));
    const counts = {};
    for (const m of members) counts[m.state] = (counts[m.state] || 0) + 1;
    $("members-count").textContent = "(" + Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ") + ")";
  }

  function renderRouting(r) {
    const k = r.k || 1;
    $("routing-summary").textContent =
      `(${orDash(r.size)} ${r.size === 1 ? "peer" : "peers"}, k = ${orDash(r.k)})`;
    const buckets = (r.buckets || []).slice().sort((a, b) => b.index - a.index);
    $("routing-empty").hidden = buckets.length > 0;
    $("buckets").replaceChildren(...buckets.map((b) => {
      const fill = el("span", { class: "fill" });
      // CSSOM writes are allowed by the style-src 'self' policy (style attributes are not).
      fill.style.width = Math.min(100, (100 * b.len) / k) + "%";
      return el("li", { "data-bucket": b.index, "data-len": b.len, title: (b.peers || []).join("\n") },
        el("span", { class: "bucket-index", text: "bucket " + b.index }),
        el("span", { class: "bar", role: "img", "aria-label": `${b.len} of ${k}` }, fill),
        el("span", { class: "num", text: `${b.len}/${k}` }));
    }));
  }

  function renderOverlay(answer) {
    // GET /v1/topics: [{topic, subscriber, eager, lazy, passive, seen}].
    const topics = Array.isArray(answer) ? answer : [];
    const ids = (list) => (list || []).map(shortId).join(", ") || "—";
    $("overlay-body").replaceChildren(...topics.map((t) => el("tr", { "data-topic": t.topic },
      el("td", { class: "mono", text: t.topic }),
      el("td", { class: "mono", text: ids(t.eager) }),
      el("td", { class: "mono", text: ids(t.lazy) }),
      el("td", { class: "num", text: orDash(t.passive) }),
      el("td", { class: "num", text: orDash(t.seen) }))));
  }

  /** Sums the samples of each counter family named in `wanted` from Prometheus text. */
  function parseMetrics(text, wanted) {
    const sums = {};
    for (const line of text.split("\n")) {
      // A counter family with no samples yet (a labelled one) counts as 0.
      const declared = /^# TYPE bavard_([a-z0-9_]+) counter/.exec(line);
      if (declared && wanted.includes(declared[1])) sums[declared[1]] = sums[declared[1]] || 0;
      if (!line || line[0] === "#") continue;
      const m = /^bavard_([a-z0-9_]+?)(?:_total)?(?:\{[^}]*\})?\s+([0-9.eE+-]+|NaN)/.exec(line);
      if (!m || !wanted.includes(m[1])) continue;
      const v = Number(m[2]);
      if (!Number.isNaN(v)) sums[m[1]] = (sums[m[1]] || 0) + v;
    }
    return sums;
  }

  const METRIC_NAMES = ["read_repairs", "anti_entropy_rounds", "anti_entropy_failures",
    "hints_delivered", "quorum_failures"];

  let overlayAvailable = true;

  function setLive(state, text) {
    const live = $("live");
    live.dataset.live = state;
    live.textContent = text;
  }

  let polling = false;
  let pollTimer = null;

  /** One poll of the fast panels; each panel shows its own error. */
  async function refresh() {
    if (polling) return;
    polling = true;
    clearTimeout(pollTimer);
    const jobs = [
      ["/v1/status", renderStatus, "status-error"],
      ["/v1/members", renderMembers, "members-error"],
      ["/v1/routing", renderRouting, "routing-error"],
    ].map(async ([path, render, errId]) => {
      try {
        render(await poll(path));
        showError(errId, null);
        return true;
      } catch (e) {
        showError(errId, e);
        return false;
      }
    });
    const ok = await Promise.all(jobs);
    if (ok.every(Boolean)) setLive("live", "live · updated " + new Date().toLocaleTimeString());
    else setLive("error", "some requests failed · " + new Date().toLocaleTimeString());
    polling = false;
    schedule();
  }

  function schedule() {
    clearTimeout(pollTimer);
    if (document.hidden) {
      setLive("paused", "paused while the tab is hidden");
      return;
    }
    pollTimer = setTimeout(refresh, POLL_MS);
  }

  let slowTimer = null;

  async function slowRefresh() {
    clearTimeout(slowTimer);
    try {
      const text = await poll("/metrics");
      const sums = parseMetrics(text, METRIC_NAMES);
      for (const [name, v] of Object.entries(sums)) setReplica(name, v, "metrics");
      showError("metrics-error", null);
    } catch (e) {
      showError("metrics-error", e);
    }
    if (overlayAvailable) {
      try {
        renderOverlay(await poll("/v1/topics"));
        $("overlay-panel").hidden = false;
        showError("overlay-error", null);
      } catch (e) {
        if (e.status === 404) {
          // This node has no /v1/topics endpoint: hide the panel for good.
          overlayAvailable = false;
          $("overlay-panel").hidden = true;
        } else if (e.status !== 401) {
          // (A 401 is the token panel's business; the panel appears once it answers.)
          $("overlay-panel").hidden = false;
          showError("overlay-error", e);
        }
      }
    }
    if (!document.hidden) slowTimer = setTimeout(slowRefresh, SLOW_POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(pollTimer);
      clearTimeout(slowTimer);
      setLive("paused", "paused while the tab is hidden");
    } else {
      refresh();
      slowRefresh();
    }
  });

  // ---- topics: subscriptions and the feed -----------------------------------------------------

  const subscriptions = new Map();

  /** Reads the Server-Sent Events of `GET /v1/topics/{topic}/events` with fetch (so that the
   * token can be sent), parsing the framing by hand, and reconnects after a failure. */
  class Subscription {
    constructor(topic) {
      this.topic = topic;
      this.state = "connecting";
      this.retryMs = 500;
      this.stateEl = el("span", { class: "sub-state" });
      this.item = el("li", { "data-subscription": topic, "data-state": this.state },
        el("span", { class: "mono", text: topic }), " ", this.stateEl, " ",
        el("button", { type: "button", class: "small", "aria-label": "Unsubscribe from " + topic, text: "Unsubscribe" }));
      this.item.querySelector("button").addEventListener("click", () => this.close());
      $("subscriptions").append(this.item);
      this.start();
    }

    setState(state, text) {
      this.state = state;
      this.item.dataset.state = state;
      this.stateEl.textContent = text || state;
      this.stateEl.className = "sub-state sub-" + state;
    }

    restart() {
      clearTimeout(this.retryTimer);
      if (this.abort) this.abort.abort();
      this.start();
    }

    async start() {
      this.setState("connecting", "connecting…");
      const abort = new AbortController();
      this.abort = abort;
      try {
        const resp = await request("GET", "/v1/topics/" + encodeURIComponent(this.topic) + "/events",
          undefined, abort.signal);
        this.setState("open", "subscribed");
        this.retryMs = 500;
        await this.read(resp.body.getReader(), abort.signal);
        if (!abort.signal.aborted) this.retry("the stream ended");
      } catch (e) {
        if (abort.signal.aborted) return;
        if (e.status === 401) {
          this.setState("error", String(e));
          return; // restarted once a token is given
        }
        this.retry(String(e));
      }
    }

    retry(why) {
      this.setState("error", why + "; retrying");
      this.retryTimer = setTimeout(() => this.start(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10000);
    }

    async read(reader, signal) {
      const decoder = new TextDecoder();
      let buf = "";
      let ev = { event: "", data: [], id: "" };
      while (!signal.aborted) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          // A lone \r at the end of the buffer may be the first half of \r\n: wait for more.
          if (buf[nl] === "\r" && nl === buf.length - 1) break;
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
          if (line === "") {
            if (ev.data.length) this.dispatch(ev);
            ev = { event: "", data: [], id: ev.id };
            continue;
          }
          if (line[0] === ":") continue; // a comment (keep-alive, "missed N messages")
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? "" : line.slice(colon + 1);
          if (val[0] === " ") val = val.slice(1);
          if (field === "event") ev.event = val;
          else if (field === "data") ev.data.push(val);
          else if (field === "id") ev.id = val;
        }
      }
    }

    dispatch(ev) {
      const kind = ev.event || "message";
      const payload = ev.data.join("\n");
      addToFeed(this.topic, kind, ev.id, payload);
    }

    close() {
      clearTimeout(this.retryTimer);
      if (this.abort) this.abort.abort();
      this.item.remove();
      subscriptions.delete(this.topic);
    }
  }

  function addToFeed(topic, kind, id, payload) {
    const feed = $("feed");
    let shown = payload;
    if (kind === "binary") {
      try {
        shown = atob(payload).length + " bytes (base64) " + payload;
      } catch (_) {
        shown = "base64 " + payload;
      }
    }
    const item = el("li", { "data-message-id": id, "data-topic": topic, "data-kind": kind },
      el("span", { class: "feed-meta" },
        el("time", { text: new Date().toLocaleTimeString() }), " ",
        el("span", { class: "mono topic", text: topic }), " ",
        el("span", { class: "mono muted", title: id, text: shortId(id) })),
      el("span", { class: "payload" + (kind === "binary" ? " mono" : ""), text: shown }));
    feed.prepend(item);
    while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
    $("feed-empty").hidden = true;
  }

  $("subscribe-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const topic = $("subscribe-topic").value.trim();
    if (!topic) return;
    if (!subscriptions.has(topic)) subscriptions.set(topic, new Subscription(topic));
    if (!$("publish-topic").value) $("publish-topic").value = topic;
    $("feed-empty").textContent = "No messages yet.";
  });

  $("publish-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const topic = $("publish-topic").value.trim();
    if (!topic) return;
    const button = $("publish-button");
    button.disabled = true;
    $("publish-result").textContent = "";
    try {
      const resp = await request("POST", "/v1/topics/" + encodeURIComponent(topic),
        $("publish-payload").value);
      const reply = await resp.json();
      const out = $("publish-result");
      out.textContent = "published " + shortId(reply.message_id);
      out.title = reply.message_id;
      out.dataset.messageId = reply.message_id;
      showError("publish-error", null);
    } catch (e) {
      showError("publish-error", e);
    } finally {
      button.disabled = false;
    }
  });

  // Enter in the message box publishes; Shift+Enter starts a new line.
  $("publish-payload").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $("publish-form").requestSubmit();
    }
  });

  // ---- KV and DHT -------------------------------------------------------------------------

  function result(id, ok, ...children) {
    const box = $(id);
    box.dataset.ok = ok ? "true" : "false";
    box.replaceChildren(...children);
  }

  function fields(pairs) {
    const dl = el("dl", { class: "kv" });
    for (const [k, v] of pairs) {
      if (v === undefined || v === null) continue;
      dl.append(el("dt", { text: k }), el("dd", { class: "mono", "data-field": k, text: String(v) }));
    }
    return dl;
  }

  function errorBox(id, e) {
    result(id, false, el("p", { class: "error", role: "alert", text: String(e) }));
  }

  $("kv-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const op = (ev.submitter && ev.submitter.value) || "get";
    const key = $("kv-key").value;
    if (!key) return;
    const path = "/v1/kv/" + encodeURIComponent(key) + "?consistency=" +
      encodeURIComponent($("kv-consistency").value);
    const id = "kv-result";
    result(id, true, el("p", { class: "muted", text: op + " " + key + "…" }));
    try {
      if (op === "get") {
        const resp = await request("GET", path);
        const value = describeBytes(await resp.arrayBuffer());
        result(id, true, fields([
          ["operation", "get"], ["key", key],
          ["version", resp.headers.get("x-bavard-version")],
          [value.binary ? "value (base64, not UTF-8)" : "value", value.text],
        ]));
      } else {
        const resp = await request(op === "put" ? "PUT" : "DELETE", path,
          op === "put" ? $("kv-value").value : undefined);
        const r = await resp.json();
        result(id, true, fields([
          ["operation", op], ["key", r.key], ["version", r.version], ["acks", r.acks],
          ["round_trips", r.round_trips],
        ]));
      }
    } catch (e) {
      errorBox(id, e);
    }
  });

  $("dht-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const op = (ev.submitter && ev.submitter.value) || "record";
    const key = $("dht-key").value;
    if (!key) return;
    const id = "dht-result";
    result(id, true, el("p", { class: "muted", text: "looking up " + key + "…" }));
    try {
      if (op === "record") {
        const resp = await request("GET", "/v1/dht/" + encodeURIComponent(key));
        const value = describeBytes(await resp.arrayBuffer());
        result(id, true, fields([["key", key],
          [value.binary ? "value (base64, not UTF-8)" : "value", value.text]]));
      } else {
        const providers = await getJson("/v1/providers/" + encodeURIComponent(key));
        if (!providers.length) {
          result(id, true, el("p", { text: "No providers found for " + key + "." }));
        } else {
          result(id, true, el("ul", { class: "plain providers" }, ...providers.map((p) =>
            el("li", { "data-peer": p.peer_id },
              el("div", { class: "mono", text: p.peer_id }),
              ...(p.addrs || []).map((a) => el("div", { class: "mono muted", text: a }))))));
        }
      }
    } catch (e) {
      errorBox(id, e);
    }
  });

  // ---- start -------------------------------------------------------------------------------

  refresh();
  slowRefresh();
})();
