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
    if (old) { if (!old.isEqualNode(node)) old.replaceWith(node); return; }
    var list = document.getElementById("timeline"), end = document.getElementById("end");
    if (end && d.key !== "end") list.insertBefore(node, end); else list.appendChild(node);
  });
  // The stream starts with every part as it is now: a part the page already shows is
  // left alone, so that a button about to be clicked (or a focused one) is not replaced.
  function fill(id, html) {
    var box = document.getElementById(id), fresh = box.cloneNode(false);
    fresh.appendChild(parse(html));
    if (!fresh.isEqualNode(box)) box.replaceChildren.apply(box, Array.from(fresh.childNodes));
  }
  source.addEventListener("summary", function (event) { fill("summary", data(event).html); });
  source.addEventListener("charts", function (event) { fill("charts", data(event).html); });
  source.addEventListener("end", function () {
    source.close(); root.dataset.live = "ended"; live.textContent = "finished";
  });
  source.addEventListener("error", function () { if (root.dataset.live !== "ended") live.textContent = "reconnecting"; });
})();
