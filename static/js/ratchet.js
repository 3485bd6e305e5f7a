// Ratchet's only script besides htmx: copy buttons on JSON blocks. No inline scripts anywhere,
// so the pages work under a strict content security policy.
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
  document.addEventListener("DOMContentLoaded", function () { addCopyButtons(document); });
  document.addEventListener("htmx:afterSwap", function (event) { addCopyButtons(event.target); });
})();
