// The web console's one script: a task's page follows the task to its end by swapping in
// its box (`GET /ui/tasks/{id}?wait_s=20`, a long poll) until the box says it has ended.
// Without it every page still works; the task's page is then reloaded by hand.
"use strict";
(function () {
  function follow(box) {
    if (!box || box.dataset.final === "true") {
      return;
    }
    fetch(box.dataset.follow, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (resp) {
        if (!resp.ok) {
          throw new Error("status " + resp.status);
        }
        return resp.text();
      })
      .then(function (html) {
        var holder = document.createElement("template");
        holder.innerHTML = html.trim();
        var fresh = holder.content.firstElementChild;
        if (fresh && fresh.id === "task") {
          box.replaceWith(fresh);
          box = fresh;
        }
        window.setTimeout(function () { follow(box); }, 250);
      })
      .catch(function () {
        window.setTimeout(function () { follow(box); }, 3000);
      });
  }
  document.addEventListener("DOMContentLoaded", function () {
    follow(document.getElementById("task"));
  });
})();
