// Ratchet's only script besides htmx: copy buttons on JSON blocks and tracebacks, the time zone
// cookie, and open <details> kept open across live swaps. No inline scripts anywhere, so the
// pages work under a strict content security policy.
(function () {
  function addCopyButtons(root) {
    root.querySelectorAll("pre.copyable:not([data-copy])").forEach(function (pre) {
      pre.setAttribute("data-copy", "1");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy";
      button.textContent = "Copy";
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(pre.textContent).then(function () { button.textContent = "Copied"; });
      });
      pre.parentNode.insertBefore(button, pre);
    });
  }
  // A form with data-confirm asks first ("Cancel this run?"); the server checks permissions anyway.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });
  // The server shows times in the zone this cookie names (monitoring/timezones.py): from the next request on.
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var stored = (document.cookie.match(/(?:^|;\s*)ratchet_tz=([^;]*)/) || [])[1];
    if (zone && stored !== zone) { document.cookie = "ratchet_tz=" + zone + "; path=/; max-age=31536000; samesite=lax"; }
  } catch (error) { /* no Intl: times stay in UTC */ }
  // A live swap (the run page's poll) must not close a traceback or JSON block the user opened.
  var opened = [];
  document.addEventListener("htmx:beforeSwap", function () {
    opened = Array.prototype.map.call(document.querySelectorAll("details[id][open]"), function (d) { return d.id; });
  });
  // A poll sent before the user selected a state or changed a filter answers for the old
  // address: dropped, or it would undo the selection it crossed.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var elt = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!elt || elt.id !== "run-poll") { return; }
    var asked = new URLSearchParams((event.detail.requestConfig.path || "").split("?")[1] || "");
    asked.delete("fragment");
    var here = new URLSearchParams(window.location.search);
    asked.sort(); here.sort();
    if (asked.toString() !== here.toString()) { event.detail.shouldSwap = false; }
  });
  document.addEventListener("DOMContentLoaded", function () { addCopyButtons(document); });
  document.addEventListener("htmx:afterSwap", function (event) {
    opened.forEach(function (id) { var d = document.getElementById(id); if (d) { d.open = true; } });
    addCopyButtons(document);
  });
})();
// Approvals: a decision or claim the server refused (409) or could not read (400) answers with
// the request's card again, its message inside: swapped like a success. The decision form is
// kept across live swaps (hx-preserve, by its id) so a comment being typed survives the run
// page's poll; its own answer must replace it (it carries back what was typed, and the
// message), so the form gives its id up first.
(function () {
  document.addEventListener("htmx:beforeSwap", function (event) {
    var elt = event.detail.requestConfig && event.detail.requestConfig.elt;
    var form = elt && elt.closest ? elt.closest("form[data-approval-action]") : null;
    if (!form) { return; }
    var status = event.detail.xhr.status;
    if (status === 400 || status === 409) { event.detail.shouldSwap = true; event.detail.isError = false; }
    var card = form.closest(".approval-card");
    var kept = card && card.querySelector("form[hx-preserve]");
    if (kept && kept === form) { kept.removeAttribute("id"); }
  });
})();
// The run page's poll redraws its approvals panel: a JSON block opened in a card (the context,
// edited data) has no id of its own, so it is kept open by its card and its place in it.
(function () {
  var opened = [];
  document.addEventListener("htmx:beforeSwap", function () {
    opened = [];
    document.querySelectorAll(".approval-card[id]").forEach(function (card) {
      card.querySelectorAll("details:not([id])").forEach(function (details, index) {
        if (details.open) { opened.push([card.id, index]); }
      });
    });
  });
  document.addEventListener("htmx:afterSwap", function () {
    opened.forEach(function (place) {
      var card = document.getElementById(place[0]);
      var details = card && card.querySelectorAll("details:not([id])")[place[1]];
      if (details) { details.open = true; }
    });
  });
})();
// Designer: a refused edit (400) or a stale one (409) answers with the editor again, the reason
// inside and the person's input kept: swapped like a success.
(function () {
  document.addEventListener("htmx:beforeSwap", function (event) {
    var elt = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!elt || !elt.closest || !elt.closest("#editor")) { return; }
    var status = event.detail.xhr.status;
    if (status === 400 || status === 409) { event.detail.shouldSwap = true; event.detail.isError = false; }
  });
})();
// Designer: zoom the graph (buttons and + - 0), keyboard shortcuts, and their help (?).
(function () {
  var scale = 1;
  function graph() { return document.querySelector("#editor .graph svg.workflow-graph"); }
  function zoom(factor) {
    var svg = graph();
    if (!svg) { return; }
    if (!svg.dataset.width) { svg.dataset.width = svg.getAttribute("width"); svg.dataset.height = svg.getAttribute("height"); }
    scale = factor === 0 ? 1 : Math.min(4, Math.max(0.2, scale * factor));
    if (factor === 0) {  // fit: as wide as the card, never wider than drawn
      svg.style.width = "100%"; svg.style.height = "auto"; svg.style.maxWidth = svg.dataset.width;
      return;
    }
    svg.style.maxWidth = "none";
    svg.style.width = "calc(" + svg.dataset.width + " * " + scale + ")";
    svg.style.height = "calc(" + svg.dataset.height + " * " + scale + ")";
  }
  function click(id) { var button = document.getElementById(id); if (button && !button.disabled) { button.click(); } }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-zoom]");
    if (button) { event.preventDefault(); zoom(parseFloat(button.getAttribute("data-zoom"))); }
    if (event.target.closest && event.target.closest("#show-shortcuts")) {
      var dialog = document.getElementById("shortcuts"); if (dialog) { dialog.showModal(); }
    }
  });
  document.addEventListener("htmx:afterSwap", function () { if (scale !== 1) { var s = scale; scale = 1; zoom(s); } });
  document.addEventListener("keydown", function (event) {
    if (!document.getElementById("editor")) { return; }
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName) || event.target.isContentEditable;
    var mod = event.ctrlKey || event.metaKey;
    if (mod && event.key.toLowerCase() === "z" && !typing) { event.preventDefault(); click(event.shiftKey ? "redo" : "undo"); return; }
    if (mod && event.key.toLowerCase() === "y" && !typing) { event.preventDefault(); click("redo"); return; }
    if (mod && event.key.toLowerCase() === "s" && event.target.closest && event.target.closest("#source-form")) {
      event.preventDefault(); click("save-source"); return;
    }
    if (typing || mod || event.altKey) { return; }
    if (event.key === "?") { var dialog = document.getElementById("shortcuts"); if (dialog) { dialog.showModal(); } }
    else if (event.key === "/") { event.preventDefault(); var find = document.getElementById("find-state"); if (find) { find.focus(); } }
    else if (event.key === "+" || event.key === "=") { zoom(1.25); }
    else if (event.key === "-") { zoom(0.8); }
    else if (event.key === "0") { zoom(0); }
    else if (event.key === "n") { var name = document.querySelector("#add-after-form input[name=name], #add-form input[name=name]"); if (name) { event.preventDefault(); name.focus(); } }
  });
})();
// Designer: never lose an edit. The state panel saves each field as it changes (hx-trigger);
// text typed elsewhere in the editor (the source, a rule, a dry run) and not yet sent makes
// leaving the page, or swapping the editor for another state, ask first.
(function () {
  function dirtyForms() { return Array.prototype.filter.call(document.querySelectorAll("#editor form[data-dirty]"), function () { return true; }); }
  document.addEventListener("input", function (event) {
    var form = event.target.closest && event.target.closest("#editor form");
    if (form && !form.hasAttribute("data-autosave") && !form.matches("[method=dialog]")) { form.setAttribute("data-dirty", "1"); }
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    var own = elt && elt.closest ? elt.closest("form") : null;
    var others = dirtyForms().filter(function (form) { return form !== own; });
    if (!others.length || !document.getElementById("editor")) { return; }
    if (!elt.closest || !elt.closest("#editor, #find-state")) { return; }
    if (elt.matches && elt.matches("[hx-trigger*='every']")) { return; }  // a poll swaps only itself
    if (!window.confirm("You have changes that are not saved (" + others.map(function (f) { return f.id || "a form"; }).join(", ") + "). Leave them?")) {
      event.preventDefault();
    }
  });
  window.addEventListener("beforeunload", function (event) {
    if (dirtyForms().length) { event.preventDefault(); event.returnValue = ""; }
  });
})();
