// Live updates of a deployment page: the server sends what changed in the journal
// (server-sent events); each part is put in place by its id. No framework.
(function () {
  "use strict";
  var root = document.getElementById("live-root");
  if (!root || !window.EventSource || root.dataset.live === "ended") return;
  var live = document.getElementById("live");
  var source = new EventSource(root.dataset.events);
  function parse(html) {
    var box = document.createElement("template");
    box.innerHTML = html; // rendered and escaped by the server
    return box.content;
  }
  function data(event) { return JSON.parse(event.data); }
  source.addEventListener("open", function () { root.dataset.live = "live"; live.textContent = "live"; });
  source.addEventListener("entry", function (event) {
    var d = data(event), node = parse(d.html).firstElementChild, old = document.getElementById(d.key);
    if (old) { old.replaceWith(node); return; }
    var list = document.getElementById("timeline"), end = document.getElementById("end");
    if (end && d.key !== "end") list.insertBefore(node, end); else list.appendChild(node);
  });
  source.addEventListener("summary", function (event) {
    document.getElementById("summary").replaceChildren(parse(data(event).html));
  });
  source.addEventListener("charts", function (event) {
    document.getElementById("charts").replaceChildren(parse(data(event).html));
  });
  source.addEventListener("end", function () {
    source.close(); root.dataset.live = "ended"; live.textContent = "finished";
  });
  source.addEventListener("error", function () { if (root.dataset.live !== "ended") live.textContent = "reconnecting"; });
})();
