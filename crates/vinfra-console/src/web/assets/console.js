// The serial console page: xterm.js connected to /vms/{name}/console/ws. What the server
// sends is one JSON object per message: {"type":"output","text"} is written to the terminal,
// {"type":"status","input","message"} says whether typing works, {"type":"error","message"}
// a failed read or keystroke. Keystrokes go to the server as they are typed.
// The terminal's element carries data-state="open|closed|error" and data-input="true|false".
"use strict";
(function () {
  var el = document.getElementById("serial-console");
  var status = document.getElementById("serial-console-status");
  if (!el || typeof Terminal === "undefined") {
    if (el) {
      el.dataset.state = "error";
    }
    return;
  }
  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }
  var term = new Terminal({ cursorBlink: true, scrollback: 5000, convertEol: false });
  term.open(el);
  var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  var url = scheme + "//" + window.location.host + "/vms/" +
    encodeURIComponent(el.dataset.vm) + "/console/ws";
  var ws = new WebSocket(url);
  el.dataset.state = "closed";
  ws.onopen = function () {
    el.dataset.state = "open";
    say("Connected.");
    term.focus();
  };
  ws.onmessage = function (ev) {
    var m;
    try {
      m = JSON.parse(ev.data);
    } catch (e) {
      return;
    }
    if (m.type === "output") {
      term.write(m.text);
      if (el.dataset.state === "error") {
        el.dataset.state = "open";
      }
    } else if (m.type === "status") {
      el.dataset.input = m.input ? "true" : "false";
      el.dataset.state = "open";
      say(m.message || (m.input ? "Connected: typing goes to the VM's serial port." : "Read only."));
    } else if (m.type === "error") {
      el.dataset.state = "error";
      say(m.message);
      term.write("\r\n\x1b[31m[" + m.message + "]\x1b[0m\r\n");
    }
  };
  ws.onerror = function () {
    el.dataset.state = "error";
    say("The connection to the serial console failed.");
  };
  ws.onclose = function (ev) {
    if (el.dataset.state !== "error") {
      el.dataset.state = "closed";
    }
    say("Disconnected" + (ev.reason ? ": " + ev.reason : "") + ". Reload the page to reconnect.");
  };
  term.onData(function (data) {
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(data);
    }
  });
})();
