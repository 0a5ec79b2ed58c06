// The account graph (networkx node-link JSON from /alerts/{id}/graph) drawn
// as SVG: entities in the first column, accounts in one column per money hop,
// flows as arrows (the alert's own in red), ownership dashed. Labels are
// SVG text nodes (textContent).

const NS = "http://www.w3.org/2000/svg";
const PER_COLUMN = 30;

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
  const allEdges = data.edges || [];
  // Which nodes to show when there are many: per column, the alert's own
  // first, then by the money through them.
  const weight = new Map();
  for (const e of allEdges) {
    if (e.edge_type !== "flow") continue;
    const fen = Number(e.amount_fen || 0);
    weight.set(e.source, (weight.get(e.source) || 0) + fen);
    weight.set(e.target, (weight.get(e.target) || 0) + fen);
  }
  const byColumn = new Map();
  for (const n of all) {
    const c = column(n);
    if (!byColumn.has(c)) byColumn.set(c, []);
    byColumn.get(c).push(n);
  }
  const cols = new Map();
  const hidden = new Map();
  for (const [c, list] of byColumn) {
    list.sort((a, b) => (Number(!!b.in_alert) - Number(!!a.in_alert))
      || ((weight.get(b.id) || 0) - (weight.get(a.id) || 0)) || (a.id < b.id ? -1 : 1));
    cols.set(c, list.slice(0, PER_COLUMN));
    if (list.length > PER_COLUMN) hidden.set(c, list.length - PER_COLUMN);
  }
  const nodes = [...cols.values()].flat();
  const ids = new Set(nodes.map((n) => n.id));
  const edges = allEdges.filter((e) => ids.has(e.source) && ids.has(e.target));
  const order = [...cols.keys()].sort((a, b) => a - b);
  const colW = 260;
  const rowH = 26;
  const width = Math.max(600, order.length * colW + 40);
  const height = Math.max(160, (Math.max(...[...cols.values()].map((c) => c.length), 1) + 1) * rowH + 40);
  const pos = new Map();
  order.forEach((c, i) => {
    const list = cols.get(c);
    list.forEach((n, j) => pos.set(n.id, { x: 30 + i * colW, y: 30 + j * rowH }));
  });
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, class: "graph", role: "img",
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
      edgeLayer.append(s("text", { x: a.x + (b.x - a.x) * 0.55, y: a.y + (b.y - a.y) * 0.55 - 5, class: "edge-label" }, String(e.amount)));
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
  order.forEach((c, i) => {
    if (!hidden.has(c)) return;
    svg.append(s("text", { x: 30 + i * colW, y: 30 + cols.get(c).length * rowH, class: "more" }, `+${hidden.get(c)}`));
  });
  return { svg, shown: nodes.length, total: all.length };
}
