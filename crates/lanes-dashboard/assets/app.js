// The lanes map, kept current from the server's event stream (no reloads).
"use strict";

// When this page was loaded: stays the same while the map updates in place.
window.lanesLoadedAt = Date.now();
// How many maps have been drawn.
window.lanesMaps = 0;

const status = document.getElementById("status");
const groups = document.getElementById("groups");
const login = document.getElementById("login");
const releases = document.getElementById("releases");
const outcome = document.getElementById("outcome");

// The token: from the address (#token=...), then as kept from before.
function token() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    localStorage.setItem("lanes-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  return localStorage.getItem("lanes-token");
}

function headers() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

const SVG = "http://www.w3.org/2000/svg";

// A small chart of requests per second over the last minutes.
function sparkline(points) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 60 16");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "requests per second over the last minutes");
  if (points.length > 1) {
    const top = Math.max(...points, 1);
    const step = 60 / (points.length - 1);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points.map((p, i) => `${(i * step).toFixed(1)},${(15 - (p / top) * 14).toFixed(1)}`).join(" "));
    svg.append(line);
  }
  return svg;
}

// The live traffic of a cell: requests/s, success rate, p99, and its chart.
function trafficOf(t) {
  const words = [`${t.rps.toFixed(1)} rps`];
  if (t.success !== undefined) words.push(`${(t.success * 100).toFixed(1)}% ok`);
  if (t.p99Ms !== undefined) words.push(`p99 ≤ ${t.p99Ms} ms`);
  const span = el("span", { class: "traffic", "data-rps": t.rps.toFixed(3) }, words.join(" · "), sparkline(t.chart));
  // The window the figures are of (Unix seconds).
  span.dataset.window = t.window.join(" ");
  return span;
}

function cellOf(group, service, cell) {
  const td = el("td", { "data-cell": `${group}/${service}/${cell.lane}` });
  if (cell.fallsBackTo && cell.total === 0) {
    td.className = "fallback";
    td.append(`→ ${cell.fallsBackTo}`);
    td.title = `no pod of ${service} in ${cell.lane}: served by ${cell.fallsBackTo}`;
    if (cell.traffic && cell.traffic.rps > 0) td.append(trafficOf(cell.traffic));
    return td;
  }
  td.className = cell.ready > 0 ? "serving" : "serving unready";
  td.append(el("span", { class: "version" }, cell.versions.join(" ") || "–"));
  let pods = `${cell.ready}/${cell.total} ready`;
  if (cell.fallsBackTo) pods += ` · → ${cell.fallsBackTo}`;
  td.append(el("span", { class: "pods" }, pods));
  if (cell.traffic && cell.traffic.rps > 0) td.append(trafficOf(cell.traffic));
  return td;
}

// One release: its steps as a progress line, where it is, its measurements and the
// controls that apply now.
function releaseOf(r) {
  const id = `${r.kind}/${r.namespace}/${r.name}`;
  const steps = el("ol", { class: "steps" }, ...r.steps.map((s, i) => {
    const n = i + 1;
    const state = n < r.step || r.phase === "Healthy" || r.phase === "Completed" ? "done"
      : n === r.step ? "current" : "todo";
    const li = el("li", { class: state }, s);
    if (state === "current") li.setAttribute("aria-current", "step");
    return li;
  }));
  const where = [r.phase];
  if (r.step > 0) where.push(`step ${r.step}/${r.steps.length}`);
  if (r.stepState) where.push(r.stepState);
  const facts = el("p", { class: "where" }, where.join(" · "));
  const more = [];
  if (r.stableRevision) more.push(`stable ${r.stableRevision}`);
  if (r.canaryRevision) more.push(`canary ${r.canaryRevision}`);
  if (r.heldBy) more.push(`held by LaneRelease ${r.heldBy}`);
  const article = el("article", { "data-release": id, "aria-label": `${r.kind} ${r.name}` },
    el("h3", {}, `${r.kind} ${r.namespace}/${r.name}`), facts, steps);
  if (more.length) article.append(el("p", { class: "revisions" }, more.join(" · ")));
  if (r.message) article.append(el("p", { class: "message" }, r.message));
  if (r.members && r.members.length) article.append(el("ul", { class: "members" }, ...r.members.map((m) => el("li", {}, m))));
  if (r.measurements && r.measurements.length) {
    const charts = measurementCharts(r.measurements, r.thresholds || []);
    if (charts.length) article.append(el("div", { class: "charts" }, ...charts));
    const rows = r.measurements.map((m) => el("tr", { class: m.verdict.toLowerCase() },
      el("td", {}, new Date(m.time).toLocaleTimeString()), el("td", {}, m.metric),
      el("td", {}, m.value === undefined ? "–" : String(Math.round(m.value * 1000) / 1000)),
      el("td", {}, m.verdict)));
    article.append(el("table", { class: "measurements" },
      el("caption", {}, "analysis"),
      el("thead", {}, el("tr", {}, ...["time", "metric", "value", "verdict"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...rows)));
  }
  if (r.events && r.events.length) {
    article.append(el("ul", { class: "events", "aria-label": "Events" }, ...r.events.map((e) =>
      el("li", { class: e.type === "Warning" ? "warning" : "" },
        `${new Date(e.time).toLocaleTimeString()} ${e.type} ${e.reason}: ${e.message}`))));
  }
  const buttons = r.controls.map((c) => {
    const b = el("button", { type: "button", "data-control": c }, c);
    b.addEventListener("click", () => steer(r, c));
    return b;
  });
  article.append(el("div", { class: "controls" }, ...buttons));
  return article;
}

// One chart per metric of the measurements over time: the values, each point coloured by
// its verdict, and the analysis's bounds as dashed lines.
function measurementCharts(measurements, thresholds) {
  const byMetric = new Map();
  for (const m of measurements) {
    if (m.value === undefined) continue;
    if (!byMetric.has(m.metric)) byMetric.set(m.metric, []);
    byMetric.get(m.metric).push(m);
  }
  const [w, h, pad] = [240, 64, 6];
  return [...byMetric.entries()].map(([metric, points]) => {
    const bound = thresholds.find((t) => t.metric === metric) || {};
    const limits = [bound.min, bound.max].filter((v) => v !== undefined);
    const values = points.map((p) => p.value).concat(limits);
    let [lo, hi] = [Math.min(...values), Math.max(...values)];
    if (hi === lo) { hi += 1; lo -= 1; }
    const y = (v) => (h - pad - ((v - lo) / (hi - lo)) * (h - 2 * pad)).toFixed(1);
    const x = (i) => (pad + (points.length === 1 ? 0 : (i / (points.length - 1)) * (w - 2 * pad))).toFixed(1);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${metric}: ${points.length} measurements`);
    for (const v of limits) {
      const line = document.createElementNS(SVG, "line");
      for (const [k, val] of [["x1", pad], ["x2", w - pad], ["y1", y(v)], ["y2", y(v)]]) line.setAttribute(k, val);
      line.setAttribute("class", "threshold");
      svg.append(line);
    }
    const poly = document.createElementNS(SVG, "polyline");
    poly.setAttribute("points", points.map((p, i) => `${x(i)},${y(p.value)}`).join(" "));
    svg.append(poly);
    points.forEach((p, i) => {
      const dot = document.createElementNS(SVG, "circle");
      dot.setAttribute("cx", x(i));
      dot.setAttribute("cy", y(p.value));
      dot.setAttribute("r", "2.5");
      dot.setAttribute("class", p.verdict.toLowerCase());
      svg.append(dot);
    });
    const said = [metric];
    if (bound.min !== undefined) said.push(`min ${bound.min}`);
    if (bound.max !== undefined) said.push(`max ${bound.max}`);
    return el("figure", { "data-metric": metric }, svg, el("figcaption", {}, said.join(" · ")));
  });
}

// Carries out a control, once confirmed; the API's answer is shown either way.
async function steer(r, control) {
  if (!window.confirm(`${control} ${r.kind} ${r.namespace}/${r.name}?`)) return;
  const kind = r.kind.toLowerCase();
  const path = `/ui/api/releases/${kind}/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}/${control}`;
  let said;
  try {
    const resp = await fetch(path, { method: "POST", headers: headers() });
    const body = await resp.json().catch(() => ({}));
    said = resp.ok ? body.message : `refused: ${body.error || "HTTP " + resp.status}`;
  } catch (e) {
    said = `failed: ${e.message}`;
  }
  outcome.textContent = said;
}

// A request's path: the services it went through, nested by the calls made from each.
function hopsOf(hops) {
  return el("ul", { class: "hops" }, ...hops.map((h) => {
    const bits = [el("strong", {}, h.service), " ", el("span", { class: "version" }, h.version || "?")];
    if (h.pod) bits.push(` · pod ${h.pod}`);
    if (h.lane) bits.push(` · lane ${h.lane}`);
    if (h.subset) bits.push(` → served by ${h.subset}`);
    const li = el("li", { "data-hop": h.service, "data-version": h.version || "" }, ...bits);
    if (h.fallback) {
      li.dataset.fallback = h.fallback.reason;
      li.append(" ", el("span", { class: "fallback-mark", title: h.fallback.reason },
        `↪ fallback ${h.fallback.from}→${h.fallback.to} (${h.fallback.reason})`));
    }
    li.append(` · ${h.status} · ${h.ms.toFixed(2)} ms`);
    if (h.calls.length) li.append(hopsOf(h.calls));
    return li;
  }));
}

const pathBox = document.getElementById("path");
const pathSaid = document.getElementById("path-said");

function showPath(answer) {
  pathSaid.textContent = `trace ${answer.traceId}` + (answer.status ? ` · answered ${answer.status}` : "");
  pathBox.replaceChildren(hopsOf(answer.path));
}

async function askPath(url, init) {
  try {
    const resp = await fetch(url, { ...init, headers: { ...headers(), ...(init && init.headers) } });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      pathSaid.textContent = `refused: ${body.error || "HTTP " + resp.status}`;
      pathBox.replaceChildren();
      return;
    }
    showPath(body);
  } catch (e) {
    pathSaid.textContent = `failed: ${e.message}`;
  }
  listRecent();
}

function newTraceId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function listRecent() {
  const resp = await fetch("/ui/api/paths", { headers: headers() }).catch(() => null);
  if (!resp || !resp.ok) return;
  const { entries } = await resp.json();
  const rows = entries.map((e) => {
    const open = el("button", { type: "button", class: "link" }, e.traceId);
    open.addEventListener("click", () => askPath(`/ui/api/paths/${e.traceId}`));
    return el("tr", {}, el("td", {}, new Date(e.atMs).toLocaleTimeString()), el("td", {}, open),
      el("td", {}, e.service), el("td", {}, e.lane || "–"), el("td", {}, String(e.status)),
      el("td", {}, e.ms.toFixed(2)));
  });
  document.querySelector("#recent tbody").replaceChildren(...rows);
}

// The lanes a request can name, per group (keeping the choice made).
function fillLanes(map) {
  const select = document.getElementById("send-lane");
  const chosen = select.value;
  const options = [el("option", { value: "" }, "none named")];
  for (const g of map.groups) {
    for (const l of g.lanes) {
      options.push(el("option", { value: JSON.stringify([g.routeHeader, l]) }, `${g.name}: ${l}`));
    }
  }
  select.replaceChildren(...options);
  select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
}

document.getElementById("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const trace = document.getElementById("send-trace");
  if (!trace.value) trace.value = newTraceId();
  const lane = document.getElementById("send-lane").value;
  const sent = { path: document.getElementById("send-path").value, traceId: trace.value, headers: {} };
  if (lane) {
    const [header, name] = JSON.parse(lane);
    sent.headers[header] = name;
  }
  askPath("/ui/api/paths", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(sent) });
  trace.value = "";
});

document.getElementById("find").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = document.getElementById("find-trace").value.trim();
  askPath(`/ui/api/paths/${encodeURIComponent(id)}`);
});

function draw(map) {
  const sections = map.groups.map((g) => {
    const head = el("tr", {}, el("th", { scope: "col" }, "service"),
      ...g.lanes.map((l) => el("th", { scope: "col" }, l + (l === g.fallback ? " (baseline)" : ""))));
    const rows = g.services.map((s) =>
      el("tr", {}, el("th", { scope: "row" }, s.name), ...s.cells.map((c) => cellOf(g.name, s.name, c))));
    const table = el("table", { "data-group": g.name },
      el("caption", {}, `lane group ${g.name}`), el("thead", {}, head), el("tbody", {}, ...rows));
    return el("section", { "aria-label": `lane group ${g.name}` }, table);
  });
  groups.replaceChildren(...sections);
  if (map.groups.length === 0) groups.append(el("p", {}, "No lane group yet."));
  releases.replaceChildren(el("h2", {}, "Releases"), ...(map.releases || []).map(releaseOf));
  if (!map.releases || map.releases.length === 0) releases.append(el("p", {}, "No release yet."));
  fillLanes(map);
  if (window.lanesMaps === 0) {
    // How long the page took to show its first map (ms since navigation began).
    window.lanesFirstMapMs = performance.now();
    listRecent();
  }
  window.lanesMaps += 1;
  status.textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// Reads the server-sent events of the map (fetch, so the token can go in a header).
async function follow() {
  for (;;) {
    try {
      const resp = await fetch("/ui/api/map/events", { headers: headers() });
      if (resp.status === 401 || resp.status === 403) {
        status.textContent = "the API wants a token";
        login.hidden = false;
        return;
      }
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      login.hidden = true;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
          if (data) draw(JSON.parse(data));
        }
      }
    } catch (e) {
      status.textContent = `disconnected (${e.message}); retrying`;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

login.addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem("lanes-token", document.getElementById("token").value);
  login.hidden = true;
  follow();
});

// A token given in the address later (#token=...) is taken at once.
window.addEventListener("hashchange", () => {
  if (/token=/.test(location.hash) && !login.hidden) {
    token();
    login.hidden = true;
    follow();
  }
});

follow();
