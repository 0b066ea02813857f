// The staff console: sign in with a bearer token, work the unit's queue through the JSON API.
// Plain script, no build step. Every text that comes from the API is set with textContent.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("console-data").textContent);
  const T = DATA.labels;
  const LANG = DATA.lang;
  const TOKEN_KEY = "gridcall.console.token";
  const OPS_TOKEN_KEY = "gridcall.ops.token"; // the ops board's (dispatcher/board/static/ops.js)
  const UNIT_KEY = "gridcall.console.unit";
  const REFRESH_MS = 20000;
  const PATHS = {
    claim: "claim", unclaim: "unclaim", note: "notes", evidence: "evidence",
    resolve: "resolve", return: "return", escalate: "escalate", reassign: "reassign", whistle: "whistle",
  };
  const NAMES = {
    claim: T.claim, unclaim: T.unclaim, note: T.add_note, evidence: T.add_evidence,
    resolve: T.resolve, return: T.return, escalate: T.escalate, reassign: T.reassign, whistle: T.whistle,
  };
  const FIELDS = {
    note: ["note-text"], evidence: ["evidence-url", "evidence-caption"], resolve: ["resolve-note"],
    return: ["return-reason", "return-unit"], escalate: ["escalate-reason"], reassign: ["reassign-reason"],
    whistle: ["whistle-reason"],
  };
  // Besides one unit's queue, the unit picker offers these views across queues (GET /v1/tickets).
  const ALL = "*all";
  const MINE = "*mine";

  const state = { me: null, units: [], tickets: [], cursor: null, selected: null, busy: false, loads: 0, across: false };
  const $ = (id) => document.getElementById(id);

  function fill(template, vars) {
    return template.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  }
  function label(prefix, value) {
    const key = prefix + "_" + value;
    return key in T ? T[key] : String(value);
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  // Every time is shown in the policy's time zone, whatever the browser's.
  const TZ = DATA.timezone;
  function when(iso) {
    return iso ? new Date(iso).toLocaleString(LANG, { timeZone: TZ }) : "";
  }
  function dueAt(iso) {
    return new Date(iso).toLocaleString(LANG, { timeZone: TZ, month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  }
  function person(p) {
    return p ? p.name || p.staff_id : "";
  }
  function address(t) {
    const a = t.details && t.details.address;
    return typeof a === "string" ? a : "";
  }
  function category(code) {
    return DATA.categories[code] || code;
  }
  function unitName(id, fallback) {
    return DATA.units[id] || fallback || id;
  }

  // --- messages ---------------------------------------------------------------------------

  function show(id, text) {
    const box = $(id);
    box.textContent = text;
    box.hidden = !text;
  }
  const showError = (text) => show("error", text);
  const showNotice = (text) => show("notice", text);
  function clearMessages() {
    showError("");
    showNotice("");
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
      this.detail = detail;
      this.handled = false;
    }
  }

  // What a refusal says, in the page's language: the API answers in Chinese (`message`) when
  // asked (Accept-Language), and in English (`detail`) always.
  function describe(body, response) {
    const detail = body && body.detail;
    if (Array.isArray(detail)) {
      return detail
        .map((e) => {
          if (e.message) return e.message;
          const loc = (e.loc || []).filter((p) => p !== "body").join(".");
          return loc ? loc + ": " + e.msg : e.msg;
        })
        .join("; ");
    }
    if (body && body.message) return body.message;
    if (typeof detail === "string") return detail;
    return response.status + " " + response.statusText;
  }

  function fail(error) {
    if (error instanceof ApiError) {
      if (error.handled) return;
      showError(error.status === 0 ? error.detail : fill(T.refused, { detail: error.detail }));
    } else {
      showError(String(error));
    }
  }

  // --- the API ----------------------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + token(), Accept: "application/json", "Accept-Language": LANG };
    const init = { method: method, headers: headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, fill(T.network, { detail: e.message }));
    }
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const error = new ApiError(response.status, describe(data, response));
      if (response.status === 401) {
        signOut();
        showError(fill(T.session_ended, { detail: error.detail }));
        error.handled = true;
      }
      throw error;
    }
    return data;
  }

  // --- signing in and out -----------------------------------------------------------------

  let refresher = null;

  async function start() {
    try {
      state.me = await api("GET", "/v1/me");
    } catch (e) {
      if (!(e instanceof ApiError && e.handled)) {
        signOut();
        fail(e);
      }
      return;
    }
    showMe(state.me);
    const linkedTicket = linked();
    if (linkedTicket) { // found in every queue the person may see, then opened
      if ([...$("unit-select").options].some((o) => o.value === ALL)) $("unit-select").value = ALL;
      $("search").value = linkedTicket;
      state.selected = linkedTicket;
    }
    $("sign-in-panel").hidden = true;
    $("console-panel").hidden = false;
    document.body.dataset.state = "signed-in";
    await loadQueue();
    clearInterval(refresher);
    refresher = setInterval(loadQueue, REFRESH_MS);
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(UNIT_KEY);
    clearInterval(refresher);
    refresher = null;
    Object.assign(state, { me: null, units: [], tickets: [], cursor: null, selected: null });
    $("me").hidden = true;
    $("reach-form").hidden = true;
    $("console-panel").hidden = true;
    $("sign-in-panel").hidden = false;
    $("queue").replaceChildren();
    $("summary").textContent = "";
    $("search").value = "";
    clearFields();
    deselect();
    document.body.dataset.state = "signed-out";
  }

  function showMe(me) {
    $("me-name").textContent = me.name || me.staff_id;
    $("me-unit").textContent = me.unit_id ? unitName(me.unit_id, me.unit_name) + " · " + label("kind", me.unit_kind) : "";
    $("me-role").textContent = label("role", me.role);
    $("me").hidden = false;
    showReach(me.reach || null);
    const own = me.unit_id ? [{ unit_id: me.unit_id, name: me.unit_name, kind: me.unit_kind }] : [];
    state.units = me.units && me.units.length ? me.units : own;
    const option = (u) => el("option", { value: u.unit_id, text: unitName(u.unit_id, u.name) + " · " + label("kind", u.kind) });
    const select = $("unit-select");
    const views = [
      state.units.length > 1 ? el("option", { value: ALL, text: T.all_units }) : null,
      me.staff_id ? el("option", { value: MINE, text: T.my_tickets }) : null,
    ].filter(Boolean);
    select.replaceChildren(...views, ...state.units.map(option));
    const remembered = sessionStorage.getItem(UNIT_KEY);
    const ids = [...views.map((o) => o.value), ...state.units.map((u) => u.unit_id)];
    select.value = ids.includes(remembered) ? remembered : ids.includes(me.unit_id) ? me.unit_id : state.units.length ? state.units[0].unit_id : ids[0] || "";
    select.disabled = ids.length < 2;
    const supervisor = me.role === "supervisor";

    $("reassign-unit").replaceChildren(...(supervisor ? state.units.map(option) : []));
  }

  // What the queue shows: one unit's (or pool's) queue, every queue under the caller, or theirs.
  // --- one's own reach (PUT /v1/me/reach) ----------------------------------------------------

  function showReach(reach) {
    $("reach-toggle").hidden = !reach; // ops have none
    if (!reach) return;
    $("reach-email").value = reach.email || "";
    $("reach-phone").value = reach.phone || "";
    $("reach-language").value = reach.language || "zh-CN";
    for (const box of document.querySelectorAll("#reach-channels input")) box.checked = (reach.channels || []).includes(box.value);
  }

  async function saveReach() {
    clearMessages();
    const body = {
      email: value("reach-email") || null,
      phone: value("reach-phone") || null,
      language: $("reach-language").value,
      channels: [...document.querySelectorAll("#reach-channels input:checked")].map((b) => b.value),
    };
    try {
      const saved = await api("PUT", "/v1/me/reach", body);
      state.me.reach = saved;
      showReach(saved);
      showNotice(T.reach_saved);
    } catch (e) {
      fail(e); // what was typed stays, to correct
    }
  }

  function currentScope() {
    const id = $("unit-select").value;
    if (id === ALL || id === MINE) return { view: id };
    const unit = state.units.find((u) => u.unit_id === id);
    return unit ? { view: "unit", unit } : null;
  }

  // --- the queue --------------------------------------------------------------------------

  function queuePath(scope, cursor) {
    const q = new URLSearchParams();
    const search = $("search").value.trim();
    if (search) q.set("q", search); // a search looks at every status
    else {
      for (const box of document.querySelectorAll("#filter-status input[name=status]:checked")) {
        q.append("status", box.value);
      }
    }
    if ($("filter-late").checked) q.set("late", "true");
    q.set("limit", "50");
    if (cursor) q.set("cursor", cursor);
    if (scope.view === MINE) q.set("mine", "true");
    if (scope.view !== "unit") return "/v1/tickets?" + q.toString();
    const base = scope.unit.kind === "pool" ? "/v1/pools/" : "/v1/units/";
    return base + encodeURIComponent(scope.unit.unit_id) + "/tickets?" + q.toString();
  }

  async function loadQueue(more) {
    const scope = currentScope();
    if (!state.me || !scope) return;
    state.across = scope.view !== "unit";
    try {
      const page = await api("GET", queuePath(scope, more ? state.cursor : null));
      const fetchedAt = Date.now();
      const rows = page.tickets.map((t) => row(t, fetchedAt));
      if (more) $("queue").append(...rows);
      else $("queue").replaceChildren(...rows);
      state.tickets = more ? state.tickets.concat(page.tickets) : page.tickets;
      state.cursor = page.next_cursor;
      $("more").hidden = !state.cursor;
      $("queue-empty").hidden = state.tickets.length > 0;
      $("last-refresh").textContent = fill(T.last_refresh, { t: new Date().toLocaleTimeString(LANG, { timeZone: TZ, hourCycle: "h23" }) });
      $("queue").dataset.loads = String(++state.loads);
      markSelected();
      tick();
    } catch (e) {
      fail(e);
      return;
    }
    if (!more) {
      await loadSummary(scope);
      if (state.selected) await loadDetail(state.selected);
    }
  }

  async function loadSummary(scope) {
    const search = $("search").value.trim();
    const n = state.tickets.length + (state.cursor ? "+" : "");
    if (search) {
      $("summary").textContent = fill(T.searching, { q: search, n });
      return;
    }
    if (scope.view !== "unit") {
      $("summary").textContent = fill(T.listed, { n });
      return;
    }
    const unit = scope.unit;
    try {
      const s = await api("GET", "/v1/units/" + encodeURIComponent(unit.unit_id) + "/summary");
      const counts = s.counts || {};
      $("summary").textContent = fill(T.summary, { open: counts.open || 0, claimed: counts.claimed || 0, late: s.late || 0 });
    } catch (e) {
      $("summary").textContent = "";
    }
  }

  function deadline(t, fetchedAt) {
    const clock = t.clock;
    if (!clock) return null;
    // Counted from the server's seconds_left, so a browser whose clock is wrong still counts right.
    if (typeof clock.seconds_left === "number") return fetchedAt + clock.seconds_left * 1000;
    return clock.due ? Date.parse(clock.due) : null;
  }

  // Whether the limit running now counts working time only (the policy's calendar).
  function countsWorkingTime(t) {
    const limits = ((DATA.working[t.category] || {})[t.priority] || {})[t.tier] || [];
    return t.clock && t.clock.name ? limits.includes(t.clock.name) : false;
  }

  // The countdown (ticking in the browser), and beside it the time of day it runs out.
  function clockNode(t, fetchedAt) {
    const due = deadline(t, fetchedAt);
    const node = el("span", { "data-clock": t.clock && t.clock.name ? t.clock.name : "" });
    if (due === null) node.textContent = "—";
    else node.dataset.deadline = String(due);
    if (!t.clock || !t.clock.due) return node;
    const at = [fill(T.due_at, { t: dueAt(t.clock.due) }), countsWorkingTime(t) ? T.working_time : ""].filter(Boolean).join(" · ");
    return el("span", { class: "clock" }, node, el("span", { class: "muted due", "data-due": t.clock.due, text: at }));
  }

  function actionButton(action, text, disabled) {
    return el("button", { type: "button", "data-action": action, disabled: disabled, text: text });
  }

  function row(t, fetchedAt) {
    const tr = el("tr", {
      "data-ticket-id": t.ticket_id,
      "data-case-id": t.case_id,
      "data-status": t.status,
      "data-late": t.late ? "true" : "false",
      class: t.late ? "late" : null,
    });
    tr.append(
      el("td", { "data-field": "priority", "data-label": T.priority, class: "priority-" + t.priority, text: label("priority", t.priority) }),
      el("td", { "data-field": "category", "data-label": T.category, text: category(t.category) }),
      el(
        "td",
        {},
        el("div", { "data-field": "description", text: t.description }),
        el("div", { "data-field": "address", class: "muted", text: address(t) }),
        state.across ? el("div", { "data-field": "row-unit", class: "muted", text: unitName(t.unit_id) }) : null,
      ),
      el("td", { "data-field": "reporters", "data-label": T.reporters, class: "num", text: String(t.reporters) }),
      el("td", { "data-field": "status", "data-label": T.status, text: label("status", t.status) }),
      el("td", { "data-field": "claimed-by", "data-label": T.claimed_by, text: person(t.claimed_by) }),
      el("td", { "data-field": "clock", "data-label": T.clock }, clockNode(t, fetchedAt)),
      el(
        "td",
        {},
        el(
          "div",
          { class: "buttons" },
          actionButton("open", T.open, false),
          ...["claim", "unclaim"].filter((a) => (t.allowed_actions || []).includes(a)).map((a) => actionButton(a, T[a], false)),
        ),
      ),
    );
    return tr;
  }

  function duration(seconds) {
    const d = Math.floor(seconds / 86400);
    const h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    const pad = (n) => String(n).padStart(2, "0");
    return (d ? fill(T.days, { n: d }) + " " : "") + pad(h) + ":" + pad(m) + ":" + pad(s);
  }

  function tick() {
    const now = Date.now();
    for (const node of document.querySelectorAll("[data-deadline]")) {
      const left = Math.round((Number(node.dataset.deadline) - now) / 1000);
      const name = node.dataset.clock ? label("clock", node.dataset.clock) + " " : "";
      node.textContent = name + (left >= 0 ? fill(T.left, { t: duration(left) }) : fill(T.overdue, { t: duration(-left) }));
      node.dataset.secondsLeft = String(left);
      node.classList.toggle("overdue", left < 0);
    }
  }

  // --- one ticket -------------------------------------------------------------------------

  function clearFields() {
    for (const ids of Object.values(FIELDS)) {
      for (const id of ids) {
        $(id).value = "";
        showCount($(id));
      }
    }
  }

  async function select(ticketId) {
    if (state.selected !== ticketId) clearFields();
    state.selected = ticketId;
    markSelected();
    await loadDetail(ticketId);
  }

  function deselect() {
    state.selected = null;
    $("detail").dataset.ticketId = "";
    $("detail").dataset.status = "";
    $("detail-body").hidden = true;
    $("detail-empty").hidden = false;
  }

  function markSelected() {
    for (const tr of $("queue").querySelectorAll("tr[data-ticket-id]")) {
      tr.classList.toggle("selected", tr.dataset.ticketId === state.selected);
    }
  }

  async function loadDetail(ticketId) {
    try {
      showDetail(await api("GET", "/v1/tickets/" + encodeURIComponent(ticketId)), Date.now());
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && state.selected === ticketId) deselect();
      fail(e);
    }
  }

  // --- the case as the resident gave it ----------------------------------------------------

  // The category's answers the resident gave (details.attributes), each under its question.
  function attributeFacts(t) {
    const given = (t.details && t.details.attributes) || {};
    const asked = DATA.attributes[t.category] || [];
    const known = new Map(asked.map((a) => [a.code, a]));
    const codes = [...asked.map((a) => a.code).filter((c) => c in given), ...Object.keys(given).filter((c) => !known.has(c))];
    return codes.flatMap((code) => {
      const a = known.get(code) || { label: code, values: {} };
      const answers = (Array.isArray(given[code]) ? given[code] : [given[code]]).map((v) => a.values[v] || String(v));
      return fact(a.label, el("span", { "data-attribute": code, text: answers.join(LANG.startsWith("zh") ? "、" : ", ") }));
    });
  }

  function mediaList(t) {
    const urls = ((t.details && t.details.media_urls) || []).filter((u) => /^https?:\/\//i.test(u));
    if (!urls.length) return null;
    return el("ul", { class: "media" }, ...urls.map((u) => el("li", {}, el("a", { href: u, target: "_blank", rel: "noopener noreferrer", "data-media": "", text: u }))));
  }

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  // The grid's polygon from the district file with the reported place on it: no map tiles, so
  // nothing loads from elsewhere. Degrees of longitude are narrowed by cos(latitude), so the
  // shape keeps its proportions.
  function placeDrawing(t) {
    const corners = DATA.shapes[t.grid_id];
    if (!corners || !t.location) return null;
    const k = Math.cos((t.location.lat * Math.PI) / 180);
    const points = [...corners, [t.location.lon, t.location.lat]].map(([lon, lat]) => [lon * k, lat]);
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const size = 200;
    const pad = 12;
    const scale = (size - 2 * pad) / Math.max(x1 - x0, y1 - y0, 1e-9);
    const at = ([x, y]) => [pad + (x - x0) * scale, pad + (y1 - y) * scale];
    const [px, py] = at(points[points.length - 1]);
    const width = Math.ceil(2 * pad + (x1 - x0) * scale);
    const height = Math.ceil(2 * pad + (y1 - y0) * scale);
    const grid = DATA.grids[t.grid_id] || t.grid_id;
    const drawing = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": fill(T.map, { grid }), "data-field": "map" });
    drawing.append(
      svg("polygon", { points: points.slice(0, -1).map((p) => at(p).map((v) => v.toFixed(1)).join(",")).join(" "), class: "grid-shape" }),
      svg("circle", { cx: px.toFixed(1), cy: py.toFixed(1), r: 6, class: "place", "data-place": "" }),
    );
    const where = `${t.location.lat.toFixed(5)}, ${t.location.lon.toFixed(5)}`;
    return el("figure", { class: "place-drawing" }, drawing, el("figcaption", { class: "muted", text: where }));
  }

  function fact(name, value) {
    return value === null || value === undefined || value === "" ? [] : [el("dt", { text: name }), el("dd", {}, value)];
  }

  function noteItem(n) {
    const head = [when(n.at), person(n.by), n.visibility ? T[n.visibility] || n.visibility : "", n.unit_id ? unitName(n.unit_id) : ""];
    return el(
      "li",
      { "data-note-id": n.note_id || null, "data-visibility": n.visibility || null },
      el("span", { class: "muted", text: head.filter(Boolean).join(" · ") }),
      el("div", { text: n.text }),
    );
  }

  function evidenceItem(e) {
    const link = /^https?:\/\//i.test(e.url)
      ? el("a", { href: e.url, target: "_blank", rel: "noopener noreferrer", text: e.caption || e.url })
      : el("span", { text: e.caption || e.url });
    return el("li", { "data-evidence-url": e.url }, link, el("span", { class: "muted", text: " " + [person(e.by), when(e.at)].filter(Boolean).join(" · ") }));
  }

  function list(id, items, render) {
    $(id).replaceChildren(...(items && items.length ? items.map(render) : [el("li", { class: "muted", text: T.none })]));
  }

  function showDetail(t, fetchedAt) {
    if (state.selected !== t.ticket_id) return;
    const detail = $("detail");
    detail.dataset.ticketId = t.ticket_id;
    detail.dataset.status = t.status;
    $("detail-empty").hidden = true;
    $("detail-body").hidden = false;
    const contact = t.contact ? [t.contact.name, t.contact.phone].filter(Boolean).join(" ") : "";
    $("detail-fields").replaceChildren(
      ...fact(T.case, t.case_id),
      ...fact(T.category, category(t.category)),
      ...fact(T.description, t.description),
      ...attributeFacts(t),
      ...fact(T.media, mediaList(t)),
      ...fact(T.address, address(t)),
      ...fact(T.grid, el("span", { "data-field": "grid", text: DATA.grids[t.grid_id] || t.grid_id })),
      ...fact(T.location, placeDrawing(t)),
      ...fact(T.unit, el("span", { "data-field": "unit", text: unitName(t.unit_id) })),
      ...fact(T.priority, label("priority", t.priority)),
      ...fact(T.status, el("span", { "data-field": "status", text: label("status", t.status) })),
      ...fact(T.tier, label("tier", t.tier)),
      ...fact(T.reporters, String(t.reporters)),
      ...fact(T.claimed_by, person(t.claimed_by)),
      ...fact(T.clock, clockNode(t, fetchedAt)),
      ...fact(T.contact, contact),
      ...fact(T.arrived_because, t.arrived_because),
      ...fact(T.result, t.note),
      ...fact(T.created_at, when(t.created_at)),
    );
    list("detail-notes", t.notes, noteItem);
    list("detail-case-notes", t.case_notes, noteItem);
    list("detail-evidence", t.evidence, evidenceItem);
    // Only what the API says this person may do to this ticket now (its allowed_actions).
    const allowed = new Set(t.allowed_actions || []);
    for (const node of detail.querySelectorAll("form[data-action], button[data-action]:not(form button)")) {
      node.hidden = !allowed.has(node.dataset.action);
    }
    tick();
  }

  // --- actions ----------------------------------------------------------------------------

  function value(id) {
    return $(id).value.trim();
  }

  // Characters as the API counts them (code points, not UTF-16 units), against a field's data-max.
  function length(text) {
    return [...text].length;
  }
  function counted(id, name) {
    const v = value(id);
    const most = Number($(id).dataset.max || 0);
    if (most && length(v) > most) throw new Error(fill(T.too_long, { field: name, n: length(v), max: most }));
    return v;
  }
  function required(id, name) {
    const v = counted(id, name);
    if (!v) throw new Error(fill(T.required, { field: name }));
    return v;
  }
  // Each counted field shows how much of its limit is used, and says so before sending when over.
  function showCount(field) {
    const out = document.querySelector(`[data-count-for="${field.id}"]`);
    if (!out) return;
    const n = length(field.value.trim());
    const most = Number(field.dataset.max);
    out.textContent = n ? fill(T.count, { n, max: most }) : "";
    out.classList.toggle("overdue", n > most);
  }
  document.addEventListener("input", (e) => {
    if (e.target instanceof HTMLElement && e.target.dataset.max) showCount(e.target);
  });

  function bodyFor(action) {
    switch (action) {
      case "note":
        return { text: required("note-text", T.note_text), visibility: $("note-visibility").value };
      case "evidence": {
        const url = required("evidence-url", T.evidence_url);
        if (!/^https?:\/\//i.test(url)) throw new Error(T.bad_url);
        return { url: url, caption: counted("evidence-caption", T.evidence_caption) };
      }
      case "resolve":
        return { note: required("resolve-note", T.resolve_note) };
      case "return": {
        const body = { reason_code: $("return-code").value, reason: required("return-reason", T.return_reason) };
        if (value("return-unit")) body.suggested_unit_id = value("return-unit");
        return body;
      }
      case "escalate":
        return { reason: required("escalate-reason", T.escalate_reason) };
      case "reassign":
        return { unit_id: $("reassign-unit").value, reason: required("reassign-reason", T.reassign_reason) };
      case "whistle": {
        const lead = $("whistle-lead").value;
        if (!lead) throw new Error(T.pick_lead);
        const co = [...document.querySelectorAll("#whistle-co input:checked")].map((b) => b.value).filter((d) => d !== lead);
        return { lead, co, reason: required("whistle-reason", T.whistle_reason) };
      }
      default:
        return undefined; // claim, unclaim: no body
    }
  }

  async function act(ticketId, action) {
    if (state.busy || !ticketId) return;
    clearMessages();
    let body;
    try {
      body = bodyFor(action);
    } catch (e) {
      showError(e.message);
      return;
    }
    state.busy = true;
    document.body.dataset.busy = "true";
    try {
      const ticket = await api("POST", "/v1/tickets/" + encodeURIComponent(ticketId) + "/" + PATHS[action], body);
      showNotice(fill(T.done, { action: NAMES[action] }));
      for (const id of FIELDS[action] || []) {
        $(id).value = "";
        showCount($(id));
      }
      if (action === "claim" && state.selected !== ticketId) {
        clearFields();
        state.selected = ticketId;
      }
      if (state.selected === ticketId) showDetail(ticket, Date.now());
      markSelected();
    } catch (e) {
      fail(e);
    } finally {
      state.busy = false;
      document.body.dataset.busy = "false";
    }
    await loadQueue();
  }

  // --- wiring -----------------------------------------------------------------------------

  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const pasted = $("token").value.trim().replace(/^Bearer\s+/i, "");
    if (!pasted) return;
    sessionStorage.setItem(TOKEN_KEY, pasted);
    $("token").value = "";
    clearMessages();
    start();
  });
  $("reach-toggle").addEventListener("click", () => {
    const open = $("reach-form").hidden;
    $("reach-form").hidden = !open;
    $("reach-toggle").setAttribute("aria-expanded", String(open));
  });
  $("reach-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveReach();
  });
  $("sign-out").addEventListener("click", () => {
    clearMessages();
    signOut();
  });
  $("unit-select").addEventListener("change", () => {
    sessionStorage.setItem(UNIT_KEY, $("unit-select").value);
    loadQueue();
  });
  for (const box of document.querySelectorAll("#filter-status input, #filter-late")) {
    box.addEventListener("change", () => loadQueue());
  }
  $("refresh").addEventListener("click", () => loadQueue());
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadQueue();
  });
  $("search").addEventListener("search", () => loadQueue()); // the field's clear button
  $("more").addEventListener("click", () => loadQueue(true));
  $("queue").addEventListener("click", (event) => {
    const tr = event.target.closest("tr[data-ticket-id]");
    if (!tr) return;
    const button = event.target.closest("button[data-action]");
    if (button && button.dataset.action !== "open") act(tr.dataset.ticketId, button.dataset.action);
    else select(tr.dataset.ticketId);
  });
  $("detail").addEventListener("click", (event) => {
    const button = event.target.closest("button[type=button][data-action]");
    if (button) act($("detail").dataset.ticketId, button.dataset.action);
  });
  $("detail").addEventListener("submit", (event) => {
    event.preventDefault();
    act($("detail").dataset.ticketId, event.target.dataset.action);
  });

  // A link to one ticket, /console#ticket=ID (the ops board's "open ticket").
  function linked() {
    const found = /^#ticket=([A-Za-z0-9._:-]{1,64})$/.exec(location.hash);
    return found ? found[1] : null;
  }

  setInterval(tick, 1000);
  document.body.dataset.state = "signed-out";
  // Opened from the ops board: the browser gave this tab a copy of the board's session storage,
  // so the ticket opens with the officer's ops token (ops read every ticket, and act on none).
  const fromBoard = sessionStorage.getItem(OPS_TOKEN_KEY);
  if (!token() && linked() && fromBoard) sessionStorage.setItem(TOKEN_KEY, fromBoard);
  if (token()) start();
})();
