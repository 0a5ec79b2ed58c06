// The account graph (networkx node-link JSON from /alerts/{id}/graph) drawn
// as SVG: entities in the first column, accounts in one column per money hop,
// flows as arrows (the alert's own in red), ownership dashed. Labels are
// SVG text nodes (textContent).

const NS = "http://www.w3.org/2000/svg";
const MAX_NODES = 160;

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function column(node) {
  if (node.node_type === "entity") return 0;
  const hop = Number(node.hop || 0);
  return hop === 0 ? (node.centre_side ? 1 : 2) : 2 + hop;
}

export function drawGraph(data) {
  const all = data.nodes || [];
  const nodes = all.slice(0, MAX_NODES);
  const ids = new Set(nodes.map((n) => n.id));
  const edges = (data.edges || []).filter((e) => ids.has(e.source) && ids.has(e.target));
  const cols = new Map();
  for (const n of nodes) {
    const c = column(n);
    if (!cols.has(c)) cols.set(c, []);
    cols.get(c).push(n);
  }
  const order = [...cols.keys()].sort((a, b) => a - b);
  const colW = 240;
  const rowH = 34;
  const width = Math.max(600, order.length * colW + 40);
  const height = Math.max(160, Math.max(...[...cols.values()].map((c) => c.length), 1) * rowH + 40);
  const pos = new Map();
  order.forEach((c, i) => {
    const list = cols.get(c);
    list.forEach((n, j) => pos.set(n.id, { x: 30 + i * colW, y: 30 + j * rowH }));
  });
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "graph", role: "img",
    "aria-label": `account graph: ${nodes.length} nodes, ${edges.length} edges`,
  });
  const defs = s("defs");
  for (const [id, cls] of [["arrow", "arrow"], ["arrow-alert", "arrow alert"]]) {
    const m = s("marker", { id, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" });
    m.append(s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: cls }));
    defs.append(m);
  }
  svg.append(defs);
  const edgeLayer = s("g", { class: "edges" });
  for (const e of edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    const flow = e.edge_type === "flow";
    const line = s("line", {
      x1: a.x + 8, y1: a.y, x2: b.x - 8, y2: b.y,
      class: `edge ${e.edge_type || ""}${e.in_alert ? " in-alert" : ""}`,
      "marker-end": flow ? (e.in_alert ? "url(#arrow-alert)" : "url(#arrow)") : "",
    });
    const tip = flow ? `${e.source} → ${e.target}: ${e.amount} ${e.currency || ""} in ${e.count} transaction(s)`
      : `${e.source} → ${e.target} (${e.relation || e.edge_type || e.key || ""})`;
    line.append(s("title", {}, tip));
    edgeLayer.append(line);
    if (flow && e.in_alert) {
      edgeLayer.append(s("text", { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 4, class: "edge-label" }, String(e.amount)));
    }
  }
  svg.append(edgeLayer);
  const nodeLayer = s("g", { class: "nodes" });
  for (const n of nodes) {
    const p = pos.get(n.id);
    const g = s("g", { class: `node ${n.node_type}${n.in_alert ? " in-alert" : ""}`, "data-id": n.id });
    g.append(n.node_type === "entity"
      ? s("rect", { x: p.x - 8, y: p.y - 8, width: 16, height: 16 })
      : s("circle", { cx: p.x, cy: p.y, r: 8 }));
    const label = n.label || n.id;
    g.append(s("text", { x: p.x + 12, y: p.y + 4 }, label.length > 28 ? `${label.slice(0, 27)}…` : label));
    const role = n.node_type === "account" ? `${n.role || ""} ${n.owner_id || ""} ${n.bank_id || ""}` : `${n.kind || ""} ${n.name || ""}`;
    g.append(s("title", {}, `${n.id}\n${role.trim()}`));
    nodeLayer.append(g);
  }
  svg.append(nodeLayer);
  return { svg, shown: nodes.length, total: all.length };
}
