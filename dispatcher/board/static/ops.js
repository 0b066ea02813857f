// The live board: the cases that breached, one row each (GET /v1/ops/watch, read again as the
// Server-Sent Events stream tells of breaches), figures and failed deliveries from the ops JSON API.
// Plain script, no library; the ops token stays in this tab's session storage.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("board-data").textContent);
  const T = DATA.labels;
  const TOKEN_KEY = "gridcall.ops.token";
  const SVG = "http://www.w3.org/2000/svg";
  let source = null;
  let retry = null;
  let refresher = null;
  let watcher = null;
  let offset = 0; // the server's clock minus this browser's, from each answer's Date header
  const FIGURES_EVERY_MS = 60000; // the rates, the chart and failed deliveries are re-read each minute; breaches arrive live

  const $ = (id) => document.getElementById(id);
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function showError(message) {
    $("error").textContent = T.error.replace("{t}", message);
    $("error").hidden = false;
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + token(), Accept: "application/json", "Accept-Language": DATA.lang };
    const init = { method: method, headers: headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const said = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(said)) offset = said - Date.now();
    const answer = await response.json().catch(() => ({}));
    if (response.status === 401) {
      signOut();
    }
    if (!response.ok) {
      // In the page's language: the API's Chinese `message` when it gave one, else its English detail.
      const detail = answer.message || (typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail));
      const error = new Error(detail || String(response.status));
      error.status = response.status;
      throw error;
    }
    return answer;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return d + (DATA.lang === "en" ? "d " : "天") + h + (DATA.lang === "en" ? "h" : "小时");
    if (h) return h + (DATA.lang === "en" ? "h " : "小时") + m + (DATA.lang === "en" ? "m" : "分");
    if (m) return m + (DATA.lang === "en" ? "m " : "分") + (s % 60) + (DATA.lang === "en" ? "s" : "秒");
    return s + (DATA.lang === "en" ? "s" : "秒");
  }

  function unit(id) {
    return DATA.units[id] || id;
  }

  function when(iso) {
    return new Date(iso).toLocaleString(DATA.lang, { hour12: false, timeZone: DATA.timezone }); // the policy's zone, whatever the browser's
  }

  // The cases on the board (GET /v1/ops/watch), one row each: the live list (late now, or not
  // yet taken up since a breach), and the history of those met (resolved, closed, or claimed).
  const WATCH_EVERY_MS = 15000; // and at once after a breach arrives on the stream
  function path(c) {
    const span = el("span");
    c.path.filter((s) => s.role === "lead").forEach((s, i) => {
      if (i) span.append(" → ");
      const step = el("span", unit(s.unit_id), s.breached ? "step breached" : "step");
      if (s.breached) step.title = T.missed;
      span.append(step);
    });
    const co = c.path.filter((s) => s.role !== "lead" && s.status !== "ended");
    if (co.length) span.append(el("span", " " + T.co.replace("{units}", co.map((s) => unit(s.unit_id)).join(DATA.lang === "en" ? ", " : "、")), "muted"));
    return span;
  }
  function cell(label, content, field, cls) {
    const td = el("td", undefined, cls);
    td.dataset.label = label;
    if (field) td.dataset.field = field;
    if (content !== undefined && content !== null) td.append(content);
    return td;
  }
  function caseCell(c) {
    const link = el("button", DATA.categories[c.category] || c.category, "case-link");
    link.type = "button";
    link.title = c.case_id;
    link.addEventListener("click", () => showCase(c.case_id));
    const td = cell(T.case, link, "case");
    if (c.priority !== "normal") td.append(el("span", T[c.priority] || c.priority, "tag priority"));
    if (c.supervised) td.append(el("span", T.supervised, "tag supervised-tag"));
    td.append(el("div", c.excerpt, "excerpt"));
    if (c.address) td.append(el("div", c.address, "muted address"));
    if (c.acknowledged) {
      const by = (c.acknowledged.by && c.acknowledged.by.name) || "";
      td.append(el("div", T.acknowledged.replace("{by}", by).replace("{at}", when(c.acknowledged.at)), "acknowledged"));
    }
    return td;
  }
  function waitingText(c) {
    const w = c.waiting;
    if (!w) return "";
    const what = (w.clock === "response" ? T.waiting_claim : T.waiting_resolve).replace("{unit}", unit(w.unit_id));
    return what + " · " + T.due.replace("{at}", when(w.due_at));
  }
  function lateCell(c) {
    const td = cell(T.late, undefined, "late", "late");
    if (c.late) {
      td.dataset.due = c.late.due_at;
      td.dataset.lateSeconds = String(Math.round(c.late.late_seconds));
      td.title = T[c.late.clock] || c.late.clock;
    } else if (c.last_breach) {
      const b = c.last_breach;
      td.className = "late past";
      // How late the last miss was when recorded: nothing to say when it escalated at once.
      const late = (b.late_seconds || 0) >= 60 ? " " + duration(b.late_seconds) : "";
      td.textContent = T.last_breach.replace("{unit}", unit(b.unit_id || "")).replace("{clock}", T[b.clock] || b.clock || "") + late;
    }
    return td;
  }
  function actions(c) {
    const td = cell("", undefined, "actions", "actions");
    const ticket = (c.late && c.late.ticket_id) || (c.waiting && c.waiting.ticket_id);
    if (ticket) {
      const open = el("button", T.open_ticket, "open-ticket");
      open.type = "button";
      // A new tab of this origin: the browser gives it a copy of this tab's session storage, so
      // the console opens the ticket signed in with this ops token (ops may read any ticket).
      open.addEventListener("click", () => window.open("/console?lang=" + DATA.lang + "#ticket=" + encodeURIComponent(ticket), "_blank"));
      td.append(open);
    }
    if (c.supervised && !c.acknowledged) {
      const take = el("button", T.acknowledge, "acknowledge");
      take.type = "button";
      take.addEventListener("click", () => acknowledge(c, take));
      td.append(take);
    }
    return td;
  }
  function liveRow(c) {
    const tr = el("tr", undefined, c.supervised ? "supervised" : "");
    tr.dataset.caseId = c.case_id;
    tr.append(
      caseCell(c),
      cell(T.grid, DATA.grids[c.grid_id] || c.grid_id, "grid"),
      cell(T.path, path(c), "path"),
      cell(T.waiting, waitingText(c), "waiting"),
      lateCell(c),
      actions(c),
    );
    return tr;
  }
  function doneRow(c) {
    const tr = el("tr");
    tr.dataset.caseId = c.case_id;
    const how = c.met === "claimed" ? T.met_claimed.replace("{unit}", unit(c.waiting ? c.waiting.unit_id : "")) : T["met_" + c.met] || c.met;
    tr.append(
      caseCell(c),
      cell(T.grid, DATA.grids[c.grid_id] || c.grid_id, "grid"),
      cell(T.path, path(c), "path"),
      cell(T.met, how + (c.met_at ? " · " + when(c.met_at) : ""), "met"),
    );
    return tr;
  }
  let watched = "";
  async function loadWatch() {
    const view = await api("GET", "/v1/ops/watch");
    const key = JSON.stringify([view.live, view.done]);
    if (key === watched) return; // nothing to draw again
    watched = key;
    $("breaches").replaceChildren(...view.live.map(liveRow));
    $("done").replaceChildren(...view.done.map(doneRow));
    $("no-breaches").hidden = view.live.length > 0;
    $("no-done").hidden = view.done.length > 0;
    $("live-count").textContent = String(view.live.length);
    $("done-count").textContent = String(view.done.length);
    tickLate();
  }
  function tickLate() {
    const now = Date.now() + offset;
    for (const td of document.querySelectorAll("#breaches td[data-due]")) {
      const late = Math.max(0, (now - Date.parse(td.dataset.due)) / 1000);
      td.dataset.lateSeconds = String(Math.round(late));
      td.textContent = duration(late);
    }
  }
  let watchSoon = null;
  function reloadSoon() { // after a burst of breach events, once
    clearTimeout(watchSoon);
    watchSoon = setTimeout(() => loadWatch().catch((e) => showError(e.message)), 500);
  }
  async function acknowledge(c, button) {
    button.disabled = true;
    try {
      await api("POST", "/v1/ops/cases/" + encodeURIComponent(c.case_id) + "/acknowledge", {});
    } catch (e) {
      showError(e.message); // 409: another officer took it up first, and says who
    }
    await loadWatch().catch((e) => showError(e.message));
  }

  // One recorded event as a sentence in the page's language, its time in the policy's zone, and
  // what people wrote (a reason, a note, a resident's comment) beneath it, as text.
  function sentence(h) {
    const H = DATA.history;
    const type = h.type === "case.sla_breached" && h.supervised ? "case.supervised" : h.type;
    const names = {
      unit: unit(h.unit_id || ""), from_unit: unit(h.from_unit_id || ""), to_unit: unit(h.to_unit_id || ""),
      lead: unit(h.lead_unit_id || ""), tier: DATA.tiers[h.tier] || h.tier || "", to_tier: DATA.tiers[h.to_tier] || h.to_tier || "",
      clock: T[h.clock] || h.clock || "", late: duration(h.late_seconds || 0), due: h.due_at ? when(h.due_at) : "",
      by: (h.by && h.by.name) || unit(h.unit_id || ""),
      co: h.co_unit_ids && h.co_unit_ids.length
        ? H.co.replace("{units}", h.co_unit_ids.map(unit).join(DATA.lang === "en" ? ", " : "、")) : "",
    };
    return (H[type] || H.unknown).replace(/\{(\w+)\}/g, (m, k) => (k in names ? names[k] : m));
  }
  // Which field of an event holds what a person wrote (the rest of its fields are the system's).
  const SAID = {
    "case.returned": "reason", "case.whistled": "reason", "case.escalated": "note", "case.handler_reported": "note",
    "case.resolved": "note", "case.reopened": "comment", "case.noted": "text", "case.supervision_acknowledged": "note",
  };
  function historyItem(h) {
    const li = el("li");
    li.dataset.type = h.type;
    li.append(el("time", when(h.at), "muted"), el("span", " " + sentence(h)));
    // A person's words: an event done by someone (its `by`), a resolution's result, a resident's comment.
    const said = h.by || h.type === "case.resolved" || h.type === "case.reopened" ? h[SAID[h.type]] : null;
    if (typeof said === "string" && said) li.append(el("div", said, "said"));
    return li;
  }

  async function showCase(caseId) {
    try {
      const view = await api("GET", "/v1/ops/cases/" + encodeURIComponent(caseId));
      $("case-id").textContent = caseId;
      $("case-history").replaceChildren(...view.history.map(historyItem));
      $("case-detail").hidden = false;
      $("case-detail").scrollIntoView({ block: "nearest" });
    } catch (e) {
      showError(e.message);
    }
  }

  async function connect() {
    if (source) source.close();
    clearTimeout(retry);
    try {
      const { ticket } = await api("POST", "/v1/ops/breaches/stream-tickets");
      source = new EventSource("/v1/ops/breaches/stream?ticket=" + encodeURIComponent(ticket));
    } catch (e) {
      if (token()) retry = setTimeout(connect, 5000);
      return;
    }
    source.addEventListener("open", () => live(true));
    // The stream says when breaches happen; the board's cases are read from /v1/ops/watch.
    source.addEventListener("snapshot", reloadSoon);
    source.addEventListener("breach", reloadSoon);
    source.addEventListener("error", () => {
      live(false);
      // The browser retries by itself with the same URL, whose ticket has expired by now: ask anew.
      source.close();
      retry = setTimeout(connect, 2000);
    });
  }

  function live(on) {
    $("live").hidden = false;
    $("live").textContent = on ? T.live : T.offline;
    $("live").className = on ? "tag live" : "tag offline";
  }

  function pct(figure) {
    return figure && figure.rate !== null && figure.rate !== undefined ? (figure.rate * 100).toFixed(1) + "%" : "–";
  }

  async function loadRates() {
    const places = [
      ...DATA.streets.map((s) => ({ key: "street", id: s.id, name: s.name, cls: "street" })),
      ...DATA.communities.map((c) => ({ key: "community", id: c.id, name: c.name, cls: "community" })),
    ];
    const windows = [["today", DATA.today], ["month", DATA.month]];
    const rows = await Promise.all(places.flatMap((p) => windows.map(async ([label, since]) => {
      const q = new URLSearchParams({ since: since, [p.key]: p.id });
      const s = await api("GET", "/v1/ops/stats?" + q);
      const tr = el("tr", undefined, p.cls);
      tr.dataset.place = p.id;
      tr.append(el("th", label === "today" ? p.name : ""), el("td", T[label]), el("td", pct(s.response)),
        el("td", pct(s.resolution)), el("td", pct(s.satisfaction)), el("td", pct(s.grid_closure)),
        el("td", pct(s.community_closure)));
      // Named as their columns, for a phone, where the rows are cards.
      ["", "", T.response_rate, T.resolution_rate, T.satisfaction_rate, T.grid_closure, T.community_closure]
        .forEach((name, i) => { if (name) tr.children[i].dataset.label = name; });
      return tr;
    })));
    $("rates").replaceChildren(...rows);
  }

  async function loadChart() {
    const days = (await api("GET", "/v1/ops/stats/daily?" + new URLSearchParams({ since: DATA.month }))).days;
    const series = ["opened", "escalated", "resolved"];
    const W = 600, H = 200, pad = 28;
    const top = Math.max(1, ...days.flatMap((d) => series.map((k) => d[k] || 0)));
    const x = (i) => pad + (i * (W - 2 * pad)) / Math.max(1, days.length - 1);
    const y = (v) => H - pad - (v * (H - 2 * pad)) / top;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", T.daily);
    const axis = document.createElementNS(SVG, "path");
    axis.setAttribute("d", "M" + pad + " " + pad + "V" + (H - pad) + "H" + (W - pad));
    axis.setAttribute("class", "axis");
    svg.append(axis);
    for (const [v, label] of [[0, "0"], [top, String(top)]]) {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", String(pad - 4));
      t.setAttribute("y", String(y(v) + 4));
      t.setAttribute("text-anchor", "end");
      t.textContent = label;
      svg.append(t);
    }
    // Dated axis: the first day, the middle one and the last (each a day of the policy's zone).
    const marks = [...new Set([0, Math.floor((days.length - 1) / 2), days.length - 1])].filter((i) => i >= 0);
    for (const i of marks) {
      const t = document.createElementNS(SVG, "text");
      const [, m, d] = days[i].day.split("-").map(Number);
      t.setAttribute("x", String(x(i)));
      t.setAttribute("y", String(H - pad + 14));
      t.setAttribute("text-anchor", i === 0 ? "start" : i === days.length - 1 ? "end" : "middle");
      t.dataset.day = days[i].day;
      t.textContent = DATA.lang === "en" ? m + "/" + d : m + "月" + d + "日";
      svg.append(t);
    }
    for (const k of series) {
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", days.map((d, i) => x(i) + "," + y(d[k] || 0)).join(" "));
      line.setAttribute("class", "line " + k);
      line.dataset.series = k;
      svg.append(line);
    }
    $("chart").replaceChildren(svg);
  }

  // Contact details as the notifier's logs print them (notifier/channels/bodies.py masked()): an
  // address keeps its first character and its domain, a phone number its first 3 and last 4 digits.
  function masked(destination) {
    if (destination.includes("@")) {
      return destination.slice(0, 1) + "***" + destination.slice(destination.lastIndexOf("@"));
    }
    if (/^\+?[0-9]{7,20}$/.test(destination)) return destination.slice(0, -8) + "****" + destination.slice(-4);
    return destination;
  }

  const LIMIT = 200;
  // Where failed deliveries are: the notifier's (dead, and refused for good) and those to units'
  // own systems (departments' adapters; their "dead" covers both). Each row in one shape.
  const SOURCES = {
    notifier: {
      async list() {
        const pages = await Promise.all(["dead", "permanent-failure"].map((state) =>
          api("GET", "/v1/ops/notifications?" + new URLSearchParams({ state: state, limit: String(LIMIT) }))));
        return {
          more: pages.some((p) => p.next_cursor),
          rows: pages.flatMap((p) => p.deliveries).map((d) => ({
            id: d.id, kind: d.kind, channel: d.channel, destination: masked(d.destination), case_id: d.case_id,
            state: d.state, reason: d.reason, at: d.created_at,
          })),
        };
      },
      redrive: (id) => "/v1/ops/notifications/" + id + "/redrive",
    },
    adapters: {
      async list() {
        const page = await api("GET", "/v1/ops/deliveries?" + new URLSearchParams({ state: "dead", limit: String(LIMIT) }));
        return {
          more: page.count >= LIMIT,
          rows: page.deliveries.map((d) => ({
            id: d.id, kind: d.event_type, channel: "webhook", destination: unit(d.unit_id), case_id: d.case_id,
            state: "dead", reason: [d.last_status, d.last_error].filter((x) => x !== null && x !== undefined).join(" "),
            at: d.created_at,
          })),
        };
      },
      redrive: (id) => "/v1/ops/deliveries/" + id + "/redrive",
    },
  };

  // A source answers, or is not on this page's origin (a dispatcher served alone: 404, or no answer).
  async function fromSource(name) {
    try {
      return { name: name, ...(await SOURCES[name].list()) };
    } catch (e) {
      if (e.status === 404 || e instanceof TypeError) return { name: name, unreachable: true, rows: [] };
      throw e;
    }
  }

  async function loadFailed() {
    const found = await Promise.all(Object.keys(SOURCES).map(fromSource));
    let total = 0;
    for (const f of found) {
      const tag = $("failed-" + f.name);
      tag.dataset.unreachable = f.unreachable ? "true" : "false";
      tag.className = f.unreachable ? "source unreachable" : "source";
      tag.textContent = T[f.name] + "：" + (f.unreachable ? T.unreachable : f.rows.length + (f.more ? "+" : ""));
      if (DATA.lang === "en") tag.textContent = tag.textContent.replace("：", ": ");
      total += f.rows.length;
    }
    const rows = found.flatMap((f) => f.rows.map((r) => ({ source: f.name, ...r })))
      .sort((a, b) => Date.parse(b.at) - Date.parse(a.at))
      .map(failedRow);
    $("failed").replaceChildren(...rows);
    $("failed-count").textContent = String(total) + (found.some((f) => f.more) ? "+" : "");
    $("failed-count").className = total ? "tag count some" : "tag count";
    $("no-failed").hidden = rows.length > 0;
  }

  function failedRow(d) {
    const tr = el("tr");
    tr.dataset.source = d.source;
    tr.dataset.deliveryId = String(d.id);
    const cell = (label, content, field) => {
      const td = el("td");
      td.dataset.label = label;
      if (field) td.dataset.field = field;
      td.append(content);
      return td;
    };
    const what = el("span", DATA.kinds[d.kind] || d.kind);
    const kind = cell(T.kind, what, "kind");
    kind.append(el("span", T[d.state] || d.state, "tag state " + d.state));
    let caseCell = el("span", "–", "muted");
    if (d.case_id) {
      caseCell = el("button", d.case_id, "case-link");
      caseCell.type = "button";
      caseCell.addEventListener("click", () => showCase(d.case_id));
    }
    const button = el("button", T.redrive, "redrive");
    button.type = "button";
    button.addEventListener("click", () => redrive(d, button));
    tr.append(
      kind,
      cell(T.channel, DATA.channels[d.channel] || d.channel, "channel"),
      cell(T.destination, d.destination, "destination"),
      cell(T.case, caseCell, "case"),
      cell(T.reason, d.reason || "", "reason"),
      cell(T.created, when(d.at), "created"),
      cell("", button),
    );
    return tr;
  }

  async function redrive(d, button) {
    button.disabled = true;
    button.textContent = T.redriving;
    try {
      await api("POST", SOURCES[d.source].redrive(d.id));
    } catch (e) {
      if (e.status !== 409) showError(e.message); // 409: someone re-drove it first
    }
    await loadFailed().catch((e) => showError(e.message));
  }

  // A token is tried before the board opens: one that is not an ops token is refused, saying why.
  async function signIn() {
    try {
      await api("POST", "/v1/ops/breaches/stream-tickets");
    } catch (e) {
      signOut();
      showError(e.status === 403 ? T.not_ops : e.status === 401 ? T.bad_token : e.message);
      return;
    }
    start();
  }

  function start() {
    $("sign-in-panel").hidden = true;
    $("board").hidden = false;
    $("sign-out").hidden = false;
    document.body.dataset.state = "signed-in";
    connect();
    const figures = () => Promise.all([loadRates(), loadChart(), loadFailed()]).catch((e) => showError(e.message));
    const cases = () => loadWatch().catch((e) => showError(e.message));
    figures();
    cases();
    clearInterval(refresher);
    clearInterval(watcher);
    refresher = setInterval(figures, FIGURES_EVERY_MS);
    watcher = setInterval(cases, WATCH_EVERY_MS);
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    if (source) source.close();
    clearTimeout(retry);
    clearInterval(refresher);
    clearInterval(watcher);
    watched = "";
    $("breaches").replaceChildren();
    $("done").replaceChildren();
    $("failed").replaceChildren();
    $("board").hidden = true;
    $("sign-out").hidden = true;
    $("live").hidden = true;
    $("sign-in-panel").hidden = false;
    document.body.dataset.state = "signed-out";
  }

  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const pasted = $("token").value.trim().replace(/^Bearer\s+/i, "");
    if (!pasted) return;
    sessionStorage.setItem(TOKEN_KEY, pasted);
    $("token").value = "";
    $("error").hidden = true;
    signIn();
  });
  $("sign-out").addEventListener("click", signOut);
  $("close-detail").addEventListener("click", () => { $("case-detail").hidden = true; });
  $("failed-refresh").addEventListener("click", () => loadFailed().catch((e) => showError(e.message)));
  setInterval(tickLate, 1000);
  if (token()) signIn();
})();
