// The "What differs between groups" panel: the groups of the samples' `group` column compared
// with patients as the units (GET /api/compare), the open sample's immune phenotype and the
// counts per group, and the differences figure. Computing it reads (or predicts) every
// section's sub-spot maps, so it waits for its button. Every string from the server reaches
// the page as text (textContent), never as HTML.

import { api } from "./api.js";

const $ = (id) => document.getElementById(id);
const SIGNIFICANT_Q = 0.05;
const ROWS_SHOWN = 12;

let comparison = null; // the /api/compare body, once asked for
let openSampleId = null;

function cell(tag, text, className = "") {
  const el = document.createElement(tag);
  el.textContent = text;
  if (className) el.className = className;
  return el;
}

const finite = (v) => v !== null && v !== undefined && Number.isFinite(v);
// p and q: two significant digits (the naive p underflows to 0)
const prob = (v) => (!finite(v) ? "–" : v === 0 ? "0" : v < 1e-3 ? v.toExponential(1) : v.toPrecision(2));
const signed = (v) => (finite(v) ? `${v < 0 ? "−" : "+"}${Math.abs(v).toFixed(2)}` : "–");
const short = (v) => (finite(v) ? v.toFixed(2) : "–");

// design: /api/info's `comparison` (null: no model with a sub-spot model, so no section).
export function initCompare(design) {
  $("compare").hidden = !design;
  if (!design) return;
  if (!design.ready) {
    $("compare-design").textContent = design.why;
    $("compare-load").hidden = true;
    $("compare-status").hidden = true;
    document.body.dataset.compare = "unavailable";
    return;
  }
  const groups = Object.entries(design.groups)
    .map(([group, n]) => `${group} (${n} ${design.subject}${n === 1 ? "" : "s"})`)
    .join(", ");
  const left = design.left_out.length ? `; left out (no ${design.by}): ${design.left_out.join(", ")}` : "";
  $("compare-design").textContent = `Sections grouped by ${design.by}: ${groups}${left}.`;
  $("compare-load").addEventListener("click", () => load());
}

// The open sample changed: its phenotype line follows, once the comparison is there.
export function showSamplePhenotype(sampleId) {
  openSampleId = sampleId;
  if (comparison) renderPhenotype();
}

async function load() {
  $("compare-load").disabled = true;
  $("compare-status").textContent =
    "comparing the groups: every section's sub-spot maps are read, or predicted (seconds a section)…";
  try {
    comparison = await api.compare();
  } catch (error) {
    $("compare-status").textContent = error.message;
    $("compare-load").disabled = false;
    return;
  }
  $("compare-load").hidden = true;
  render();
}

function render() {
  const body = comparison;
  const units = new Set(body.samples.map((s) => s.patient)).size;
  $("compare-status").textContent =
    `${body.n_significant} of ${body.pairs.length} pairs differ at q < ${SIGNIFICANT_Q}; ` +
    `${body.samples.length} sections of ${units} ${body.subject}s, co-location within ${body.radius_um} µm ` +
    `on ${body.resolution_um} µm sub-spot maps; effect: ` +
    (body.groups.length > 2 ? "first group minus second." : `${body.groups[0]} − ${body.groups[1]}.`);
  renderPhenotype();
  renderCounts(body);
  renderPairs(body);
  $("compare-differences").src = body.figures.differences;
  $("compare-differences").hidden = false;
  $("compare-phenotypes-link").href = body.figures.phenotypes;
  $("compare-phenotypes-link").hidden = false;
  document.body.dataset.compare = String(body.pairs.length);
}

function renderPhenotype() {
  const line = $("compare-phenotype");
  line.hidden = false;
  const s = comparison.samples.find((row) => row.sample === openSampleId);
  if (!s) {
    line.textContent = `${openSampleId} is not in the comparison (no ${comparison.by}).`;
    return;
  }
  if (!s.phenotype) {
    line.textContent = `${s.sample} (${comparison.by} ${s.group}): no immune phenotype called.`;
    return;
  }
  line.replaceChildren(
    document.createTextNode(`${s.sample} (${comparison.by} ${s.group}), immune phenotype: `),
    cell("b", s.phenotype),
    document.createTextNode(
      ` — ${s.phenotype_decided_by || ""}; T-cell share in tumour nests ${short(s.phenotype_t_nest)}, ` +
        `at their margin ${short(s.phenotype_t_margin)}.`,
    ),
  );
}

// Sections per group and immune phenotype.
function renderCounts(body) {
  const table = $("compare-counts");
  table.replaceChildren();
  const calls = [...new Set(Object.values(body.phenotype_counts).flatMap((row) => Object.keys(row)))].sort();
  const head = document.createElement("tr");
  for (const h of [body.by, ...calls]) head.appendChild(cell("th", h));
  table.appendChild(head);
  for (const [group, row] of Object.entries(body.phenotype_counts)) {
    const tr = document.createElement("tr");
    tr.appendChild(cell("td", group));
    for (const call of calls) tr.appendChild(cell("td", String(row[call] || 0), "num"));
    table.appendChild(tr);
  }
}

// The pairs at q < 0.05 first (then by q), up to ROWS_SHOWN; a click draws the pair patient by
// patient.
function renderPairs(body) {
  const table = $("compare-pairs");
  table.replaceChildren();
  const contrasts = body.groups.length > 2;
  const [g1, g2] = body.groups;
  const head = document.createElement("tr");
  for (const h of ["pair, higher in", "effect [95 %]", "q", "p exact", "naive p †"]) head.appendChild(cell("th", h));
  head.children[1].title = contrasts ? "first group minus second" : `${g1} − ${g2}`;
  head.children[3].title = "exact permutation p of the patients' group labels";
  head.lastChild.title = "not used (bins as independent)";
  table.appendChild(head);
  const hit = (p) => finite(p.q) && p.q < SIGNIFICANT_Q;
  const rows = [...body.pairs].sort((x, y) => Number(hit(y)) - Number(hit(x)) || (x.q ?? 1) - (y.q ?? 1));
  for (const p of rows.slice(0, ROWS_SHOWN)) {
    const tr = document.createElement("tr");
    if (hit(p)) tr.className = "hit";
    tr.append(
      pairCell(p, contrasts),
      effectCell(p),
      cell("td", prob(p.q), "num"),
      cell("td", prob(p.p_perm), "num"),
      cell("td", prob(p.naive_p), "num naive"),
    );
    tr.title = `${p.a} · ${p.b}: click to see it patient by patient`;
    tr.addEventListener("click", () => showPair(p));
    table.appendChild(tr);
  }
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell("td", "no pair could be tested (too rare in a group's patients)");
    td.colSpan = 5;
    tr.appendChild(td);
    table.appendChild(tr);
  }
}

// The pair above the group it is higher in, and the effect above its interval: two short
// lines a cell keep the table inside the panel.
function pairCell(p, contrasts) {
  const name = `${p.a} · ${p.b}` + (contrasts ? ` (${p.groups[0]} vs ${p.groups[1]})` : "");
  const td = cell("td", name);
  td.append(document.createElement("br"), cell("small", `higher in ${p.higher_in || "–"}`));
  return td;
}

function effectCell(p) {
  const td = cell("td", signed(p.effect), "num");
  td.append(document.createElement("br"), cell("small", `[${signed(p.low)}, ${signed(p.high)}]`));
  return td;
}

function showPair(p) {
  const query = new URLSearchParams({ kind: "pair", pair: `${p.a},${p.b}` });
  if (comparison.by !== "group") query.set("by", comparison.by);
  $("compare-pair").src = `/api/compare/figure.png?${query}`;
  $("compare-pair").alt = `${p.a} · ${p.b}, patient by patient`;
  $("compare-pair").hidden = false;
}
