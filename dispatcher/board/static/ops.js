// The live board: breaches from the Server-Sent Events stream, figures and failed deliveries
// from the ops JSON API.
// Plain script, no library; the ops token stays in this tab's session storage.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("board-data").textContent);
  const T = DATA.labels;
  const TOKEN_KEY = "gridcall.ops.token";
  const SVG = "http://www.w3.org/2000/svg";
  const breaches = new Map(); // breach_id -> breach
  const lateNow = new Map(); // case_id -> the limit it is late on now (GET /v1/ops/breaches)
  let source = null;
  let retry = null;
  let refresher = null;
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

  async function api(method, path) {
    const response = await fetch(path, {
      method: method,
      headers: { Authorization: "Bearer " + token(), Accept: "application/json", "Accept-Language": DATA.lang },
      cache: "no-store",
    });
    const said = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(said)) offset = said - Date.now();
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) {
      signOut();
    }
    if (!response.ok) {
      // In the page's language: the API's Chinese `message` when it gave one, else its English detail.
      const detail = body.message || (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
      const error = new Error(detail || String(response.status));
      error.status = response.status;
      throw error;
    }
    return body;
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

  // Newest first, then the most late.
  function order(a, b) {
    const at = Date.parse(b.breached_at) - Date.parse(a.breached_at);
    return at !== 0 ? at : b.late_seconds - a.late_seconds;
  }

  function renderBreaches() {
    const rows = [...breaches.values()].sort(order).map((b) => {
      const tr = el("tr");
      tr.dataset.caseId = b.case_id;
      tr.dataset.breachId = String(b.breach_id);
      if (b.supervised) tr.className = "supervised";
      const link = el("button", b.case_id, "case-link");
      link.type = "button";
      link.addEventListener("click", () => showCase(b.case_id));
      const first = el("td");
      first.append(link, el("span", DATA.categories[b.category] || b.category, "muted"));
      if (b.supervised) first.append(el("span", T.supervised, "tag supervised-tag"));
      const handler = unit(b.unit_id) + (b.escalated_to_unit_id ? " → " + unit(b.escalated_to_unit_id) : "");
      const place = el("td", b.grid_id ? DATA.grids[b.grid_id] || b.grid_id : "");
      place.dataset.field = "grid";
      const handled = el("td", handler);
      handled.dataset.field = "unit";
      tr.append(
        first,
        place,
        el("td", DATA.tiers[b.tier] || b.tier),
        handled,
        el("td", T[b.clock] || b.clock),
        lateCell(b),
        el("td", when(b.breached_at)),
      );
      // Each cell named as its column is, for a phone, where the rows are cards.
      [T.case, T.grid, T.tier, T.unit, T.clock, T.late, T.at].forEach((name, i) => { tr.children[i].dataset.label = name; });
      return tr;
    });
    $("breaches").replaceChildren(...rows);
    $("no-breaches").hidden = rows.length > 0;
    tickLate();
  }

  // How late the case is: while it is late now (GET /v1/ops/breaches: an open assignment past its
  // limit, such as a case under supervision), counted from that limit and growing each second by
  // the server's clock; otherwise as late as it was when the breach was recorded (it escalated
  // at once), or when the missed limit was met after all.
  function lateCell(b) {
    const td = el("td", undefined, "late");
    const due = lateNow.get(b.case_id);
    if (due) td.dataset.due = due;
    else if (b.met_at) td.textContent = T.met_late.replace("{t}", duration(b.late_seconds)).replace("{at}", when(b.met_at));
    else td.textContent = duration(b.late_seconds);
    td.dataset.lateSeconds = String(Math.round(b.late_seconds));
    return td;
  }
  function tickLate() {
    const now = Date.now() + offset;
    for (const td of document.querySelectorAll("#breaches td[data-due]")) {
      const late = Math.max(0, (now - Date.parse(td.dataset.due)) / 1000);
      td.dataset.lateSeconds = String(Math.round(late));
      td.textContent = duration(late);
    }
  }
  async function loadLateNow() {
    const late = await api("GET", "/v1/ops/breaches?limit=1000");
    const found = new Map();
    for (const b of late) {
      const known = found.get(b.case_id);
      if (!known || Date.parse(b.due_at) < Date.parse(known)) found.set(b.case_id, b.due_at);
    }
    if (JSON.stringify([...found]) === JSON.stringify([...lateNow])) return; // nothing to draw again
    lateNow.clear();
    for (const [caseId, due] of found) lateNow.set(caseId, due);
    renderBreaches();
  }
  let lateSoon = null;
  function lateNowSoon() { // after a burst of breach events, once
    clearTimeout(lateSoon);
    lateSoon = setTimeout(() => loadLateNow().catch((e) => showError(e.message)), 500);
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
    "case.resolved": "note", "case.reopened": "comment", "case.noted": "text",
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
    source.addEventListener("snapshot", (e) => {
      for (const b of JSON.parse(e.data)) breaches.set(b.breach_id, b);
      renderBreaches();
    });
    source.addEventListener("breach", (e) => {
      const b = JSON.parse(e.data);
      breaches.set(b.breach_id, b);
      renderBreaches();
      lateNowSoon();
    });
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
    const figures = () => Promise.all([loadLateNow(), loadRates(), loadChart(), loadFailed()]).catch((e) => showError(e.message));
    figures();
    clearInterval(refresher);
    refresher = setInterval(figures, FIGURES_EVERY_MS);
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    if (source) source.close();
    clearTimeout(retry);
    clearInterval(refresher);
    breaches.clear();
    lateNow.clear();
    $("breaches").replaceChildren();
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
