// The web console's one script, two small parts; without it every page still works (the
// pages are then reloaded by hand):
// - a task's page follows the task to its end by swapping in its box
//   (`GET /ui/tasks/{id}?wait_s=N`, a long poll; a second for a migration, whose bar moves);
// - the events page adds each task change it hears on `GET /ui/events/stream` (server-sent
//   events) to its table of tasks;
// - a VM's or host's page swaps in its graphs (`GET /ui/vms/{name}/usage`,
//   `/ui/hosts/{name}/usage`) every 10 s.
"use strict";
(function () {
  // Fetches `url`'s fragment and puts it in the place of `box` when it is the same element (the
  // same id). Resolves to the element now on the page (`box` itself when nothing was swapped),
  // or null when the session ended (the answer was the login page); rejects when the request
  // failed.
  function swap(box, url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (resp) {
        if (resp.redirected) {
          return null;
        }
        if (!resp.ok) {
          throw new Error("status " + resp.status);
        }
        return resp.text();
      })
      .then(function (html) {
        if (html === null) {
          return null;
        }
        var holder = document.createElement("template");
        holder.innerHTML = html.trim();
        var fresh = holder.content.firstElementChild;
        if (!fresh || fresh.id !== box.id) {
          return box;
        }
        box.replaceWith(fresh);
        return fresh;
      });
  }

  // A task's box, again and again until the task has ended.
  function follow(box) {
    if (!box || box.dataset.final === "true") {
      return;
    }
    swap(box, box.dataset.follow).then(
      function (now) {
        if (now === null) {
          // The session ended: reload, which shows the login page.
          window.location.reload();
        } else if (now !== box) {
          window.setTimeout(function () { follow(now); }, 250);
        }
      },
      function () {
        window.setTimeout(function () { follow(box); }, 3000);
      }
    );
  }

  function cell(row, text, href) {
    var td = document.createElement("td");
    if (href) {
      var a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    row.appendChild(td);
    return td;
  }

  function live(table) {
    if (!table || !window.EventSource) {
      return;
    }
    var status = document.getElementById("live-status");
    var body = table.tBodies[0];
    var source = new EventSource(table.dataset.stream);
    source.onopen = function () {
      if (status) { status.textContent = "Following the tasks live."; }
    };
    source.onerror = function () {
      if (status) { status.textContent = "Not connected: retrying (or reload the page)."; }
    };
    source.addEventListener("task", function (e) {
      var t = JSON.parse(e.data);
      var id = Number(t.id);
      var row = document.getElementById("task-" + id);
      if (!row) {
        row = document.createElement("tr");
        row.id = "task-" + id;
        body.insertBefore(row, body.firstChild);
      }
      row.textContent = "";
      cell(row, String(id), "/tasks/" + id);
      cell(row, t.kind);
      cell(row, t.target);
      var state = document.createElement("span");
      state.className = "state state-" + String(t.state).replace(/[^a-z_]/g, "");
      state.textContent = t.state;
      cell(row, "").appendChild(state);
      cell(row, t.progress);
      cell(row, t.message);
    });
  }

  // A VM's or host's graphs: their box again every 10 s (until the session ends).
  function refresh(box) {
    if (!box) {
      return;
    }
    window.setTimeout(function () {
      swap(box, box.dataset.refresh).then(
        function (now) {
          if (now !== null) {
            refresh(now);
          }
        },
        function () { refresh(box); }
      );
    }, 10000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    follow(document.getElementById("task"));
    live(document.getElementById("live-tasks"));
    refresh(document.getElementById("vm-usage"));
    refresh(document.getElementById("host-usage"));
  });
})();
