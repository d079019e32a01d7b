// Live refresh: while the box is ticked, the page's main part is fetched
// again every few seconds and swapped in. Without JavaScript the pages
// are the same, refreshed by reloading.
(function () {
  "use strict";
  var box = document.getElementById("live");
  var label = document.getElementById("live-label");
  if (!box || !window.fetch || !window.DOMParser) return;
  box.hidden = false;
  label.hidden = false;
  box.checked = localStorage.getItem("snappea-live") !== "off";
  box.addEventListener("change", function () {
    localStorage.setItem("snappea-live", box.checked ? "on" : "off");
  });
  function busy() {
    var a = document.activeElement;
    return a && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "BUTTON");
  }
  function refresh() {
    if (!box.checked || document.hidden || busy()) return;
    var url = new URL(location.href);
    url.searchParams.delete("notice");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } }).then(function (r) {
      if (!r.ok) return null;
      return r.text();
    }).then(function (html) {
      if (!html || busy()) return;
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.getElementById("main");
      var main = document.getElementById("main");
      if (fresh && main) main.innerHTML = fresh.innerHTML;
    }).catch(function () {});
  }
  setInterval(refresh, 5000);
})();
