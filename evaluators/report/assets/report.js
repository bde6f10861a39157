"use strict";
// LeapBench report: sortable tables and the sample browser. No libraries, no network; the browser's data is
// the JSON in #browser-data (written by evaluators/report/page.py). Text from the data (prompts, run names)
// only ever goes into the page as textContent.

// -- sortable tables: click a header to sort by its column (cells' data-sort, else their text) -----------------

function sortKey(cell) {
  const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
  const number = Number(raw);
  return raw !== "" && !Number.isNaN(number) ? number : raw.toLowerCase();
}

function sortTable(th) {
  const table = th.closest("table");
  const index = Array.from(th.parentNode.children).indexOf(th);
  const descending = th.getAttribute("aria-sort") !== "descending";
  table.querySelectorAll("th").forEach((other) => other.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = sortKey(a.cells[index]);
    const y = sortKey(b.cells[index]);
    const missing = (x === "" || x === "–") - (y === "" || y === "–");  // blanks last either way
    if (missing !== 0) return missing;
    const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    return descending ? -order : order;
  });
  rows.forEach((row) => body.appendChild(row));
}

document.querySelectorAll("table.sortable th").forEach((th) => th.addEventListener("click", () => sortTable(th)));

// -- sample browser ---------------------------------------------------------------------------------------------

const data = JSON.parse(document.getElementById("browser-data").textContent);
const browser = document.getElementById("browser");
const state = { order: "id", page: 0, per: 5, image: 0 };

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function ordered() {
  return state.order === "id" ? data.prompts.map((_, i) => i) : data.orders[state.order];
}

function format(value) {
  return value === null ? "–" : Math.abs(value) >= 100 ? value.toFixed(2) : value.toPrecision(4);
}

function sampleCell(prompt, column) {
  const set = data.sets[column];
  const figure = element("figure", null, "sample");
  const src = prompt.img[state.image] ? prompt.img[state.image][column] : null;
  if (src) {
    const img = element("img");
    img.src = src;
    img.alt = `${set.label}: ${prompt.text} (image ${state.image})`;
    img.loading = "lazy";
    img.addEventListener("load", () => { if (img.naturalWidth < 128) img.classList.add("small"); });
    figure.appendChild(img);
  } else {
    figure.appendChild(element("div", "no image", "missing"));
  }
  const caption = element("figcaption");
  caption.appendChild(element("div", set.label, "label"));
  if (set.caption) caption.appendChild(element("div", set.caption, "sub"));
  for (const metric of data.metrics) {
    const values = prompt.scores[metric][state.image] || [];
    const value = values[column];
    const known = values.filter((v) => v !== null && v !== undefined);
    const top = Math.max(...known);
    const best = known.length > 1 && value === top && top > Math.min(...known);  // no winner when all tie
    caption.appendChild(element("div", `${metric} ${format(value === undefined ? null : value)}`, best ? "best" : ""));
  }
  figure.appendChild(caption);
  return figure;
}

function spreadText(prompt) {
  return Object.entries(prompt.spread).map(([metric, [range, best, worst]]) => range > 0
    ? `${metric}: range ${format(range)} (best ${data.sets[best].label}, worst ${data.sets[worst].label})`
    : `${metric}: all equal`).join(" · ");
}

function renderPage() {
  const list = ordered();
  const pages = Math.max(1, Math.ceil(list.length / state.per));
  state.page = Math.min(Math.max(state.page, 0), pages - 1);
  const start = state.page * state.per;
  const shown = list.slice(start, start + state.per);
  browser.querySelector(".page").textContent =
    `prompts ${list.length ? start + 1 : 0}–${start + shown.length} of ${list.length} · page ${state.page + 1} / ${pages}`;
  const rows = browser.querySelector(".rows");
  rows.replaceChildren();
  for (const index of shown) {
    const prompt = data.prompts[index];
    const block = element("div", null, "prompt");
    block.id = `prompt-${index}`;
    block.appendChild(element("div", `#${prompt.id} ${prompt.text}`, "text"));
    if (Object.keys(prompt.spread).length) block.appendChild(element("div", spreadText(prompt), "spread"));
    const row = element("div", null, "row");
    data.sets.forEach((_, column) => row.appendChild(sampleCell(prompt, column)));
    block.appendChild(row);
    rows.appendChild(block);
  }
}

function show(index, order) {
  state.order = order;
  browser.querySelector("select.order").value = order;
  state.page = Math.floor(ordered().indexOf(index) / state.per);
  renderPage();
  const block = document.getElementById(`prompt-${index}`);
  block.classList.add("flash");
  block.scrollIntoView({ block: "center" });
}

function select(className, options, value, onChange) {
  const node = element("select", null, className);
  for (const [key, text] of options) {
    const option = element("option", text);
    option.value = key;
    node.appendChild(option);
  }
  node.value = value;
  node.addEventListener("change", () => { onChange(node.value); renderPage(); });
  return node;
}

function labelled(text, control) {
  const label = element("label", `${text} `);
  label.appendChild(control);
  return label;
}

function disagreementList() {
  const box = element("div");
  if (!data.metrics.length) return box;
  box.appendChild(element("h3", "Where the runs disagree most"));
  const list = element("ol", null, "disagree");
  const fill = (metric) => {
    list.replaceChildren();
    for (const index of data.orders[metric].slice(0, 8)) {
      const prompt = data.prompts[index];
      if (!prompt.spread[metric] || prompt.spread[metric][0] <= 0) break;
      const [range, best, worst] = prompt.spread[metric];
      const item = element("li");
      const link = element("a", `#${prompt.id} ${prompt.text}`);
      link.addEventListener("click", () => show(index, metric));
      item.appendChild(link);
      item.appendChild(document.createTextNode(
        ` — ${metric} range ${format(range)}: best ${data.sets[best].label}, worst ${data.sets[worst].label}`));
      list.appendChild(item);
    }
  };
  const metrics = data.metrics.map((m) => [m, m]);
  box.appendChild(labelled("on", select("disagree-metric", metrics, data.metrics[0], fill)));
  fill(data.metrics[0]);
  box.appendChild(list);
  return box;
}

function buildBrowser() {
  if (!browser || !data.prompts.length) return;
  browser.appendChild(disagreementList());
  browser.appendChild(element("h3", "Side by side"));
  const controls = element("div", null, "controls");
  const orders = [["id", "prompt id"], ...data.metrics.map((m) => [m, `disagreement on ${m}`])];
  controls.appendChild(labelled("order", select("order", orders, "id", (v) => { state.order = v; state.page = 0; })));
  const images = Array.from({ length: data.images }, (_, k) => [String(k), `image ${k}`]);
  controls.appendChild(labelled("seed", select("image", images, "0", (v) => { state.image = Number(v); })));
  const sizes = [5, 10, 20].map((n) => [String(n), `${n} per page`]);
  controls.appendChild(select("per", sizes, "5", (v) => { state.per = Number(v); state.page = 0; }));
  const previous = element("button", "◀ previous", "previous");
  const next = element("button", "next ▶", "next");
  previous.addEventListener("click", () => { state.page -= 1; renderPage(); });
  next.addEventListener("click", () => { state.page += 1; renderPage(); });
  controls.append(previous, element("span", "", "page"), next);
  browser.appendChild(controls);
  browser.appendChild(element("div", null, "rows"));
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("select")) return;
    if (event.key === "ArrowRight") { state.page += 1; renderPage(); }
    if (event.key === "ArrowLeft") { state.page -= 1; renderPage(); }
  });
  renderPage();
}

buildBrowser();
