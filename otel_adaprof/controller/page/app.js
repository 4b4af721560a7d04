/* The controller page: sessions, agents, and one session's live timeline and flame
   graph, from the controller's public GET endpoints. Read-only; no dependencies.
   body[data-page-ready="1"] is set once everything shown has been fetched and drawn
   (tests wait for it); body[data-page-error] says what failed. */
(function () {
  "use strict";
  var REFRESH_MS = 2000;
  var SVG = "http://www.w3.org/2000/svg";
  var state = {selected: null, chosenByUser: false, sessions: [], flame: null, lastProfile: ""};

  function $(id) { return document.getElementById(id); }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function getJSON(path) {
    return fetch(path, {headers: {Accept: "application/json"}}).then(function (r) {
      if (!r.ok) throw new Error(path + " answered HTTP " + r.status);
      return r.json();
    });
  }

  function getText(path) {
    return fetch(path).then(function (r) {
      if (!r.ok) throw new Error(path + " answered HTTP " + r.status);
      return r.text();
    });
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    var s = Number(v).toFixed(digits === undefined ? 2 : digits);
    return s.indexOf(".") >= 0 ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
  }

  function clock(t) { return t ? new Date(t * 1000).toLocaleTimeString() : "–"; }

  function ago(t) {
    if (!t) return "–";
    var s = Math.max(0, Date.now() / 1000 - t);
    return s < 90 ? fmt(s, 0) + " s ago" : s < 5400 ? fmt(s / 60, 0) + " min ago" : clock(t);
  }

  function rateHz(p) {
    return p.sampling_interval_ms ? 1000 / p.sampling_interval_ms : 0;
  }

  function paramsText(p) {
    if (!p) return "–";
    return fmt(rateHz(p), 1) + " Hz · depth " + p.stack_depth + " · ratio " + fmt(p.trace_ratio, 3);
  }

  function cpuFraction(w) {
    return w && w.window_seconds ? w.profiler_cpu_seconds / w.window_seconds : null;
  }

  // ---- sessions -------------------------------------------------------------------

  function renderSessions(sessions) {
    var body = $("sessions").tBodies[0];
    body.textContent = "";
    $("sessions-count").textContent = "(" + sessions.length + ")";
    $("sessions-empty").hidden = sessions.length > 0;
    sessions.forEach(function (s) {
      var tr = el("tr");
      tr.setAttribute("data-session", s.id);
      tr.setAttribute("data-state", s.state);
      if (s.id === state.selected) tr.className = "selected";
      var c = s.counts || {};
      [el("td", s.id), el("td", s.service), el("td", s.spec && s.spec.mode),
       el("td", s.state, "state-" + s.state), el("td", clock(s.created_at)),
       el("td", clock(s.stopped_at || s.ends_at)), el("td", c.agents, "num"),
       el("td", c.reports, "num"), el("td", paramsText(s.params))
      ].forEach(function (td) { tr.appendChild(td); });
      tr.addEventListener("click", function () {
        state.selected = s.id;
        state.chosenByUser = true;
        history.replaceState(null, "", "?session=" + encodeURIComponent(s.id));
        refresh();
      });
      body.appendChild(tr);
    });
  }

  function choose(sessions) {
    var fromUrl = new URLSearchParams(location.search).get("session");
    if (fromUrl && !state.chosenByUser) state.selected = fromUrl;
    var known = sessions.some(function (s) { return s.id === state.selected; });
    if (!known) {
      var open = sessions.filter(function (s) { return s.state === "open"; });
      state.selected = (open[0] || sessions[0] || {}).id || null;
    }
  }

  // ---- agents ---------------------------------------------------------------------

  function statusCell(a) {
    var td = el("td");
    if (a.opamp) {
      var st = a.opamp.remote_config_status;
      var badge = el("span", st.status, "st-" + st.status);
      td.appendChild(badge);
      if (st.config_hash) td.appendChild(el("code", " " + st.config_hash.slice(0, 10)));
      if (st.status !== "UNSET" && !st.current) td.appendChild(el("span", " (older config)", "sub"));
      if (st.error_message) td.appendChild(el("div", st.error_message, "err"));
      if (!a.opamp.connected) td.appendChild(el("div", "disconnected", "sub"));
    } else {
      td.appendChild(el("span", "v" + a.config_version + " answered"));
    }
    return td;
  }

  function reportText(w) {
    if (!w) return "–";
    var prof = cpuFraction(w);
    return "cpu " + fmt(w.process_cpu) + " · profiler " + fmt(prof === null ? null : prof * 100, 2) +
      " % · " + fmt(w.samples_per_s, 1) + " samples/s · " + fmt(w.markers_per_s, 1) + " markers/s";
  }

  function renderAgents(agents) {
    var body = $("agents").tBodies[0];
    body.textContent = "";
    $("agents-count").textContent = "(" + agents.length + ")";
    $("agents-empty").hidden = agents.length > 0;
    agents.forEach(function (a) {
      var tr = el("tr");
      tr.setAttribute("data-agent", a.instance_id);
      tr.setAttribute("data-protocol", a.protocol || "native");
      tr.setAttribute("data-status", a.opamp ? a.opamp.remote_config_status.status : "");
      var seen = el("td", ago(a.last_seen));
      if (a.stale) seen.appendChild(el("span", " stale", "stale"));
      [el("td", a.instance_id), el("td", a.service), el("td", a.protocol || "native"),
       el("td", a.backend || "–"), seen, el("td", a.config_version, "num"),
       el("td", paramsText(a.params)), statusCell(a), el("td", reportText(a.state))
      ].forEach(function (td) { tr.appendChild(td); });
      body.appendChild(tr);
    });
  }

  // ---- charts ---------------------------------------------------------------------

  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

  function chart(fig, title, series, unit) {
    var W = 292, H = 170, L = 42, R = 8, T = 22, B = 22;
    fig.textContent = "";
    var root = svg("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H});
    root.appendChild(svg("text", {x: 4, y: 14, "class": "title"}, title + (unit ? " (" + unit + ")" : "")));
    var pts = [];
    series.forEach(function (s) { pts = pts.concat(s.points); });
    var n = pts.length;
    fig.setAttribute("data-points", String(n));
    if (!n) {
      root.appendChild(svg("text", {x: L, y: H / 2, "class": "tick"}, "no windows yet"));
      fig.appendChild(root);
      return;
    }
    var xs = pts.map(function (p) { return p[0]; }), ys = pts.map(function (p) { return p[1]; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min(0, Math.min.apply(null, ys)), y1 = Math.max.apply(null, ys);
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) y1 = y0 + 1;
    function X(v) { return L + (v - x0) / (x1 - x0) * (W - L - R); }
    function Y(v) { return H - B - (v - y0) / (y1 - y0) * (H - T - B); }
    [0, 0.5, 1].forEach(function (f) {
      var v = y0 + f * (y1 - y0);
      root.appendChild(svg("line", {x1: L, x2: W - R, y1: Y(v), y2: Y(v), "class": "grid"}));
      root.appendChild(svg("text", {x: L - 4, y: Y(v) + 3, "text-anchor": "end", "class": "tick"}, fmt(v, 2)));
    });
    root.appendChild(svg("text", {x: L, y: H - 6, "class": "tick"}, fmt(x0, 0) + " s"));
    root.appendChild(svg("text", {x: W - R, y: H - 6, "text-anchor": "end", "class": "tick"}, fmt(x1, 0) + " s"));
    series.forEach(function (s, i) {
      var color = COLORS[i % COLORS.length];
      if (!s.points.length) return;
      var d = s.points.map(function (p, j) {
        return (j ? "L" : "M") + X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1);
      }).join("");
      root.appendChild(svg("path", {d: d, fill: "none", stroke: color, "stroke-width": 1.5}));
      s.points.forEach(function (p) {
        root.appendChild(svg("circle", {cx: X(p[0]), cy: Y(p[1]), r: 1.8, fill: color}));
      });
      if (series.length > 1) {
        root.appendChild(svg("text", {x: W - R - 4, y: T + 10 + 12 * i, "text-anchor": "end",
                                      "class": "legend", fill: color}, s.name));
      }
    });
    fig.appendChild(root);
  }

  function renderTimeline(session, windows) {
    var t0 = session.created_at;
    var rate = [], depth = [], ratio = [], reward = [], cpu = [];
    windows.forEach(function (w) {
      var t = w.at - t0;
      if (w.params) {
        rate.push([t, rateHz(w.params)]);
        depth.push([t, w.params.stack_depth]);
        ratio.push([t, w.params.trace_ratio]);
      }
      if (w.reward !== null && w.reward !== undefined) reward.push([t, w.reward]);
      var f = cpuFraction(w.state);
      if (f !== null) cpu.push([t, 100 * f]);
    });
    chart($("chart-params"), "params", [{name: "rate Hz", points: rate}, {name: "stack depth", points: depth}]);
    chart($("chart-ratio"), "trace ratio", [{name: "ratio", points: ratio}]);
    chart($("chart-reward"), "reward", [{name: "reward", points: reward}]);
    chart($("chart-cpu"), "profiler CPU", [{name: "cpu", points: cpu}], "% of a core");
    $("detail").setAttribute("data-windows", String(windows.length));
  }

  function renderProfile(text) {
    if (text === state.lastProfile) return;
    state.lastProfile = text;
    var total = state.flame.load(text);
    $("flame-total").textContent = total + " samples";
    updateMatches();
  }

  function updateMatches() {
    var term = $("search").value;
    var hit = state.flame.search(term);
    var total = state.flame.root ? state.flame.root.value : 0;
    $("matches").textContent = term.trim()
      ? hit + " of " + total + " samples (" + fmt(total ? 100 * hit / total : 0, 1) + " %) match"
      : "";
    $("flame").setAttribute("data-matched", String(hit));
  }

  // ---- refresh --------------------------------------------------------------------

  function showError(err) {
    $("error").hidden = false;
    $("error").textContent = "Could not read the controller: " + err.message;
    document.body.setAttribute("data-page-error", err.message);
  }

  function refresh() {
    return Promise.all([getJSON("/v1/sessions"), getJSON("/v1/agents")]).then(function (res) {
      var sessions = res[0].sessions, agents = res[1].agents;
      state.sessions = sessions;
      choose(sessions);
      renderSessions(sessions);
      renderAgents(agents);
      var session = sessions.filter(function (s) { return s.id === state.selected; })[0];
      $("detail").hidden = !session;
      if (!session) return null;
      $("detail-id").textContent = session.id;
      $("detail-what").textContent = session.service + " · " + (session.spec && session.spec.mode) +
        " · " + session.state;
      var base = "/v1/sessions/" + encodeURIComponent(session.id);
      $("download").href = base + "/profile?format=collapsed";
      return Promise.all([getJSON(base + "/timeline"), getText(base + "/profile?format=collapsed")])
        .then(function (detail) {
          renderTimeline(session, detail[0].windows);
          renderProfile(detail[1]);
        });
    }).then(function () {
      $("error").hidden = true;
      document.body.removeAttribute("data-page-error");
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.setAttribute("data-page-ready", "1");
    }).catch(showError);
  }

  function start() {
    $("refresh-s").textContent = String(REFRESH_MS / 1000);
    state.flame = new window.AdaprofFlame.Flame($("flame"), $("tip"));
    state.flame.bind();
    $("search").value = new URLSearchParams(location.search).get("search") || "";
    $("search").addEventListener("input", updateMatches);
    $("reset").addEventListener("click", function () { state.flame.reset(); });
    refresh();
    setInterval(refresh, REFRESH_MS);
  }

  start();
})();
