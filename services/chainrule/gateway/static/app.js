// The chainrule dashboard: a job list (#/) and one page per job (#/jobs/<id>), both views
// of index.html, kept fresh by polling the REST API every 2 s. Charts are plotly.js.
// Every request goes through api(), which never throws: a failed call shows a message.
"use strict";

(function () {
  const API = "/api/v1";
  const POLL_MS = 2000;
  const ENDED = new Set(["SUCCEEDED", "FAILED", "STOPPED"]);
  const TOKEN_KEY = "chainrule.token";
  const $ = (id) => document.getElementById(id);

  // -- HTTP ------------------------------------------------------------------------------

  function storedToken() {
    try {
      return localStorage.getItem(TOKEN_KEY) || "";
    } catch (err) {
      return "";  // storage disabled: the field still works for this page
    }
  }

  // {ok, status, body, error}: error is a sentence for the page when ok is false.
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const token = $("token").value.trim() || storedToken();
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let reply;
    try {
      reply = await fetch(API + path, { method, headers, body });
    } catch (err) {
      return { ok: false, status: 0, body: null, error: "the gateway is unreachable (" + err.message + ")" };
    }
    let data = null;
    try {
      data = await reply.json();
    } catch (err) {
      data = null;  // an empty or non-JSON body
    }
    return { ok: reply.ok, status: reply.status, body: data, error: reply.ok ? null : describe(reply.status, data) };
  }

  function describe(status, data) {
    const detail = data && data.detail;
    let text = "HTTP " + status;
    if (typeof detail === "string") text += ": " + detail;
    if (Array.isArray(detail)) text += ": " + detail.map(fieldError).join("; ");
    if (status === 401 || status === 403) text += " (set the API token at the top right)";
    return text;
  }

  function fieldError(e) {
    const where = (e.loc || []).filter((part) => part !== "body").join(".");
    return (where ? where + ": " : "") + e.msg;
  }

  // -- small helpers ---------------------------------------------------------------------

  function notice(text) {
    $("notice").hidden = !text;
    $("notice").textContent = text || "";
  }

  function say(id, text, isError) {
    $(id).textContent = text || "";
    $(id).classList.toggle("error", Boolean(isError));
  }

  function fmt(x) {
    if (x === null || x === undefined || !Number.isFinite(x)) return "–";
    return Math.abs(x) >= 1000 || Number.isInteger(x) ? x.toFixed(0) : x.toPrecision(4);
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function badge(status) {
    const span = document.createElement("span");
    span.className = "badge " + status;
    span.textContent = status;
    return span;
  }

  function progressOf(job) {  // the detail's progress object, or the summary's fields
    const p = job.progress || {};
    const step = p.step ?? job.step ?? 0;
    const total = p.total_steps ?? job.total_steps ?? 0;
    const percent = p.percent ?? (total ? (100 * step) / total : 0);
    return { step, total, percent, eta: p.eta_seconds };
  }

  // Run tick() now and again ms after each run ends, until stop() or tick() returns false.
  function poll(tick, ms) {
    let timer = null;
    let live = true;
    async function run() {
      let again = true;
      try {
        again = await tick();
      } catch (err) {
        notice("The dashboard hit an error: " + err.message);
      }
      if (live && again !== false) timer = setTimeout(run, ms);
    }
    run();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }

  // -- the views -------------------------------------------------------------------------

  let stopView = () => {};
  let currentJob = null;

  function route() {
    stopView();
    notice(null);
    const match = location.hash.match(/^#\/jobs\/([^/]+)$/);
    stopView = match ? jobView(decodeURIComponent(match[1])) : listView();
  }

  function show(id) {
    $("list-view").hidden = id !== "list-view";
    $("job-view").hidden = id !== "job-view";
  }

  function listView() {
    show("list-view");
    currentJob = null;
    document.title = "chainrule · jobs";
    if (!$("spec").value) loadExample();
    let alive = true;
    const stopPolling = poll(async () => {
      const [reply, queue] = await Promise.all([api("GET", "/jobs?limit=50"), api("GET", "/queue")]);
      if (!alive) return false;
      if (!reply.ok) {
        notice("Cannot list jobs: " + reply.error);
        return true;
      }
      notice(null);
      renderJobs(reply.body, queue.ok && queue.body ? queue.body.data || [] : []);
      return true;
    }, POLL_MS);
    return () => {
      alive = false;
      stopPolling();
    };
  }

  // A pending job's place in line: "#2 · waiting for 2 worker slots; ..." (#1: the head).
  function inLine(entry) {
    return "#" + (entry.position + 1) + " · " + (entry.reason || entry.phase);
  }

  function renderJobs(page, line) {
    const jobs = page.data || [];
    const places = new Map(line.map((entry) => [entry.id, entry]));
    const rows = jobs.map((job) => {
      const tr = document.createElement("tr");
      tr.dataset.id = job.id;
      tr.addEventListener("click", () => { location.hash = "#/jobs/" + encodeURIComponent(job.id); });
      const name = cell(job.name);
      const id = document.createElement("span");
      id.className = "id";
      id.textContent = job.id;
      name.append(id);
      const status = document.createElement("td");
      status.append(badge(job.status));
      const p = progressOf(job);
      const progress = cell(p.step + " / " + p.total);
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.append(document.createElement("div"));
      bar.firstChild.style.width = Math.min(100, p.percent) + "%";
      progress.append(bar);
      const place = job.status === "PENDING" ? places.get(job.id) : undefined;
      const text = job.failure_reason || [job.phase, job.message].filter(Boolean).join(" · ");
      const message = cell(place ? inLine(place) : text, "message");
      if (place) {
        message.title = place.estimated_start
          ? "estimated start " + new Date(place.estimated_start).toLocaleString() + " (an estimate)"
          : "no estimated start yet";
      }
      const created = cell(job.created_at ? new Date(job.created_at).toLocaleString() : "–");
      tr.append(name, status, progress, message, created);
      return tr;
    });
    $("jobs-body").replaceChildren(...rows);
    $("jobs-empty").hidden = jobs.length > 0;
    const count = page.count ?? jobs.length;
    $("jobs-count").textContent = count > jobs.length ? "(newest " + jobs.length + " of " + count + ")" : "(" + count + ")";
  }

  async function loadExample() {
    try {
      const reply = await fetch("/static/xor.json");
      if (!reply.ok) throw new Error("HTTP " + reply.status);
      $("spec").value = JSON.stringify(await reply.json(), null, 2);
    } catch (err) {
      say("submit-result", "Could not load the XOR example: " + err.message, true);
    }
  }

  async function submitSpec() {
    $("submit-errors").replaceChildren();
    let spec;
    try {
      spec = JSON.parse($("spec").value);
    } catch (err) {
      say("submit-result", "That is not valid JSON: " + err.message, true);
      return;
    }
    $("submit").disabled = true;
    say("submit-result", "submitting…");
    const reply = await api("POST", "/jobs", JSON.stringify(spec));
    $("submit").disabled = false;
    if (reply.ok && reply.body && reply.body.id) {
      say("submit-result", "");
      location.hash = "#/jobs/" + encodeURIComponent(reply.body.id);
      return;
    }
    const detail = reply.body && reply.body.detail;
    if (Array.isArray(detail)) {
      say("submit-result", "The spec was refused (HTTP " + reply.status + "):", true);
      $("submit-errors").replaceChildren(...detail.map((e) => {
        const li = document.createElement("li");
        li.textContent = fieldError(e);
        return li;
      }));
    } else {
      say("submit-result", "The spec was refused: " + reply.error, true);
    }
  }

  // -- one job ---------------------------------------------------------------------------

  const CHARTS = ["chart-loss", "chart-accuracy", "chart-lr", "chart-throughput", "chart-diagnostics"];

  function jobView(id) {
    show("job-view");
    currentJob = id;
    document.title = "chainrule · " + id;
    for (const field of ["job-name", "job-status", "job-message", "job-failure", "job-action", "diag-note"]) say(field, "");
    $("job-id").textContent = id;
    $("stop").disabled = true;
    if (window.Plotly) CHARTS.forEach((chart) => window.Plotly.purge($(chart)));
    else notice("The chart library (/static/plotly.min.js) did not load, so no curves are drawn.");

    const series = { step: [], loss: [], lr: [], sps: [], evalStep: [], evalLoss: [], accStep: [], acc: [], r2Step: [], r2: [] };
    let nextStart = 0;
    let diagnostics = null;
    let diagMisses = 0;
    let ended = false;
    let alive = true;
    drawMetrics(series);

    // Append every point after the last one shown, in pages until caught up.
    // Resolves to {added, error}.
    async function fetchMetrics() {
      let added = 0;
      for (let round = 0; round < 10 && alive; round += 1) {
        const reply = await api("GET", "/jobs/" + encodeURIComponent(id) + "/metrics?start_step=" + nextStart);
        if (!reply.ok) return { added, error: "Cannot read metrics: " + reply.error };
        if (!alive) break;
        const fresh = (reply.body.points || []).filter((p) => p.step >= nextStart);
        if (fresh.length === 0) break;
        fresh.forEach((p) => appendPoint(series, p));
        added += fresh.length;
        const last = fresh[fresh.length - 1].step + 1;
        nextStart = Math.max(last, reply.body.next_start_step ?? last);
        if (reply.body.next_start_step === null) break;  // this page reached the end
      }
      return { added, error: null };
    }

    async function fetchDiagnostics() {
      if (diagMisses > 0 && diagMisses++ % 5 !== 0) return;  // back off while unavailable
      const reply = await api("GET", "/jobs/" + encodeURIComponent(id) + "/diagnostics");
      if (!alive) return;
      if (!reply.ok) {
        diagMisses = Math.max(diagMisses, 1);
        say("diag-note", "Diagnostics are not available: " + reply.error);
        return;
      }
      diagMisses = 0;
      const before = diagnostics ? diagnostics.points.length : -1;
      diagnostics = { points: reply.body.points || [] };
      if (diagnostics.points.length !== before) drawDiagnostics(diagnostics);
    }

    const stopPolling = poll(async () => {
      const wasEnded = ended;
      const [reply, metrics] = await Promise.all([
        api("GET", "/jobs/" + encodeURIComponent(id)),
        fetchMetrics(),
        fetchDiagnostics(),
      ]);
      if (!alive) return false;
      if (metrics.added > 0) drawMetrics(series);
      if (!reply.ok) {
        notice("Cannot read job " + id + ": " + reply.error);
        return reply.status !== 404;
      }
      notice(metrics.error);
      renderJob(reply.body, series);
      ended = ENDED.has(reply.body.status);
      return !(wasEnded && ended);  // one more round after the end, for the last points
    }, POLL_MS);

    const redraw = () => { if (diagnostics) drawDiagnostics(diagnostics); };
    $("diag-field").addEventListener("change", redraw);
    return () => {
      alive = false;
      stopPolling();
      $("diag-field").removeEventListener("change", redraw);
    };
  }

  function appendPoint(s, p) {
    s.step.push(p.step);
    s.loss.push(p.loss ?? null);
    s.lr.push(p.lr ?? null);
    s.sps.push(p.samples_per_s ?? null);
    if (p.eval_loss != null) { s.evalStep.push(p.step); s.evalLoss.push(p.eval_loss); }
    if (p.eval_accuracy != null) { s.accStep.push(p.step); s.acc.push(p.eval_accuracy); }
    if (p.eval_r2 != null) { s.r2Step.push(p.step); s.r2.push(p.eval_r2); }
  }

  function renderJob(job, series) {
    $("job-name").textContent = job.name;
    const status = $("job-status");
    status.className = "badge " + job.status;
    status.textContent = job.status;
    $("job-phase").textContent = job.phase || "–";
    const p = progressOf(job);
    const eta = p.eta != null && !ENDED.has(job.status) ? " · ETA " + Math.round(p.eta) + " s" : "";
    $("job-progress").textContent = p.step + " / " + p.total + " (" + Math.floor(p.percent) + "%)" + eta;
    $("job-bar").style.width = Math.min(100, p.percent) + "%";
    const latest = job.latest_metrics || {};
    if (job.workers) $("job-workers").textContent = job.workers.active + " active, " + job.workers.lost + " lost";
    else if (latest.active_workers == null) $("job-workers").textContent = "–";
    else $("job-workers").textContent = latest.active_workers + (ENDED.has(job.status) ? " at the last step" : " active");
    $("job-loss").textContent = fmt(latest.loss);
    // evaluation runs every eval_every steps: the latest point may not carry one
    const accuracy = latest.eval_accuracy ?? series.acc[series.acc.length - 1];
    $("job-accuracy").textContent = accuracy != null ? (100 * accuracy).toFixed(1) + "%" : "–";
    $("job-message").textContent = job.message || "";
    $("job-failure").hidden = !job.failure_reason;
    $("job-failure").textContent = job.failure_reason ? "Failed: " + job.failure_reason : "";
    $("stop").disabled = ENDED.has(job.status);
  }

  async function stopJob() {
    const id = currentJob;
    if (!id) return;
    $("stop").disabled = true;
    say("job-action", "stopping…");
    const reply = await api("POST", "/jobs/" + encodeURIComponent(id) + "/stop");
    if (id !== currentJob) return;
    if (reply.ok) {
      say("job-action", "Stop requested.");
    } else {
      say("job-action", "Stop failed: " + reply.error, true);
      $("stop").disabled = false;
    }
  }

  // -- charts ----------------------------------------------------------------------------

  function plot(id, traces, layout) {
    if (!window.Plotly) return;
    const base = {
      margin: { l: 56, r: 12, t: 8, b: 40 },
      xaxis: { title: { text: "step" }, zeroline: false },
      yaxis: { zeroline: false },
      legend: { orientation: "h", x: 0, y: 1.14 },
      font: { size: 11 },
      showlegend: traces.length > 1,
    };
    window.Plotly.react($(id), traces, { ...base, ...layout }, { displayModeBar: false, responsive: true });
  }

  function line(x, y, name, extra) {
    return { x: x.slice(), y: y.slice(), name, type: "scatter", mode: "lines", ...extra };
  }

  function drawMetrics(s) {
    plot("chart-loss", [
      line(s.step, s.loss, "training"),
      line(s.evalStep, s.evalLoss, "holdout", { mode: "lines+markers", marker: { size: 4 } }),
    ], { yaxis: { title: { text: "loss (log scale)" }, type: "log" } });
    const accuracy = s.acc.length > 0 || s.r2.length === 0
      ? line(s.accStep, s.acc, "holdout accuracy", { mode: "lines+markers", marker: { size: 4 } })
      : line(s.r2Step, s.r2, "holdout R²", { mode: "lines+markers", marker: { size: 4 } });
    plot("chart-accuracy", [accuracy], { yaxis: { range: [0, 1.05], title: { text: accuracy.name } } });
    plot("chart-lr", [line(s.step, s.lr, "learning rate")], { yaxis: { title: { text: "lr" }, rangemode: "tozero" } });
    plot("chart-throughput", [line(s.step, s.sps, "samples/s")], {
      yaxis: { title: { text: "samples/s" }, rangemode: "tozero" },
    });
  }

  function drawDiagnostics(diag) {
    const field = $("diag-field").value;
    const byLayer = new Map();  // layer -> trace
    for (const point of diag.points) {
      for (const layer of point.layers || []) {
        if (!byLayer.has(layer.layer)) {
          const label = typeof layer.layer === "number" ? "layer " + layer.layer : String(layer.layer);
          const name = label + (layer.activation ? " (" + layer.activation + ")" : "");
          byLayer.set(layer.layer, { x: [], y: [], name, type: "scatter", mode: "lines" });
        }
        const trace = byLayer.get(layer.layer);
        trace.x.push(point.step);
        trace.y.push(layer[field] ?? null);
      }
    }
    const label = $("diag-field").selectedOptions[0].textContent;
    plot("chart-diagnostics", [...byLayer.values()], { yaxis: { title: { text: label }, rangemode: "tozero" }, showlegend: true });
    say("diag-note", diag.points.length === 0 ? "No diagnostics reported yet." : "");
  }

  // -- start -----------------------------------------------------------------------------

  $("token").value = storedToken();
  $("token-form").addEventListener("submit", (event) => event.preventDefault());  // Enter
  $("token").addEventListener("change", () => {
    try {
      const token = $("token").value.trim();
      if (token) localStorage.setItem(TOKEN_KEY, token);
      else localStorage.removeItem(TOKEN_KEY);
    } catch (err) {
      notice("The token cannot be remembered here (" + err.message + "); it works for this page.");
    }
  });
  $("submit").addEventListener("click", submitSpec);
  $("reset-spec").addEventListener("click", loadExample);
  $("stop").addEventListener("click", stopJob);
  window.addEventListener("hashchange", route);
  route();
})();
