// The live board: breaches from the Server-Sent Events stream, figures from the ops JSON API.
// Plain script, no library; the ops token stays in this tab's session storage.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("board-data").textContent);
  const T = DATA.labels;
  const TOKEN_KEY = "gridcall.ops.token";
  const SVG = "http://www.w3.org/2000/svg";
  const breaches = new Map(); // breach_id -> breach
  let source = null;
  let retry = null;
  let refresher = null;
  const FIGURES_EVERY_MS = 60000; // the rates and the chart are re-read each minute; breaches arrive live

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
      headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
      cache: "no-store",
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) {
      signOut();
    }
    if (!response.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      throw new Error(detail || String(response.status));
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
    return new Date(iso).toLocaleString(DATA.lang, { hour12: false });
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
        el("td", duration(b.late_seconds), "late"),
        el("td", when(b.breached_at)),
      );
      return tr;
    });
    $("breaches").replaceChildren(...rows);
    $("no-breaches").hidden = rows.length > 0;
  }

  async function showCase(caseId) {
    try {
      const view = await api("GET", "/v1/ops/cases/" + encodeURIComponent(caseId));
      $("case-id").textContent = caseId;
      $("case-history").replaceChildren(
        ...view.history.map((h) => {
          const detail = [h.tier && (DATA.tiers[h.tier] || h.tier), h.unit_id && unit(h.unit_id),
            h.to_unit_id && "→ " + unit(h.to_unit_id), h.clock && (T[h.clock] || h.clock),
            h.reason].filter(Boolean).join(" · ");
          return el("li", when(h.at) + "  " + h.type + (detail ? "  " + detail : ""));
        }),
      );
      $("case-detail").hidden = false;
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
    for (const k of series) {
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", days.map((d, i) => x(i) + "," + y(d[k] || 0)).join(" "));
      line.setAttribute("class", "line " + k);
      line.dataset.series = k;
      svg.append(line);
    }
    $("chart").replaceChildren(svg);
  }

  function start() {
    $("sign-in-panel").hidden = true;
    $("board").hidden = false;
    $("sign-out").hidden = false;
    document.body.dataset.state = "signed-in";
    connect();
    const figures = () => Promise.all([loadRates(), loadChart()]).catch((e) => showError(e.message));
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
    $("breaches").replaceChildren();
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
    start();
  });
  $("sign-out").addEventListener("click", signOut);
  $("close-detail").addEventListener("click", () => { $("case-detail").hidden = true; });
  if (token()) start();
})();
