"""The dashboard in a real browser: an execution appears in the list, its DAG's tasks turn
COMPLETED live (from the event stream, without a reload), a task skipped by its `when`
condition is drawn apart from the others, a delayed execution shows when it starts, a fan-out
shows its instances folded under it, a sub-job's task links to its child execution and the
child's page links back to its parent, the Definitions page's Pause button pauses a definition
(whose new execution's first task shows `QUEUED · paused`) and its Resume button resumes it, and
a screenshot is saved.

Usage: browser_test.py BASE_URL SCREENSHOT_PATH
"""
import json
import shutil
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

base, shot = sys.argv[1], sys.argv[2]


def post(path, body=None):
    """POSTs `body` (any JSON, or nothing) to the API and returns its JSON answer."""
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"},
                                     method="POST")
    return json.load(urllib.request.urlopen(request))


def get(path):
    """GETs `path` from the API and returns its JSON answer."""
    return json.load(urllib.request.urlopen(base + path))


def wait(what, check, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def click(what, selector):
    """Clicks the element `selector` once it is there (the page redraws on every event, so a
    handle may go stale between finding and clicking it: then it finds it again)."""
    def attempt():
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
            return True
        except (NoSuchElementException, StaleElementReferenceException):
            return False
    wait(what, attempt)


def text(selector):
    """The text of the element `selector`, or '' while there is none. Read in one script call:
    the page redraws on every event, so an element handle may go stale before its text is read
    (and on moving to another execution's page, the old one shows until the new one is drawn:
    wait for the page's `title` first)."""
    return driver.execute_script("const n = document.querySelector(arguments[0]); return n ? n.innerText : ''",
                                 selector)


def title():
    """The heading of the page shown (`Execution <id>` on an execution's page)."""
    return text("main h2")


def status_line():
    """The text of an execution page's status line, or '' while none is shown."""
    return text("#execution-status")


profile = tempfile.mkdtemp(prefix="naxos-chromium-")
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900",
             f"--user-data-dir={profile}"]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(base + "/#/")
    wait("the executions table", lambda: driver.find_elements(By.ID, "executions"))

    execution = post("/api/v1/jobs/sample-2/execute", {"sleepMs": 700})["executionId"]

    row = wait("the execution in the list",
               lambda: driver.find_elements(By.CSS_SELECTOR, f'tr[data-execution="{execution}"] a'))
    row[0].click()
    driver.execute_script("window.__sameDocument = true")
    seen = set()

    def statuses():
        # One script call: the graph is redrawn on every event, so element handles go stale.
        current = driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('#dag [data-task]')]"
            ".map(n => [n.dataset.task, n.dataset.status]))")
        seen.update(current.values())
        return current

    wait("the task graph", lambda: len(statuses()) == 4)
    wait("every task COMPLETED", lambda: set(statuses().values()) == {"COMPLETED"})
    assert seen - {"COMPLETED"}, f"the tasks should be seen running before they complete: {seen}"
    assert driver.execute_script("return window.__sameDocument === true"), "the page was reloaded"
    header = status_line()
    assert "COMPLETED" in header, header

    # A branch: the side not taken is SKIPPED by its condition, shown as such.
    post("/api/v1/job-definitions", {"id": "browser-branch", "tasks": {
        "a": {"id": "a", "functionName": "echo"},
        "b": {"id": "b", "functionName": "echo", "when": "params.x > 1"},
        "c": {"id": "c", "functionName": "echo", "when": "params.x <= 1"},
        "join": {"id": "join", "functionName": "echo", "trigger": "noneFailed"}},
        "graph": {"b": ["a"], "c": ["a"], "join": ["b", "c"]}})
    branched = post("/api/v1/jobs/browser-branch/execute", {"x": 2})["executionId"]
    driver.get(base + f"/#/executions/{branched}")
    wait("the branch to finish", lambda: title() == f"Execution {branched}" and "COMPLETED" in status_line())
    skipped = wait("the task skipped by its condition", lambda: driver.execute_script(
        "const n = document.querySelector('#dag [data-task=\"c\"]');"
        "return n && n.dataset.skip === 'condition' ? n.textContent : null"))
    assert "condition false" in skipped, skipped
    row = text('tr[data-task-row="c"]')
    assert "SKIPPED (condition)" in row and "when params.x <= 1" in row, row
    join = text('tr[data-task-row="join"]')
    assert "trigger noneFailed" in join and "COMPLETED" in join, join

    # A delayed execution waits PENDING and says when it starts, in the list and on its page.
    later = post("/api/v1/jobs/sample-2/execute?delayMs=600000", {})
    driver.get(base + "/#/")
    listed = wait("the delayed execution's time in the list", lambda: driver.find_elements(
        By.CSS_SELECTOR, f'tr[data-execution="{later["executionId"]}"] [data-scheduled]'))
    assert listed[0].get_attribute("data-scheduled") == later["scheduledFor"], listed[0].get_attribute("data-scheduled")
    assert listed[0].text.startswith("starts "), listed[0].text
    driver.get(base + f"/#/executions/{later['executionId']}")
    header = wait("the delayed execution's page",
                  lambda: title() == f"Execution {later['executionId']}" and status_line())
    assert "PENDING" in header and "starts " in header, header
    post(f"/api/v1/jobs/{later['executionId']}/cancel")
    # A fan-out: its instances counted on its node and folded in one row under it.
    post("/api/v1/job-definitions", {"id": "browser-fanout", "tasks": {
        "each": {"id": "each", "functionName": "echo", "forEach": "params.items"}}})
    fanned = post("/api/v1/jobs/browser-fanout/execute", {"items": [1, 2, 3]})["executionId"]
    driver.get(base + f"/#/executions/{fanned}")
    wait("the fan-out to finish", lambda: title() == f"Execution {fanned}" and "COMPLETED" in status_line())
    node = wait("the fan-out's node", lambda: driver.execute_script(
        "const n = document.querySelector('#dag [data-task=\"each\"]'); return n ? n.textContent : null"))
    assert "3/3 done" in node, node
    assert not driver.find_elements(By.CSS_SELECTOR, '#dag [data-task="each[0]"]'), "instances are not graph nodes"
    folded = text('tr[data-instances-of="each"] summary')
    assert "3 instances" in folded, folded

    # A sub-job: the task's row links to its child execution, whose page links back.
    post("/api/v1/job-definitions", {"id": "browser-child", "tasks": {
        "pack": {"id": "pack", "functionName": "echo"},
        "nap": {"id": "nap", "functionName": "sleep"}},
        "graph": {"nap": ["pack"]}})
    post("/api/v1/job-definitions", {"id": "browser-parent", "tasks": {
        "prepare": {"id": "prepare", "functionName": "echo"},
        "ship": {"id": "ship", "subJob": {"definitionId": "browser-child", "params": "{'ms': params.ms}"}}},
        "graph": {"ship": ["prepare"]}})
    parent = post("/api/v1/jobs/browser-parent/execute", {"ms": 500})["executionId"]
    driver.get(base + f"/#/executions/{parent}")
    link = wait("the sub-job's link to its child", lambda: driver.execute_script(
        "const a = document.querySelector('tr[data-task-row=\"ship\"] a[data-child]');"
        "return a ? {child: a.dataset.child, href: a.getAttribute('href'), text: a.textContent} : null"))
    ship = next(t for t in get(f"/api/v1/jobs/{parent}/status")["tasks"] if t["taskId"] == "ship")
    child = ship["childExecutionId"]
    assert link == {"child": child, "href": f"#/executions/{child}", "text": "child browser-child"}, (link, ship)
    click("the link to the child", 'tr[data-task-row="ship"] a[data-child]')
    wait("the child's page", lambda: title() == f"Execution {child}")
    back = wait("the child's link to its parent", lambda: driver.execute_script(
        "const a = document.querySelector('#execution-status #parent-link');"
        "return a ? {href: a.getAttribute('href'), text: a.textContent} : null"))
    assert back == {"href": f"#/executions/{parent}", "text": parent}, (back, parent)
    header = wait("the child to finish", lambda: "COMPLETED" in status_line() and status_line())
    assert "browser-child" in header and f"sub-job of {parent} (task ship)" in header, header
    click("the link to the parent", "#parent-link")
    wait("the parent's page again", lambda: title() == f"Execution {parent}")
    wait("the parent to finish", lambda: "COMPLETED" in status_line())
    assert not driver.find_elements(By.ID, "parent-link"), "a root execution has no parent link"

    # Pause and resume a definition from the Definitions page; a blocked task says why it waits.
    post("/api/v1/job-definitions", {"id": "browser-pause", "tasks": {
        "first": {"id": "first", "functionName": "echo"},
        "then": {"id": "then", "functionName": "echo"}},
        "graph": {"then": ["first"]}})

    def listed_paused():
        return next(d for d in get("/api/v1/job-definitions") if d["id"] == "browser-pause")["paused"]

    def state_cell():
        return text('tr[data-definition="browser-pause"] td[data-state]')

    driver.get(base + "/#/definitions")
    wait("the definition's Pause button", lambda: "Pause" in state_cell() and "active" in state_cell())
    assert driver.find_element(By.CSS_SELECTOR, 'button[data-pause="browser-pause"]').get_attribute(
        "aria-label") == "Pause browser-pause"
    click("Pause", 'button[data-pause="browser-pause"]')
    wait("the listing to say paused", listed_paused)
    wait("the page to say paused, with a Resume button",
         lambda: "paused" in state_cell() and "Resume" in state_cell())
    held = post("/api/v1/jobs/browser-pause/execute", {})["executionId"]
    driver.get(base + f"/#/executions/{held}")
    node = wait("the blocked task's node", lambda: title() == f"Execution {held}" and driver.execute_script(
        "const n = document.querySelector('#dag [data-task=\"first\"][data-blocked=\"paused\"]');"
        "return n ? {text: n.textContent, label: n.getAttribute('aria-label')} : null"))
    assert "QUEUED · paused" in node["text"] and node["label"] == "first: QUEUED · paused", node
    row = text('tr[data-task-row="first"]')
    assert "QUEUED · paused" in row, row
    assert "PENDING" in status_line(), status_line()
    driver.get(base + "/#/definitions")
    click("Resume", 'button[data-pause="browser-pause"]')
    wait("the listing to say resumed", lambda: listed_paused() is False)
    wait("the page to say active, with a Pause button",
         lambda: "active" in state_cell() and "Pause" in state_cell())
    wait("the held execution to complete", lambda: get(f"/api/v1/jobs/{held}/status")["status"] == "COMPLETED")
    driver.get(base + f"/#/executions/{held}")
    wait("its page to show it completed", lambda: title() == f"Execution {held}" and "COMPLETED" in status_line())
    assert not driver.find_elements(By.CSS_SELECTOR, "#dag [data-blocked=\"paused\"]"), "no task blocked any more"

    driver.save_screenshot(shot)
    with open(shot, "rb") as f:
        size = len(f.read())
    assert size > 5000, f"screenshot is only {size} bytes"
    print(f"browser: dashboard followed {execution} live through {sorted(seen)}, showed {branched}'s "
          f"condition-skipped task apart, when {later['executionId']} starts, {fanned}'s instances folded, "
          f"the links between {parent} and its child {child}, and paused and resumed browser-pause "
          f"({held} held QUEUED · paused, then completed); "
          f"screenshot {shot} ({size} bytes)")
finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
