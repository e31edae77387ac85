// The results explorer's behaviour: protocol views, sortable and filterable tables, and the
// paged, searchable drill-down. No library; the page's data never leaves it.
(function () {
  "use strict";
  var PAGE = 20;
  function all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // --- protocol views -------------------------------------------------------------------------
  function showView(index) {
    all("section.view").forEach(function (s) { s.hidden = s.dataset.view !== String(index); });
    all("header.top nav a[data-section]").forEach(function (a) {
      a.setAttribute("href", "#v" + index + "-" + a.dataset.section);
    });
    var select = document.getElementById("view-select");
    if (select) select.value = String(index);
  }
  var picker = document.getElementById("view-select");
  if (picker) picker.addEventListener("change", function () { showView(picker.value); });

  // --- sortable tables ------------------------------------------------------------------------
  function cellValue(row, i, numeric) {
    var cell = row.cells[i];
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
    if (raw === "" || raw === "–") return null;
    if (!numeric) return raw.toLowerCase();
    var v = parseFloat(raw);
    return isNaN(v) ? null : v;
  }
  function sortBy(table, th) {
    var headers = all("thead th", table);
    var i = headers.indexOf(th);
    var numeric = th.dataset.type === "number";
    var dir = th.getAttribute("aria-sort") === "descending" ? "ascending"
      : (th.getAttribute("aria-sort") === "ascending" ? "descending" : (numeric ? "descending" : "ascending"));
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (r, k) {
      return { row: r, key: cellValue(r, i, numeric), k: k };
    });
    rows.sort(function (a, b) {
      if (a.key === null || b.key === null) return (a.key === null) - (b.key === null) || a.k - b.k;
      if (a.key < b.key) return -sign;
      if (a.key > b.key) return sign;
      return a.k - b.k;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }
  all("table.sortable").forEach(function (table) {
    all("thead th", table).forEach(function (th) {
      var button = th.querySelector("button");
      if (button) button.addEventListener("click", function () { sortBy(table, th); });
    });
  });

  // --- filters (leaderboard: architecture, size; drill-down pairs: size, task) -----------------
  all(".filter-scope").forEach(function (scope) {
    var selects = all("select[data-filter]", scope);
    var rows = all("table.filterable tbody tr", scope);
    var count = scope.querySelector(".count");
    var noun = scope.dataset.noun || "rows";
    function apply() {
      var shown = 0;
      rows.forEach(function (r) {
        var keep = selects.every(function (s) { return !s.value || r.dataset[s.dataset.filter] === s.value; });
        r.hidden = !keep;
        if (keep) shown += 1;
      });
      if (count) count.textContent = shown + " of " + rows.length + " " + noun + " shown";
    }
    selects.forEach(function (s) { s.addEventListener("change", apply); });
    apply();
  });

  // --- drill-down -----------------------------------------------------------------------------
  var parsed = {};
  function pairData(id) {
    if (!parsed[id]) {
      var node = document.getElementById("data-" + id);
      if (!node) return null;
      var data = JSON.parse(node.textContent);
      data.haystack = data.examples.map(function (e) {
        return [e[0], e[1], e[2], e[3], e[5]].join(" \u0001 ").toLowerCase();
      });
      parsed[id] = data;
    }
    return parsed[id];
  }
  function mark(right) { return right === true ? "✓" : (right === false ? "✗" : ""); }
  function pct(x) { return x === null || x === undefined ? "" : " (p=" + x.toFixed(2) + ")"; }
  function fmtP(p) { return p < 0.001 ? "< 0.001" : "= " + p.toFixed(3); }

  function twoByTwo(data) {
    var t = el("table", "twobytwo");
    var head = t.insertRow();
    ["", "decoder right", "decoder wrong", "total"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    [["encoder right", 0], ["encoder wrong", 1]].forEach(function (spec) {
      var r = t.insertRow();
      r.appendChild(el("th", null, spec[0]));
      var a = data.table[spec[1]][0], b = data.table[spec[1]][1];
      r.appendChild(el("td", spec[1] === 1 ? "differ" : "", a));
      r.appendChild(el("td", spec[1] === 0 ? "differ" : "", b));
      r.appendChild(el("td", "muted", a + b));
    });
    return t;
  }

  function renderRows(state) {
    var data = state.data, body = state.body;
    body.textContent = "";
    var start = state.page * PAGE, items = state.matches.slice(start, start + PAGE);
    items.forEach(function (i) {
      var e = data.examples[i], r = body.insertRow();
      r.appendChild(el("td", "id", e[0]));
      r.appendChild(el("td", "input", e[1] === null ? "– (input not kept by this run)" : e[1]));
      r.appendChild(el("td", "gold", e[2]));
      [[e[3], e[4], e[7]], [e[5], e[6], e[8]]].forEach(function (side) {
        var td = el("td", side[2] === true ? "right" : (side[2] === false ? "wrong" : ""));
        td.appendChild(el("span", "mark", mark(side[2]) + " "));
        td.appendChild(el("span", "pred", side[0]));
        if (side[1] !== null) td.appendChild(el("span", "conf", pct(side[1])));
        r.appendChild(td);
      });
    });
    var pages = Math.max(1, Math.ceil(state.matches.length / PAGE));
    state.info.textContent = "page " + (state.page + 1) + " of " + pages + " · " + state.matches.length + " examples";
    state.prev.disabled = state.page === 0;
    state.next.disabled = state.page >= pages - 1;
  }

  function openPair(id) {
    var data = pairData(id);
    if (!data) return false;
    var source = document.getElementById("data-" + id);
    var view = source.closest("section.view");
    if (view.hidden) showView(view.dataset.view);
    var panel = view.querySelector(".drill-panel");
    all("table.pairs tr.open", view).forEach(function (r) { r.classList.remove("open"); });
    var listed = view.querySelector('table.pairs tr[data-pair="' + id + '"]');
    if (listed) listed.classList.add("open");
    panel.textContent = "";
    panel.hidden = false;
    panel.dataset.pair = id;
    panel.appendChild(el("h3", null, data.task_name + " · " + data.row + ": " + data.encoder + " vs " + data.decoder));
    if (data.kind === "regression") {
      panel.appendChild(el("p", "muted", "Regression: no right or wrong. The " + data.examples.length +
        " examples where the two models' absolute errors differ most, of " + data.n + "."));
    } else if (data.kind === "retrieval") {
      panel.appendChild(el("p", "muted", "Retrieval: the " + data.examples.length + " queries (of " + data.n +
        ") where the two models' nDCG@10 differ most, with each model's top documents; gold lists the relevant documents."));
    } else {
      panel.appendChild(twoByTwo(data));
      var b = data.table[0][1], c = data.table[1][0];
      panel.appendChild(el("p", "mcnemar", "McNemar's exact test: only the encoder right " + b +
        ", only the decoder right " + c + ", p " + fmtP(data.p) +
        (data.p < 0.05 ? " (significant at 0.05)" : " (not significant at 0.05)") + "."));
      var shown = data.examples.length;
      panel.appendChild(el("p", "muted summary", data.n_disagree + " of " + data.n + " examples disagree" +
        (shown < data.n_disagree ? "; a random sample of " + shown + " is kept in this page." : "; all are listed.")));
    }
    var notes = [];
    if (data.seeds && data.seeds.length) notes.push("Seeds shown: encoder " + data.seeds[0] + ", decoder " + data.seeds[1] + ".");
    if (data.examples.length && !data.has_input) notes.push("These runs did not keep the inputs.");
    if (data.examples.length && !data.has_conf && data.kind !== "regression" && data.kind !== "retrieval") notes.push("These runs did not keep confidences.");
    if (notes.length) panel.appendChild(el("p", "muted", notes.join(" ")));
    var search = el("input", "search");
    search.type = "search";
    search.placeholder = "search inputs, labels, predictions";
    search.setAttribute("aria-label", "search examples");
    panel.appendChild(search);
    var pager = el("div", "pager");
    var prev = el("button", "prev", "‹ previous"), next = el("button", "next", "next ›"), info = el("span", "info muted");
    prev.type = next.type = "button";
    pager.appendChild(prev); pager.appendChild(info); pager.appendChild(next);
    panel.appendChild(pager);
    var table = el("table", "examples");
    var head = table.createTHead().insertRow();
    ["id", "input", "gold", "encoder (" + data.encoder + ")", "decoder (" + data.decoder + ")"].forEach(function (h) {
      head.appendChild(el("th", null, h));
    });
    var state = { data: data, body: table.createTBody(), page: 0, info: info, prev: prev, next: next,
      matches: data.examples.map(function (_, i) { return i; }) };
    panel.appendChild(table);
    search.addEventListener("input", function () {
      var q = search.value.trim().toLowerCase();
      state.matches = [];
      data.haystack.forEach(function (h, i) { if (!q || h.indexOf(q) >= 0) state.matches.push(i); });
      state.page = 0;
      renderRows(state);
    });
    prev.addEventListener("click", function () { state.page = Math.max(0, state.page - 1); renderRows(state); });
    next.addEventListener("click", function () { state.page += 1; renderRows(state); });
    renderRows(state);
    panel.scrollIntoView({ block: "start" });
    return true;
  }

  function fromHash() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (id && document.getElementById("data-" + id)) openPair(id);
  }
  window.addEventListener("hashchange", fromHash);
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a.drill-link");
    if (!link) return;
    var id = link.getAttribute("href").slice(1);
    if (location.hash.slice(1) === id) { event.preventDefault(); openPair(id); }
  });
  fromHash();
  window.ettinReport = { openPair: openPair, showView: showView, ready: true };
})();
