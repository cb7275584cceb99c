// choreo ui: reads the JSON the CLI prints (served by `choreo ui` under /api) and draws the
// hosts, the map of who reacts to what, recent conversations and one conversation's trace.
// Text from messages goes into the page through textContent only.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function setState(id, state) { document.getElementById(id).dataset.state = state; }

// ---- hosts ----

function renderHosts(data) {
  const body = document.querySelector("#hosts tbody");
  body.replaceChildren();
  for (const h of data.hosts) {
    const s = h.answer;
    const row = el("tr", { class: s ? "host" : "host down", "data-host": h.name });
    if (!s) {
      row.append(el("td", {}, h.name), el("td", { colspan: 8 }, "did not answer: " + (h.error || "?")));
    } else {
      const peers = (s.peers || []).map((p) => `${p.name || p.url} (${p.lag}${p.up ? "" : ", down"})`).join(", ");
      row.append(el("td", {}, s.name), el("td", {}, `generation ${s.generation}` + (s.reload_error ? " (reload refused)" : "")),
        el("td", {}, String(s.head)), el("td", {}, s.handled_per_s.toFixed(1)), el("td", {}, String(s.dead_letters)),
        el("td", {}, String(s.retries_pending)), el("td", {}, String(s.sagas_running)),
        el("td", {}, `${s.workflows_running} running, ${s.workflows_stuck} stuck`), el("td", {}, peers || "-"));
    }
    body.append(row);
  }
  setState("hosts", "ready");
}

// ---- map ----

function renderMap(map) {
  const svg = document.getElementById("map-svg");
  svg.replaceChildren(el("svg:defs", {}, el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, el("svg:path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#4a6fa5" }))));
  const names = map.hosts.map((h) => h.name);
  for (const e of map.edges) for (const n of [e.from, e.to]) if (!names.includes(n)) names.push(n);
  const W = svg.clientWidth || 900, H = svg.clientHeight || 420, R = Math.min(W, H) / 2 - 70;
  const pos = {};
  names.forEach((n, i) => {
    const a = (2 * Math.PI * i) / names.length - Math.PI / 2;
    pos[n] = { x: W / 2 + R * Math.cos(a), y: H / 2 + R * Math.sin(a) };
  });
  const pairs = {};
  for (const e of map.edges) {
    // Edges between the same two services, either way, bow out further one after the other.
    const key = [e.from, e.to].sort().join("\u0000"), k = (pairs[key] = (pairs[key] || 0) + 1) - 1;
    const a = pos[e.from], b = pos[e.to];
    let d, lx, ly;
    if (e.from === e.to) { // a loop above the node
      const r = 28 + 10 * k;
      d = `M ${a.x - 10} ${a.y - 14} C ${a.x - r} ${a.y - 2.5 * r}, ${a.x + r} ${a.y - 2.5 * r}, ${a.x + 10} ${a.y - 14}`;
      lx = a.x; ly = a.y - 1.9 * r - 12 * k;
    } else { // a bow, one per message type between the two
      const mx = (a.x + b.x) / 2, my = (a.y + b.y) / 2, dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
      // Sideways from the pair's own direction (not the edge's), alternating sides.
      const flip = e.from < e.to ? 1 : -1, px = (-dy / len) * flip, py = (dx / len) * flip;
      const bend = (k % 2 ? -1 : 1) * (90 + 110 * Math.floor(k / 2));
      const cx = mx + px * bend, cy = my + py * bend;
      const ex = b.x - (dx / len) * 30, ey = b.y - (dy / len) * 16;
      d = `M ${a.x} ${a.y} Q ${cx} ${cy} ${ex} ${ey}`;
      lx = 0.25 * a.x + 0.5 * cx + 0.25 * ex; // on the curve, staggered so neighbours do not overlap
      ly = 0.25 * a.y + 0.5 * cy + 0.25 * ey + 14 * ((k % 3) - 1);
    }
    const label = `${e.type} ×${e.count}` + (e.failed ? `, ${e.failed} failed` : "") + (e.dead ? `, ${e.dead} dead` : "");
    svg.append(el("svg:g", { class: `edge ${e.kind}${e.failed ? " failed" : ""}`, "data-from": e.from, "data-to": e.to,
      "data-type": e.type, "data-kind": e.kind, "data-count": String(e.count) },
      el("svg:path", { d }), el("svg:text", { x: String(lx), y: String(ly) }, label)));
  }
  for (const n of names) {
    const roles = (map.roles && map.roles[n]) || [];
    const host = map.hosts.find((h) => h.name === n);
    const lines = [n, ...roles, ...(host && !host.answered ? ["(did not answer)"] : [])];
    const w = Math.max(...lines.map((l) => l.length)) * 7.5 + 16, h = 18 * lines.length + 8;
    const g = el("svg:g", { class: "node", "data-name": n },
      el("svg:rect", { x: String(pos[n].x - w / 2), y: String(pos[n].y - 14), width: String(w), height: String(h) }));
    lines.forEach((l, i) => g.append(el("svg:text", { class: i ? "role" : "name", x: String(pos[n].x), y: String(pos[n].y + 18 * i) }, l)));
    svg.append(g);
  }
  setState("map", "ready");
}

// ---- conversations ----

function renderConversations(data) {
  const list = document.querySelector("#conversations ul");
  list.replaceChildren();
  const items = data.conversations.slice().sort((a, b) => b.last_ms - a.last_ms);
  for (const c of items) {
    const a = el("a", { href: "#trace=" + encodeURIComponent(c.correlation), "data-id": c.correlation }, c.correlation);
    const when = new Date(c.last_ms).toLocaleTimeString();
    list.append(el("li", { class: c.failed ? "failed" : "" }, a,
      ` ${c.messages} handled on ${c.hosts.join(", ")}, last at ${when}` + (c.failed ? `, ${c.failed} failed` : "")));
  }
  if (!items.length) list.append(el("li", {}, "none yet"));
  setState("conversations", "ready");
}

// ---- one conversation's trace, as a timeline ----

async function showTrace(id) {
  const body = document.querySelector("#trace-table tbody"), note = document.getElementById("trace-note");
  document.getElementById("trace-id").textContent = id;
  setState("trace", "loading");
  body.replaceChildren();
  let t;
  try {
    t = await getJSON("/api/trace?id=" + encodeURIComponent(id));
  } catch (e) {
    note.textContent = e.message;
    note.className = "error";
    setState("trace", "error");
    return;
  }
  const rows = t.messages.flatMap((m) => m.handled.map((h) => ({ m, h })));
  const start = Math.min(...rows.map((r) => r.h.at_ms));
  const end = Math.max(...rows.map((r) => r.h.at_ms + r.h.duration_us / 1000), start + 1);
  const depth = {};
  for (const m of t.messages) depth[m.id] = m.causation in depth ? depth[m.causation] + 1 : 0;
  const missing = t.hosts.filter((h) => !h.answered).map((h) => h.name);
  note.className = "";
  note.textContent = `${t.messages.length} messages` + (t.started.length ? `, and the conversations it started: ${t.started.join(", ")}` : "") +
    (missing.length ? `; did not answer: ${missing.join(", ")}` : "");
  for (const m of t.messages) {
    const label = "\u00a0\u00a0".repeat(depth[m.id]) + `${m.id} ${m.type || "?"} (${m.kind || "?"}${m.to ? " to " + m.to : ""})`;
    if (!m.handled.length) {
      body.append(el("tr", { class: "hop unseen", "data-id": m.id, "data-type": m.type || "" },
        el("td", { class: "message" }, label), el("td", {}, m.to || "-"), el("td", {}, "not seen"), el("td", {}), el("td", {})));
    }
    for (const h of m.handled) {
      const left = (100 * (h.at_ms - start)) / (end - start), width = (100 * (h.duration_us / 1000)) / (end - start);
      const bar = el("div", { class: "bar", style: `margin-left:${left.toFixed(2)}%;width:${Math.max(width, 0.3).toFixed(2)}%`,
        title: `+${(h.at_ms - start).toFixed(0)} ms, ${(h.duration_us / 1000).toFixed(2)} ms` + (h.error ? `: ${h.error}` : "") });
      body.append(el("tr", { class: "hop " + h.outcome, "data-id": m.id, "data-type": m.type || "", "data-host": h.host, "data-outcome": h.outcome },
        el("td", { class: "message" }, label), el("td", {}, h.host), el("td", {}, h.outcome + (h.attempts > 1 ? ` (${h.attempts} attempts)` : "")),
        el("td", {}, h.handler || ""), el("td", { class: "timeline" }, bar)));
    }
  }
  setState("trace", "ready");
}

// ---- refresh ----

async function refresh() {
  const jobs = [["/api/hosts", renderHosts, "hosts"], ["/api/map?since=1h", renderMap, "map"],
    ["/api/conversations", renderConversations, "conversations"]];
  await Promise.all(jobs.map(async ([path, render, id]) => {
    try {
      render(await getJSON(path));
    } catch (e) {
      const section = document.getElementById(id);
      section.dataset.state = "error";
      section.dataset.error = e.message;
    }
  }));
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

function route() {
  const m = location.hash.match(/^#trace=(.+)$/);
  if (m) showTrace(decodeURIComponent(m[1]));
}

window.addEventListener("hashchange", route);
refresh();
route();
setInterval(refresh, 5000);
