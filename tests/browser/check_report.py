#!/usr/bin/env python3
"""Open a sluice HTML report in real headless Chromium and check it, like a person would.

Standard library only: it drives `chromedriver` over its W3C WebDriver HTTP API on
127.0.0.1. Checks:
  * every expected <section id=...> is rendered with a heading and a non-zero height;
  * the page contains no <script> element and the hostile sample text (if any) shows as text;
  * the browser console logged nothing at SEVERE level (errors, CSP violations);
  * the only network request is the report itself (file://): Network.requestWillBeSent
    events from Chromium's performance log.
It saves a full-window PNG screenshot for a person to look at.

usage: check_report.py REPORT.html SCREENSHOT.png SECTION_ID... [--expect-text TEXT]
exit 0 on success, 1 on a failed check, 77 when chromium/chromedriver are absent.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def find(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["value"]


def main(argv):
    expect_text = None
    if "--expect-text" in argv:
        i = argv.index("--expect-text")
        expect_text = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    report, shot, sections = os.path.abspath(argv[0]), argv[1], argv[2:]
    chromium = find("chromium", "chromium-browser", "google-chrome")
    driver = find("chromedriver")
    if not chromium or not driver:
        print("SKIP: chromium and chromedriver are not installed "
              "(apt-get install -y chromium chromium-driver)")
        return 77
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    profile = tempfile.mkdtemp(prefix="sluice-report-chromium-")
    proc = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    failures = []
    try:
        for _ in range(200):
            try:
                if call(base, "GET", "/status").get("ready"):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                "--window-size=1280,2400"]},
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        }}}
        sid = call(base, "POST", "/session", caps)["sessionId"]
        s = f"/session/{sid}"
        url = "file://" + report
        # Drain the logs of the start page (the new-tab page's own chrome:// loads), so
        # what is left is what the report did.
        call(base, "POST", s + "/se/log", {"type": "performance"})
        call(base, "POST", s + "/se/log", {"type": "browser"})
        call(base, "POST", s + "/url", {"url": url})

        def js(script):
            return call(base, "POST", s + "/execute/sync", {"script": script, "args": []})

        found = js("return Array.from(document.querySelectorAll('section')).map("
                   "x => [x.id, (x.querySelector('h2')||{}).textContent || '',"
                   " x.getBoundingClientRect().height])")
        got = {sid_: (h2, h) for sid_, h2, h in found}
        for want in sections:
            if want not in got:
                failures.append(f"section #{want} not rendered")
            elif not got[want][0] or got[want][1] <= 0:
                failures.append(f"section #{want} is empty (heading {got[want][0]!r}, height {got[want][1]})")
        n_svg = js("return document.querySelectorAll('svg').length")
        n_scripts = js("return document.scripts.length")
        if n_scripts:
            failures.append(f"{n_scripts} <script> element(s) in the page")
        if expect_text is not None:
            if not js("return document.body.innerText.includes(%s)" % json.dumps(expect_text)):
                failures.append(f"expected text {expect_text!r} not shown as text")
        title = js("return document.title")

        png = call(base, "GET", s + "/screenshot")
        with open(shot, "wb") as f:
            f.write(base64.b64decode(png))

        console = call(base, "POST", s + "/se/log", {"type": "browser"})
        severe = [e for e in console if e.get("level") == "SEVERE"]
        for e in severe:
            failures.append(f"console error: {e.get('message')}")
        perf = call(base, "POST", s + "/se/log", {"type": "performance"})
        requests = []
        for e in perf:
            m = json.loads(e["message"])["message"]
            # Only what the report's document asked for: the browser's own start page
            # (chrome://new-tab-page...) loads its resources in the same log.
            if m.get("method") == "Network.requestWillBeSent" and \
                    m["params"].get("documentURL") == url:
                requests.append(m["params"]["request"]["url"])
        others = [r for r in requests if r != url and not r.startswith(("data:", "about:"))]
        for r in others:
            failures.append(f"network request: {r}")
        call(base, "DELETE", s)
        print(f"title={title!r} sections={len(found)} svg={n_svg} console_entries={len(console)} "
              f"severe={len(severe)} requests={requests}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print(f"OK: report renders in Chromium; screenshot {shot}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
