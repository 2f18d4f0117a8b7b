// The ops page: polls the status JSON and redraws the numbers, tables and the chart in place.
"use strict";
(() => {
  const root = document.getElementById("ops");
  const refreshMs = Number(root.dataset.refreshMs);
  let chart = null;

  function format(value, kind) {
    if (value === null || value === undefined) return "–";
    if (kind === "seconds") return `${value.toFixed(1)} s`;
    if (kind === "rate") return value.toFixed(1);
    return String(value);
  }

  function lookup(facts, path) {
    return path.split(".").reduce((obj, key) => (obj === null || obj === undefined ? null : obj[key]), facts);
  }

  function rows(tbody, items, cells) {
    tbody.replaceChildren(...items.map((item) => {
      const tr = document.createElement("tr");
      for (const text of cells(item)) {
        const td = document.createElement("td");
        td.textContent = text;  // never HTML: names and errors come from tenants
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  function drawChart(perMinute) {
    const xs = perMinute.map((m) => Date.parse(m.minute) / 1000);
    const ys = perMinute.map((m) => m.stored);
    const box = document.getElementById("chart");
    if (chart === null) {
      chart = new uPlot({
        width: box.clientWidth || 800,
        height: 240,
        scales: {x: {time: true}, y: {range: (u, min, max) => [0, Math.max(1, max)]}},
        series: [{}, {label: "stored per minute", stroke: "#2f6fde", fill: "#2f6fde22", width: 2,
                      points: {show: true, size: 4}}],
        axes: [{}, {label: "events"}],
      }, [xs, ys], box);
      window.opsChart = chart;  // for the end-to-end test, and for poking at it in a console
      window.addEventListener("resize", () => chart.setSize({width: box.clientWidth, height: 240}));
    } else {
      chart.setData([xs, ys]);
    }
  }

  function render(facts) {
    for (const el of document.querySelectorAll("[data-field]")) {
      el.textContent = format(lookup(facts, el.dataset.field), el.dataset.format);
    }
    const attention = facts.fleet.attention;
    document.getElementById("attention-box").hidden = attention.length === 0;
    document.getElementById("attention").replaceChildren(...attention.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
    rows(document.getElementById("pipelines"), facts.pipelines, (p) => [
      p.id, p.app_id, p.module, p.driver, p.state, format(p.lag_seconds, "seconds"), p.delivered, p.last_error || "",
    ]);
    rows(document.getElementById("recent-jobs"), facts.recent_jobs, (j) => [
      j.kind, j.app_id, j.status, j.rows, j.created_at,
    ]);
    const oldest = facts.oldest_unfinished_export;
    document.getElementById("oldest-export").textContent = oldest
      ? `${oldest.id} (app ${oldest.app_id}), ${oldest.status} for ${format(oldest.age_seconds, "seconds")}`
      : "none";
    const apps = document.getElementById("apps");
    apps.replaceChildren(...facts.apps.map((app) => {
      const li = document.createElement("li");
      li.textContent = `${app.name} `;
      const small = document.createElement("small");
      small.textContent = `(app ${app.app_id}, ${app.org})`;
      li.appendChild(small);
      return li;
    }));
    drawChart(facts.stored.per_minute);
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  }

  async function refresh() {
    try {
      const answer = await fetch(root.dataset.statusUrl, {credentials: "same-origin", cache: "no-store"});
      if (answer.status === 403) {
        window.location.assign(root.dataset.loginUrl);
        return;
      }
      if (answer.ok) render(await answer.json());
    } catch (error) {
      document.getElementById("updated").textContent = "failed; retrying";
    }
    setTimeout(refresh, refreshMs);
  }

  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/api/1/logout", {method: "POST", credentials: "same-origin"});
    window.location.assign(root.dataset.loginUrl);
  });
  refresh();
})();
