// Shows every date in the viewer's own time zone. The page reads without it: each date is
// also written in UTC by the server.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  document.querySelectorAll("time[datetime]").forEach(function (node) {
    var at = new Date(node.getAttribute("datetime"));
    if (!isNaN(at.getTime())) {
      node.textContent = format.format(at);
    }
  });
});
