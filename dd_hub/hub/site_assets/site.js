/* dd-hub leaderboard: boards that page, sort, filter and search, drawn from the site's data scripts (data/*.js,
   each loaded with a script tag when first needed, so the site works from file:// and the page stays small at
   10,000 models). Plain ES5, no dependencies; every string from a card enters the page as text, never as markup. */
var DDHUB = (function () {
  "use strict";

  /* a board row's fields, in the order the site's builder writes them (dd_hub/hub/site.py, ROW_FIELDS) */
  var F = {rank: 0, slug: 1, model: 2, clean: 3, robust: 4, gain: 5, status: 6, statusText: 7, flags: 8,
           architecture: 9, method: 10, dataset: 11, n: 12, evaluation: 13, repo: 14, published: 15, rho2: 16, also: 17};
  /* a search entry's fields (boards: positions in the index's list of boards) */
  var S = {slug: 0, model: 1, architecture: 2, method: 3, dataset: 4, boards: 5};

  function pct(v) { return v === null ? "\u2013" : (100 * v).toFixed(2) + "%"; }
  function pp(v) { return v === null ? "\u2013" : (v >= 0 ? "+" : "\u2212") + Math.abs(100 * v).toFixed(2) + " pp"; }

  var TESTED = [
    {key: "rank", label: "#", num: true, cls: "rank", first: "asc"},
    {key: "model", label: "Model", cls: "model"},
    {key: "clean", label: "Clean", num: true, fmt: pct, cls: "pct"},
    {key: "robust", label: "AutoAttack robust", num: true, fmt: pct, cls: "pct robust"},
    {key: "gain", label: "Gain", num: true, fmt: pp, cls: "gain", title: "robust accuracy over the reference model"},
    {key: "status", label: "Status", cls: "status"},
    {key: "architecture", label: "Architecture", cls: "ident"},
    {key: "method", label: "Method", cls: "method"},
    {key: "n", label: "Images", num: true, cls: "count", title: "test images the AutoAttack figure rests on"},
    {key: "evaluation", label: "Evaluation", cls: "evaluation"},
    {key: "repo", label: "Hub", cls: "hub"}
  ];
  var UNTESTED = [
    {key: "rank", label: "#", num: true, cls: "rank", first: "asc"},
    {key: "model", label: "Model", cls: "model"},
    {key: "clean", label: "Clean", num: true, fmt: pct, cls: "pct"},
    {key: "rho2", label: "rho2", num: true, fmt: function (v) { return v === null ? "\u2013" : v.toPrecision(4); },
     cls: "pct"},
    {key: "architecture", label: "Architecture", cls: "ident"},
    {key: "dataset", label: "Dataset", cls: "method"},
    {key: "method", label: "Method", cls: "method"},
    {key: "repo", label: "Hub", cls: "hub"}
  ];
  var RESULTS = [
    {key: "model", label: "Model", cls: "model"},
    {key: "architecture", label: "Architecture", cls: "ident"},
    {key: "method", label: "Method", cls: "method"},
    {key: "dataset", label: "Dataset", cls: "method"},
    {key: "boards", label: "Boards", cls: "boards"}
  ];

  var meta = null, boards = {}, search = null, pending = {};
  var state = {board: null, query: "", page: 0, sortKey: "rank", desc: false, filters: {}};

  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }
  function link(href, text, cls) { var a = el("a", text, cls); a.setAttribute("href", href); return a; }

  function load(file, done) {               /* a data script, once; ``done`` when it has run */
    if (pending[file] === "done") { done(); return; }
    if (pending[file]) { pending[file].push(done); return; }
    pending[file] = [done];
    var script = document.createElement("script");
    script.src = "data/" + file;
    script.onload = function () { var calls = pending[file]; pending[file] = "done"; calls.forEach(function (f) { f(); }); };
    script.onerror = function () { $("view-title").textContent = "Could not load data/" + file; };
    document.body.appendChild(script);
  }

  function boardMeta(anchor) {
    for (var i = 0; i < meta.boards.length; i += 1) { if (meta.boards[i].anchor === anchor) { return meta.boards[i]; } }
    return null;
  }

  function matchesFilters(architecture, method, dataset) {
    var f = state.filters;
    return (!f.architecture || f.architecture === architecture) && (!f.method || f.method === method) &&
      (!f.dataset || f.dataset === dataset);
  }

  function sortRows(rows, column) {
    var index = F[column.key], desc = state.desc;
    return rows.slice().sort(function (a, b) {
      var x = a[index], y = b[index];
      if (column.key === "repo") { x = a[F.published] ? x : ""; y = b[F.published] ? y : ""; }
      var xm = x === null || x === "", ym = y === null || y === "";
      if (xm || ym) { return xm === ym ? a[F.rank] - b[F.rank] : (xm ? 1 : -1); }   /* missing values last */
      if (!column.num) { x = String(x).toLowerCase(); y = String(y).toLowerCase(); }
      var order = x < y ? -1 : (x > y ? 1 : 0);
      return order === 0 ? a[F.rank] - b[F.rank] : (desc ? -order : order);
    });
  }

  function header(columns, sortable) {
    var row = el("tr");
    columns.forEach(function (column) {
      var th = el("th", null, column.cls + (column.num ? " num" : ""));
      if (column.title) { th.title = column.title; }
      if (sortable) {
        var button = el("button", column.label);
        button.type = "button";
        th.setAttribute("aria-sort", state.sortKey === column.key ? (state.desc ? "descending" : "ascending") : "none");
        button.addEventListener("click", function () {
          if (state.sortKey === column.key) { state.desc = !state.desc; } else {
            state.sortKey = column.key;
            state.desc = column.first ? column.first !== "asc" : !!column.num;   /* numbers: largest first */
          }
          state.page = 0;
          render();
        });
        th.appendChild(button);
      } else { th.textContent = column.label; }
      row.appendChild(th);
    });
    var head = $("table").tHead;
    head.textContent = "";
    head.appendChild(row);
  }

  function cell(row, column) {
    var td = el("td", null, column.cls + (column.num ? " num" : ""));
    var value = row[F[column.key]];
    if (column.key === "model") {
      td.appendChild(link("models/" + encodeURIComponent(row[F.slug]) + ".html", value));
    } else if (column.key === "status") {
      td.className += " status-" + value;
      var status = el("span", value);  // the word; what stands behind it (who, which record) on hover
      status.title = row[F.statusText] || value;
      td.appendChild(status);
      if (row[F.also].length) {
        td.appendChild(el("br"));
        td.appendChild(el("span", "same weights as " + row[F.also].join(", "), "muted"));
      }
      if (row[F.flags]) { td.appendChild(el("br")); td.appendChild(el("span", "\u2691 " + row[F.flags], "flag")); }
    } else if (column.key === "repo") {
      if (!row[F.published]) {
        var tag = el("span", "unpublished", "tag unpublished");
        tag.title = "the weights are not published yet";
        td.appendChild(tag);
      }
      else if (value) { td.appendChild(link(meta.hub + "/" + encodeURI(value), "Hub \u2197", "hub")); }
      else { td.appendChild(el("span", "\u2013", "muted")); }
    } else if (column.fmt) {
      td.textContent = column.fmt(value);
      if (column.key === "gain" && value !== null) { td.className += value > 0 ? " up" : (value < 0 ? " down" : ""); }
    } else {
      td.textContent = value === null || value === "" ? "\u2013" : String(value);
    }
    return td;
  }

  function page(rows) {
    var size = parseInt($("page-size").value, 10) || meta.pageSize;
    var pages = Math.max(1, Math.ceil(rows.length / size));
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * size;
    $("page-info").textContent = rows.length ? (start + 1).toLocaleString() + "\u2013" +
      Math.min(rows.length, start + size).toLocaleString() + " of " + rows.length.toLocaleString() : "no rows";
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    return rows.slice(start, start + size);
  }

  function renderBoard() {
    var info = boardMeta(state.board), rows = boards[state.board];
    var columns = info.tested ? TESTED : UNTESTED;
    var column = columns.filter(function (c) { return c.key === state.sortKey; })[0] || columns[0];
    state.sortKey = column.key;
    var shown = rows.filter(function (r) { return matchesFilters(r[F.architecture], r[F.method], r[F.dataset]); });
    $("view-title").textContent = info.title;
    $("view-note").textContent = (info.tested ?
      "Ranked by AutoAttack robust accuracy: verified figures first, then self-reported, then flagged or disputed. " :
      "These cards hold no AutoAttack figure; listed by rho2 (mean DeepFool L2 ratio, not comparable across datasets). ")
      + shown.length.toLocaleString() + " of " + rows.length.toLocaleString() + " models shown.";
    header(columns, true);
    var body = $("table").tBodies[0];
    body.textContent = "";
    page(sortRows(shown, column)).forEach(function (row) {
      var tr = el("tr");
      columns.forEach(function (c) { tr.appendChild(cell(row, c)); });
      body.appendChild(tr);
    });
  }

  function renderResults() {
    var words = state.query.toLowerCase().split(/\s+/).filter(function (w) { return w !== ""; });
    var found = search.filter(function (m) {
      if (!matchesFilters(m[S.architecture], m[S.method], m[S.dataset])) { return false; }
      var text = [m[S.model], m[S.architecture], m[S.method], m[S.dataset]].concat(
        m[S.boards].map(function (b) { return meta.boards[b].title; })).join(" ").toLowerCase();
      return words.every(function (w) { return text.indexOf(w) !== -1; });
    });
    $("view-title").textContent = "Search: " + state.query;
    $("view-note").textContent = found.length.toLocaleString() + " of " + search.length.toLocaleString() +
      " models match, across every board (name, architecture, method, dataset, threat model).";
    header(RESULTS, false);
    var body = $("table").tBodies[0];
    body.textContent = "";
    page(found).forEach(function (m) {
      var tr = el("tr");
      var name = el("td", null, "model");
      name.appendChild(link("models/" + encodeURIComponent(m[S.slug]) + ".html", m[S.model]));
      tr.appendChild(name);
      [S.architecture, S.method, S.dataset].forEach(function (i) { tr.appendChild(el("td", m[i], "ident")); });
      var where = el("td", null, "boards");
      m[S.boards].forEach(function (b, i) {
        if (i) { where.appendChild(document.createTextNode(" \u00b7 ")); }
        var a = link("#b=" + encodeURIComponent(meta.boards[b].anchor), meta.boards[b].title);
        a.addEventListener("click", function () { $("search").value = ""; });
        where.appendChild(a);
      });
      tr.appendChild(where);
      body.appendChild(tr);
    });
  }

  function render() {
    if (state.query) {
      if (search === null) { $("view-title").textContent = "Searching…"; load("search.js", render); return; }
      renderResults();
      return;
    }
    if (!boards[state.board]) {
      $("view-title").textContent = "Loading " + boardMeta(state.board).title + "…";
      load(boardMeta(state.board).file, render);
      return;
    }
    renderBoard();
  }

  function fromHash() {                      /* #b=<board anchor>: open that board */
    var match = /^#b=(.+)$/.exec(window.location.hash);
    var anchor = match ? decodeURIComponent(match[1]) : null;
    if (anchor && boardMeta(anchor) && anchor !== state.board) {
      state.board = anchor; state.query = ""; state.page = 0; state.sortKey = "rank"; state.desc = false;
      $("board").value = anchor;
      $("search").value = "";
      return true;
    }
    return false;
  }

  function start() {
    var select = $("board");
    meta.boards.forEach(function (b) {
      var option = el("option", b.title + " (" + b.rows.toLocaleString() + ")");
      option.value = b.anchor;
      select.appendChild(option);
    });
    ["architecture", "method", "dataset"].forEach(function (facet) {
      var box = $("f-" + facet);
      meta.facets[facet].forEach(function (value) { var o = el("option", value); o.value = value; box.appendChild(o); });
      box.addEventListener("change", function () { state.filters[facet] = box.value; state.page = 0; render(); });
    });
    state.board = meta.first || meta.boards[0].anchor;
    select.value = state.board;
    fromHash();
    select.addEventListener("change", function () {
      window.location.hash = "b=" + encodeURIComponent(select.value);
    });
    window.addEventListener("hashchange", function () { if (fromHash()) { render(); } });
    var timer = null;
    $("search").addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.query = $("search").value.trim(); state.page = 0; render(); }, 120);
    });
    $("prev").addEventListener("click", function () { state.page -= 1; render(); });
    $("next").addEventListener("click", function () { state.page += 1; render(); });
    $("page-size").addEventListener("change", function () { state.page = 0; render(); });
    render();
  }

  return {
    index: function (data) { meta = data; if ($("board")) { start(); } },
    board: function (anchor, rows) { boards[anchor] = rows; },
    search: function (rows) { search = rows; }
  };
}());
