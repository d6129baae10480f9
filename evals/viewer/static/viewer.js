// The trace viewer's script: draws the search tree from the embedded JSON (positions come from
// networkx, computed by evals/viewer/page.py) and shows a node's chain in the side panel.
// Inlined into each page, so it must never hold a closing tag.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("trace-data").textContent);
  const svg = document.getElementById("tree");
  const panel = document.getElementById("panel-body");
  const byId = new Map(data.nodes.map(function (n) { return [n.id, n]; }));
  const chains = new Map(data.chains.map(function (c) { return [String(c.id), c]; }));
  const known = new Set(data.statuses);
  const shapes = new Map();
  const edgesTo = new Map();
  let zoom = 1;

  function el(name, attrs, parent) {
    const node = document.createElementNS(svg.namespaceURI, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function html(tag, text, cls, parent) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    if (parent) parent.appendChild(node);
    return node;
  }

  function truncate(text, n) {
    const flat = String(text || "").replace(/\s+/g, " ").trim();
    return flat.length > n ? flat.slice(0, n - 1) + "\u2026" : flat;
  }

  function fmt(value) {
    if (typeof value === "number") {
      return Number.isInteger(value) ? String(value) : value.toFixed(3);
    }
    if (value === null || value === undefined) return "\u2014";
    if (typeof value === "string") return value;
    return JSON.stringify(value, function (k, v) {
      return typeof v === "number" && !Number.isInteger(v) ? Number(v.toFixed(4)) : v;
    });
  }

  function lastScore(d) {
    const s = d.scores;
    return Array.isArray(s) && s.length ? s[s.length - 1] : null;
  }

  function isBudgetCut(d) {
    return d.finish_reason === "budget" || d.cut_by_budget === true;
  }

  // Root to node, through the first parent of each join (a cycle stops the walk).
  function firstParentPath(id) {
    const path = [];
    const seen = new Set();
    let cur = byId.get(id);
    while (cur && !seen.has(cur.id)) {
      seen.add(cur.id);
      path.unshift(cur);
      cur = cur.parents.length ? byId.get(cur.parents[0]) : undefined;
    }
    return path;
  }

  function draw() {
    svg.setAttribute("viewBox", "0 0 " + data.width + " " + data.height);
    resize();
    const edgeLayer = el("g", { class: "edges" }, svg);
    const nodeLayer = el("g", { class: "nodes" }, svg);
    data.nodes.forEach(function (n) {
      n.parents.forEach(function (p, i) {
        const a = byId.get(p);
        if (!a) return;
        const mid = (a.y + n.y) / 2;
        const d = "M" + a.x + " " + a.y + " C" + a.x + " " + mid + " " + n.x + " " + mid +
          " " + n.x + " " + n.y;
        const edge = el("path", { class: i > 0 ? "edge extra" : "edge", d: d }, edgeLayer);
        edge.dataset.source = p;
        edge.dataset.target = n.id;
        if (!edgesTo.has(n.id)) edgesTo.set(n.id, []);
        edgesTo.get(n.id).push(edge);
      });
    });
    data.nodes.forEach(function (n) {
      const d = n.data;
      const status = known.has(d.status) ? d.status : "other";
      const g = el("g", {
        class: "node st-" + status,
        transform: "translate(" + n.x + "," + n.y + ")",
        tabindex: "0",
        role: "button",
      }, nodeLayer);
      g.dataset.id = n.id;
      el("rect", { class: "hit", x: -80, y: -17, width: 160, height: 62 }, g);
      el("title", {}, g).textContent = n.id + " (" + (d.status || "?") + ")\n" + (d.step || "");
      if (n.id === data.selected) el("circle", { class: "ring", r: 16 }, g);
      const cls = "shape st-" + status + (isBudgetCut(d) ? " budget" : "");
      const shape = d.finished
        ? el("rect", { class: cls, x: -10, y: -10, width: 20, height: 20 }, g)
        : el("circle", { class: cls, r: 10 }, g);
      shapes.set(n.id, g);
      const label = n.id === data.root ? "question" : truncate(d.step, 26);
      el("text", { class: "label", y: 26 }, g).textContent = label;
      const score = lastScore(d);
      const facts = [n.id];
      if (score !== null) facts.push(fmt(score));
      if (typeof d.tokens === "number") facts.push(d.tokens + " tok");
      el("text", { class: "facts", y: 39 }, g).textContent = facts.join(" \u00b7 ");
      shape.dataset.status = status;
      g.addEventListener("click", function () { select(n.id); });
      g.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(n.id); }
      });
    });
  }

  function resize() {
    svg.setAttribute("width", Math.round(data.width * zoom));
    svg.setAttribute("height", Math.round(data.height * zoom));
  }

  function nodeButton(id, parent) {
    const b = html("button", id, "goto-node", parent);
    b.type = "button";
    b.dataset.id = id;
    b.addEventListener("click", function () { select(id); });
    return b;
  }

  function select(id) {
    const node = byId.get(id);
    if (!node) return;
    svg.querySelectorAll(".active, .on-path").forEach(function (e) {
      e.classList.remove("active", "on-path");
    });
    const path = firstParentPath(id);
    path.forEach(function (p, i) {
      shapes.get(p.id).classList.add(i === path.length - 1 ? "active" : "on-path");
      if (i > 0) {
        (edgesTo.get(p.id) || []).forEach(function (e) {
          if (e.dataset.source === path[i - 1].id) e.classList.add("on-path");
        });
      }
    });
    shapes.get(id).scrollIntoView({ block: "nearest", inline: "nearest" });
    panel.replaceChildren();
    const d = node.data;
    const head = html("h3", "Node " + id, null, panel);
    html("span", d.status || "?", "badge st-" + (known.has(d.status) ? d.status : "other"), head);
    if (id === data.selected) html("span", "selected answer", "badge answer", head);
    const facts = html("dl", null, "facts", panel);
    const skip = new Set(["step", "status"]);
    ["depth", "tokens", "finished", "finish_reason", "scores"].concat(
      Object.keys(d).filter(function (k) {
        return ["depth", "tokens", "finished", "finish_reason", "scores"].indexOf(k) < 0;
      })
    ).forEach(function (k) {
      if (skip.has(k) || !(k in d)) return;
      html("dt", k, null, facts);
      html("dd", fmt(d[k]), null, facts);
    });
    if (node.parents.length > 1) {
      const join = html("div", null, "join", panel);
      html("p", "A join of " + node.parents.length + " parents (the chain below follows the first):",
        null, join);
      const list = html("ul", null, "parents", join);
      node.parents.forEach(function (p) { nodeButton(p, html("li", null, null, list)); });
    }
    html("h3", "Chain, root to node (" + (path.length - 1) + " steps)", null, panel);
    const steps = html("ol", null, "chain-steps", panel);
    steps.id = "chain-steps";
    path.forEach(function (p) {
      if (p.id === data.root && !p.data.step) return;
      const li = html("li", null, null, steps);
      li.dataset.id = p.id;
      html("pre", p.data.step || "", "step", li);
      nodeButton(p.id, li);
    });
    const chain = chains.get(id);
    if (chain) {
      html("h3", "Full text of chain " + id, null, panel);
      const pre = html("pre", chain.text, "chain-text", panel);
      pre.id = "chain-text";
      html("p", "finish reason: " + fmt(chain.finish_reason) + ", " + fmt(chain.tokens) +
        " tokens", "note", panel);
    }
    const hash = "#node=" + encodeURIComponent(id);
    if (location.hash !== hash) {
      try {
        history.replaceState(null, "", hash);
      } catch (e) {
        // some browsers refuse history changes on file: pages; the address is a nicety
      }
    }
  }

  function fromHash() {
    const m = /^#node=(.*)$/.exec(location.hash);
    if (m) select(decodeURIComponent(m[1]));
  }

  if (svg) {
    draw();
    document.querySelectorAll("button[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () {
        const f = Number(b.dataset.zoom);
        zoom = f === 0 ? 1 : Math.min(4, Math.max(0.1, zoom * f));
        resize();
      });
    });
    window.addEventListener("hashchange", fromHash);
    fromHash();
  }
})();
