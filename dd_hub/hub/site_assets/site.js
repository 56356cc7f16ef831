/* dd-hub leaderboard: sortable, filterable boards. Plain ES5, no dependencies, works from file://. */
(function () {
  "use strict";

  function each(list, fn) { Array.prototype.forEach.call(list, fn); }

  /* The sort key of a cell: its data-value (numbers; "" = missing), else its text. */
  function key(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent;
    raw = raw.trim();
    if (!numeric) { return raw === "" ? null : raw.toLowerCase(); }
    var value = parseFloat(raw);
    return isNaN(value) ? null : value;
  }

  function sortBoard(table, index, numeric, ascending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (row, position) { row.setAttribute("data-position", position); });
    rows.sort(function (a, b) {
      var ka = key(a, index, numeric), kb = key(b, index, numeric);
      if (ka === null || kb === null) {          /* missing values always last */
        if (ka === kb) { return a.getAttribute("data-position") - b.getAttribute("data-position"); }
        return ka === null ? 1 : -1;
      }
      var order = ka < kb ? -1 : (ka > kb ? 1 : 0);
      if (order === 0) { return a.getAttribute("data-position") - b.getAttribute("data-position"); }
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  each(document.querySelectorAll("table.board"), function (table) {
    var headers = table.tHead.rows[0].cells;
    each(headers, function (th, index) {
      var button = th.querySelector("button");
      if (!button) { return; }
      button.addEventListener("click", function () {
        var numeric = th.getAttribute("data-type") === "number";
        var state = th.getAttribute("aria-sort");
        /* first click: data-first if given, else numbers largest first and text A to Z; then toggle */
        var first = th.getAttribute("data-first");
        var ascending = state === "ascending" ? false :
          (state === "descending" ? true : (first ? first === "ascending" : !numeric));
        each(headers, function (other) { if (other.querySelector("button")) { other.setAttribute("aria-sort", "none"); } });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        sortBoard(table, index, numeric, ascending);
      });
    });
  });

  each(document.querySelectorAll("input.filter"), function (input) {
    var table = document.getElementById(input.getAttribute("data-board"));
    var counter = document.getElementById(input.getAttribute("data-board") + "-count");
    function apply() {
      var words = input.value.toLowerCase().split(/\s+/).filter(function (w) { return w !== ""; });
      var shown = 0, rows = table.tBodies[0].rows;
      each(rows, function (row) {
        var text = row.textContent.toLowerCase();
        var match = words.every(function (w) { return text.indexOf(w) !== -1; });
        row.hidden = !match;
        if (match) { shown += 1; }
      });
      if (counter) { counter.textContent = shown + " of " + rows.length + " shown"; }
    }
    input.addEventListener("input", apply);
    apply();
  });
}());
