/*
 * The dashboard page: a Phoenix channel client (phx.js, the demo's) of the server it shows.
 * It joins "dashboard:live" and redraws on every "snapshot"; clicking a process asks for
 * its details ("process"); "kill" exists only when the server allows it.
 */
(function () {
  "use strict";

  const token = new URLSearchParams(window.location.search).get("token");
  const socket = new Phx.Socket("/live", { params: token ? { token } : {} });
  const channel = socket.channel("dashboard:live");
  const $ = (id) => document.getElementById(id);
  let allowKill = false;
  let selected = null;

  // Figures plotted as small time series (the last 5 minutes at one snapshot a second).
  const SERIES = [
    ["sockets", (f) => (f.sockets.websocket || 0) + (f.sockets.longpoll || 0)],
    ["channels", (f) => f.channels],
    ["processes", (f) => f.processes],
    ["longest mailbox", (f) => f.longest_queue],
    ["outbound bytes queued", (f) => f.outbound_bytes],
    ["loop lag p99 (ms)", (f) => f.loop_lag_p99_ms],
    ["subscriptions", (f) => f.subscriptions],
    ["presences", (f) => f.presences],
  ];
  const KEEP = 300;
  const times = [];
  const values = SERIES.map(() => []);
  const charts = SERIES.map(([title], k) => {
    const box = document.createElement("div");
    $("charts").appendChild(box);
    return new uPlot(
      { title, width: 260, height: 120, legend: { show: false }, scales: { x: { time: true } },
        axes: [{ show: false }, { size: 50 }], series: [{}, { stroke: "#2d6cdf", width: 1.5 }] },
      [times, values[k]], box);
  });

  function text(el, value) { el.textContent = value === null || value === undefined ? "-" : String(value); }

  function row(tbody, cells, attrs) {
    const tr = document.createElement("tr");
    for (const [k, v] of Object.entries(attrs || {})) tr.setAttribute(k, v);
    for (const c of cells) {
      const td = document.createElement("td");
      text(td, c);
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
    return tr;
  }

  function figures(f) {
    const dl = $("figures");
    dl.textContent = "";
    const shown = {
      "websocket sockets": f.sockets.websocket, "longpoll sockets": f.sockets.longpoll, channels: f.channels,
      processes: f.processes, "longest mailbox": f.longest_queue, "queued messages": f.queued_messages,
      "outbound bytes (total)": f.outbound_bytes, "outbound bytes (largest)": f.outbound_bytes_max,
      "loop lag p99 / max (ms)": `${f.loop_lag_p99_ms} / ${f.loop_lag_max_ms}`, subscriptions: f.subscriptions,
      presences: f.presences,
    };
    for (const [k, v] of Object.entries(shown)) {
      const div = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      text(dt, k);
      text(dd, v);
      div.append(dt, dd);
      dl.appendChild(div);
    }
  }

  function plot(snap) {
    times.push(snap.time);
    SERIES.forEach(([, get], k) => values[k].push(get(snap.figures)));
    if (times.length > KEEP) {
      times.shift();
      values.forEach((v) => v.shift());
    }
    charts.forEach((chart, k) => chart.setData([times, values[k]]));
  }

  function tree(node, lead, last, top, lines) {
    if (!node) return lines;
    const parts = [node.pid || "-"];
    if (node.name) parts.push(node.name);
    if (!top && node.id !== "undefined") parts.push(`id=${node.id}`);
    if (node.supervisor) {
      parts.push(`${node.supervisor} ${node.strategy || ""}`.trim());
      if (node.counts) parts.push(`[${node.counts.active}/${node.counts.specs} active]`);
      if (node.restarts) parts.push(`restarts ${node.restarts.recent}/${node.restarts.max_restarts} in ${node.restarts.max_seconds}s, ${node.restarts.total} total`);
    } else {
      if (node.label) parts.push(node.label);
      parts.push(node.status || "?");
      if (node.queue) parts.push(`queue=${node.queue}`);
    }
    lines.push(lead + (top ? "" : last ? "└── " : "├── ") + parts.join("  "));
    const kids = node.children || [];
    const sub = top ? "" : lead + (last ? "    " : "│   ");
    kids.forEach((c, i) => tree(c, sub, i === kids.length - 1, false, lines));
    return lines;
  }

  function node(n) {
    const div = $("node");
    div.textContent = "";
    for (const ps of n.pubsub) {
      const p = document.createElement("pre");
      const lines = [`PubSub ${ps.name}: adapter ${ps.adapter}, node ${ps.node_name}, ${ps.subscriptions} subscriptions, ${ps.topics} topics`];
      if (ps.connection) lines.push(`  connection: ${JSON.stringify(ps.connection)}  counters: ${JSON.stringify(ps.counters)}`);
      for (const [name, st] of Object.entries(ps.nodes || {})) lines.push(`  node ${name}: ${st.status}, last message ${st.seconds_since_last_message}s ago`);
      p.textContent = lines.join("\n");
      div.appendChild(p);
    }
    for (const pr of n.presence) {
      const p = document.createElement("pre");
      p.textContent = `Presence ${pr.name}: ${pr.presences} presences (${pr.local_presences} here) on ${pr.topics} topics; replicas ${JSON.stringify(pr.replicas)}`;
      div.appendChild(p);
    }
  }

  function render(snap) {
    $("took").textContent = `snapshot built in ${snap.took_ms} ms`;
    figures(snap.figures);
    plot(snap);
    const sockets = $("sockets").tBodies[0];
    sockets.textContent = "";
    for (const s of snap.sockets) {
      const tr = row(sockets, [s.pid, s.handler, s.transport, s.peer, Object.keys(s.channels).join(", ") || "-",
        s.outbound_bytes, `${s.bytes_in ?? "?"}/${s.bytes_out ?? "?"}`], { "data-pid": s.pid });
      tr.children[4].className = "channels";
    }
    const procs = $("processes").tBodies[0];
    procs.textContent = "";
    for (const p of snap.processes) {
      const tr = row(procs, [p.pid, p.name, p.status, p.queue, p.links, p.monitors, p.initial_call], { "data-pid": p.pid });
      tr.addEventListener("click", () => detail(p.pid));
    }
    $("tree").textContent = snap.tree ? tree(snap.tree, "", true, true, []).join("\n") : "(no application root given)";
    const topics = $("topics").tBodies[0];
    topics.textContent = "";
    for (const t of snap.topics) row(topics, [t.pubsub, t.topic, t.subscriptions, t.processes]);
    node(snap.node);
  }

  function detail(pid) {
    selected = pid;
    channel.push("process", { pid })
      .receive("ok", (d) => {
        $("detail").hidden = false;
        $("detail-title").textContent = `process ${pid}`;
        $("detail-info").textContent = JSON.stringify(d.info, null, 2) + (d.stack.length ? "\n\n" + d.stack.join("\n") : "");
        $("detail-state").textContent = d.state === null ? "(no answer to get_status)" : d.state;
        $("kill").hidden = !allowKill;
      })
      .receive("error", (r) => {
        $("detail").hidden = false;
        $("detail-title").textContent = `process ${pid}: ${r.reason}`;
      });
  }

  $("kill").addEventListener("click", () => {
    if (selected && window.confirm(`kill ${selected}?`)) channel.push("kill", { pid: selected });
  });

  channel.on("snapshot", render);
  channel.join()
    .receive("ok", (r) => {
      allowKill = !!r.allow_kill;
      $("status").textContent = "live";
      $("status").className = "status live";
    })
    .receive("error", (r) => {
      $("status").textContent = `refused: ${(r && r.reason) || "error"}`;
      $("status").className = "status down";
    });
  socket.onClose && socket.onClose(() => { $("status").textContent = "reconnecting…"; $("status").className = "status down"; });
  socket.connect();
})();
