// The weekly review page of backlog-bridge: reads the backlog through the API's GET routes
// (dashboard, items, item events) and draws it. Read-only: this script only ever sends GET
// requests, and the page has no control that changes anything.
//
// Authentication: the key typed into the login field (or given once in the URL fragment as
// `#key=...`, for automation) is kept in this tab's sessionStorage and sent as
// `Authorization: Bearer` by this script; it is never a cookie. Without a key the requests
// go out bare, which works when the bridge runs with `--anonymous-agent`.
"use strict";

(function () {
  const KEY_SLOT = "backlog-bridge.key";
  const SVG = "http://www.w3.org/2000/svg";
  const WEEKS = 12;
  const DAY = 86400000;

  const meta = document.querySelector('meta[name="backlog-envs"]');
  const ENVS = (meta ? meta.content : "").split(",").filter(function (e) { return e; });
  if (ENVS.length === 0) ENVS.push("prod");

  const $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    }
    for (const c of [].concat(children === undefined ? [] : children)) {
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function hashParams() {
    return new URLSearchParams(location.hash.replace(/^#/, ""));
  }

  function link(params) {
    return "#" + new URLSearchParams(params).toString();
  }

  // `#key=...`: stored for this tab, then removed from the address bar and the history.
  function takeKeyFromFragment() {
    const p = hashParams();
    if (!p.has("key")) return;
    const key = p.get("key").trim();
    if (key) sessionStorage.setItem(KEY_SLOT, key);
    p.delete("key");
    const rest = p.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path) {
    const headers = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY_SLOT);
    if (key) headers.Authorization = "Bearer " + key;
    const resp = await fetch(path, {
      method: "GET",
      headers: headers,
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
    });
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    if (!resp.ok) {
      const message = body && body.error ? body.error : "HTTP " + resp.status;
      throw new ApiError(resp.status, body && body.code, message);
    }
    return body;
  }

  function query(params) {
    return new URLSearchParams(params).toString();
  }

  // Every item of an env, page by page (at most 20 pages of 1000).
  async function allItems(env) {
    const items = [];
    let offset = 0;
    for (let page = 0; page < 20 && offset !== null && offset !== undefined; page++) {
      const r = await api("/v1/backlog/items?" + query({ env: env, limit: 1000, offset: offset }));
      items.push.apply(items, r.items || []);
      offset = r.next_offset;
    }
    return items;
  }

  function countTable(table, env, kind, counts) {
    table.replaceChildren();
    for (const [k, v] of Object.entries(counts || {})) {
      table.append(el("tr", {}, [
        el("td", {}, k),
        el("td", { id: env + "-" + kind + "-" + k, class: "n" }, v),
      ]));
    }
  }

  function badge(text) {
    return el("span", { class: "badge " + text }, text);
  }

  function itemHeader() {
    return el("tr", {}, ["id", "priority", "status", "service", "title", "owner", "due"].map(
      function (h) { return el("th", {}, h); }));
  }

  function itemRow(item, extra) {
    return el("tr", Object.assign({ "data-id": item.id, class: item.priority === "P0" ? "p0" : "" }, extra || {}), [
      el("td", {}, el("code", {}, item.id)),
      el("td", {}, badge(item.priority)),
      el("td", {}, item.status),
      el("td", {}, item.service),
      el("td", {}, item.title),
      el("td", {}, item.owner || ""),
      el("td", {}, item.due_date || ""),
    ]);
  }

  function isClosed(item) {
    return item.status === "done" || item.status === "canceled";
  }

  // Open and overdue counts at the end of each of the last WEEKS weeks. An item counts as
  // open from its created_at until it is closed; a closed item's updated_at is taken as its
  // closing time. Overdue: open with a due_date before that day.
  function weekly(items, now) {
    const points = [];
    for (let i = WEEKS - 1; i >= 0; i--) {
      const t = now - i * 7 * DAY;
      const day = new Date(t).toISOString().slice(0, 10);
      let open = 0;
      let overdue = 0;
      for (const it of items) {
        const created = Date.parse(it.created_at);
        if (!(created <= t)) continue;
        if (isClosed(it) && Date.parse(it.updated_at) <= t) continue;
        open++;
        if (it.due_date && it.due_date < day) overdue++;
      }
      points.push({ day: day, open: open, overdue: overdue });
    }
    return points;
  }

  function plot(points) {
    const W = 1100, H = 260, L = 40, R = 20, T = 16, B = 36;
    const step = Math.max(1, Math.ceil(Math.max(1, ...points.map(function (p) { return p.open; })) / 4));
    const max = step * 4;
    const x = function (i) { return L + (i * (W - L - R)) / Math.max(1, points.length - 1); };
    const y = function (v) { return T + (H - T - B) * (1 - v / max); };
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", role: "img",
      "aria-label": "open and overdue items per week" });
    for (let k = 0; k <= 4; k++) {
      const v = step * k;
      root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e6e9ef" }));
      root.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, v));
    }
    points.forEach(function (p, i) {
      root.append(svg("text", { x: x(i), y: H - 14, "text-anchor": "middle" }, p.day.slice(5)));
    });
    const series = [["open", "#2f5fb3"], ["overdue", "#c62828"]];
    for (const [name, color] of series) {
      const pts = points.map(function (p, i) { return x(i) + "," + y(p[name]); }).join(" ");
      root.append(svg("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2.5,
        "data-series": name }));
      points.forEach(function (p, i) {
        root.append(svg("circle", { cx: x(i), cy: y(p[name]), r: 3, fill: color }));
      });
    }
    series.forEach(function ([name, color], k) {
      root.append(svg("rect", { x: L + 10 + k * 90, y: H - 10, width: 12, height: 4, fill: color }));
      root.append(svg("text", { x: L + 26 + k * 90, y: H - 5 }, name));
    });
    return root;
  }

  async function serviceItems(env, service) {
    const box = $("service-items");
    box.replaceChildren();
    $("service-title").textContent = service ? "Items of " + service + " (" + env + ")" : "Items of a service";
    if (!service) {
      box.append(el("p", { class: "note" }, "No open items in this env."));
      return;
    }
    const r = await api("/v1/backlog/items?" + query({ env: env, service: service, limit: 50 }));
    const table = el("table", { class: "items", id: "service-table" }, itemHeader());
    for (const item of (r.items || []).slice(0, 25)) {
      table.append(itemRow(item));
      const ev = await api("/v1/backlog/items/" + encodeURIComponent(item.id) + "/events?limit=20");
      const lines = (ev.events || []).map(function (e) {
        return el("div", {}, e.ts.slice(0, 16).replace("T", " ") + "  " + e.type + " by " + e.actor +
          (e.message ? ": " + e.message : ""));
      });
      table.append(el("tr", { "data-events-of": item.id }, el("td", { colspan: 7 },
        el("div", { class: "events" }, lines))));
    }
    box.append(table);
    if ((r.total || 0) > 25) box.append(el("p", { class: "note" }, "first 25 of " + r.total));
  }

  function showError(e) {
    const p = $("error");
    p.textContent = e.message + (e.code ? " (" + e.code + ")" : "");
    p.hidden = false;
  }

  async function render() {
    const p = hashParams();
    const env = p.get("env") || ENVS[0];
    document.body.dataset.state = "loading";
    $("error").hidden = true;
    const nav = $("envs");
    nav.replaceChildren(...ENVS.map(function (e) {
      return el("a", { href: link({ env: e }), class: e === env ? "current" : "" }, e);
    }));
    $("who").replaceChildren();
    if (sessionStorage.getItem(KEY_SLOT)) {
      const forget = el("a", { href: "#", id: "forget" }, "forget key");
      forget.addEventListener("click", function (ev) {
        ev.preventDefault();
        sessionStorage.removeItem(KEY_SLOT);
        render();
      });
      $("who").append("key in this tab · ", forget);
    }
    let dash;
    try {
      dash = await api("/v1/backlog/dashboard?" + query({ env: env }));
    } catch (e) {
      if (e.status === 401) {
        $("main").hidden = true;
        $("login").hidden = false;
        document.body.dataset.state = "login";
        $("key").focus();
        if (sessionStorage.getItem(KEY_SLOT)) showError(e);
        return;
      }
      showError(e);
      document.body.dataset.state = "error";
      return;
    }
    $("login").hidden = true;
    $("main").hidden = false;
    $("generated").textContent = dash.generated_at;
    $("backend").textContent = dash.backend;
    countTable($("status"), env, "status", dash.status_counts);
    countTable($("priority"), env, "priority", dash.priority_counts);
    $("status").append(el("tr", {}, [el("td", {}, "total"), el("td", { id: env + "-total", class: "n" }, dash.total)]));
    $("priority").append(el("tr", {}, [el("td", {}, "overdue"),
      el("td", { id: env + "-overdue-count", class: "n" }, dash.overdue_count)]));

    const service = p.get("service") || (dash.top_services[0] && dash.top_services[0].service) || "";
    const services = $("services");
    services.replaceChildren();
    for (const s of dash.top_services || []) {
      services.append(el("tr", { class: s.service === service ? "current" : "" }, [
        el("td", {}, el("a", { href: link({ env: env, service: s.service }) }, s.service)),
        el("td", { class: "n" }, s.count),
      ]));
    }

    const alerts = $("alerts");
    alerts.replaceChildren();
    if ((dash.alerts || []).length === 0) alerts.append(el("li", { class: "note" }, "no alerts"));
    for (const a of dash.alerts || []) {
      alerts.append(el("li", { "data-level": a.level }, [badge(a.level), " " + a.target + ": " + a.reason,
        a.items ? el("div", { class: "note" }, a.items.join(", ")) : ""]));
    }

    // P0 and overdue: the dashboard's overdue items, then the open P0 items not among them.
    const table = $("overdue");
    table.replaceChildren(itemHeader());
    const shown = new Set();
    for (const item of dash.overdue || []) {
      shown.add(item.id);
      table.append(itemRow(item, { "data-overdue": "true" }));
    }
    const p0 = await api("/v1/backlog/items?" + query({ env: env, priority: "P0", status: "open,in_progress,blocked", limit: 100 }));
    for (const item of p0.items || []) {
      if (!shown.has(item.id)) table.append(itemRow(item, { "data-overdue": "false" }));
    }

    const items = await allItems(env);
    const now = Date.parse(dash.generated_at) || Date.now();
    $("plot").replaceChildren(plot(weekly(items, now)));
    $("plot-note").textContent = "Counted at the end of each week from the items' created_at; a done or canceled item's " +
      "updated_at is taken as its closing time. " + items.length + " items in " + env + ".";

    await serviceItems(env, service);
    document.body.dataset.state = "ready";
  }

  function run() {
    render().catch(function (e) {
      showError(e);
      document.body.dataset.state = "error";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    takeKeyFromFragment();
    $("key").addEventListener("keydown", function (ev) {
      if (ev.key !== "Enter") return;
      const key = ev.target.value.trim();
      ev.target.value = "";
      if (key) sessionStorage.setItem(KEY_SLOT, key);
      run();
    });
    window.addEventListener("hashchange", function () {
      takeKeyFromFragment();
      run();
    });
    run();
  });
})();
