"""The dashboard in a real browser: an execution appears in the list, its DAG's tasks turn
COMPLETED live (from the event stream, without a reload), a task skipped by its `when`
condition is drawn apart from the others, a delayed execution shows when it starts, a fan-out
shows its instances folded under it, and a
screenshot is saved.

Usage: browser_test.py BASE_URL SCREENSHOT_PATH
"""
import json
import shutil
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

base, shot = sys.argv[1], sys.argv[2]


def post(path, body=None):
    """POSTs `body` (any JSON, or nothing) to the API and returns its JSON answer."""
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"},
                                     method="POST")
    return json.load(urllib.request.urlopen(request))


def wait(what, check, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


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
    header = driver.find_element(By.ID, "execution-status").text
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
    wait("the branch to finish", lambda: "COMPLETED" in driver.find_element(By.ID, "execution-status").text)
    skipped = wait("the task skipped by its condition", lambda: driver.execute_script(
        "const n = document.querySelector('#dag [data-task=\"c\"]');"
        "return n && n.dataset.skip === 'condition' ? n.textContent : null"))
    assert "condition false" in skipped, skipped
    row = driver.find_element(By.CSS_SELECTOR, 'tr[data-task-row="c"]').text
    assert "SKIPPED (condition)" in row and "when params.x <= 1" in row, row
    join = driver.find_element(By.CSS_SELECTOR, 'tr[data-task-row="join"]').text
    assert "trigger noneFailed" in join and "COMPLETED" in join, join

    # A delayed execution waits PENDING and says when it starts, in the list and on its page.
    later = post("/api/v1/jobs/sample-2/execute?delayMs=600000", {})
    driver.get(base + "/#/")
    listed = wait("the delayed execution's time in the list", lambda: driver.find_elements(
        By.CSS_SELECTOR, f'tr[data-execution="{later["executionId"]}"] [data-scheduled]'))
    assert listed[0].get_attribute("data-scheduled") == later["scheduledFor"], listed[0].get_attribute("data-scheduled")
    assert listed[0].text.startswith("starts "), listed[0].text
    driver.get(base + f"/#/executions/{later['executionId']}")
    header = wait("the delayed execution's page", lambda: driver.find_element(By.ID, "execution-status").text)
    assert "PENDING" in header and "starts " in header, header
    post(f"/api/v1/jobs/{later['executionId']}/cancel")
    # A fan-out: its instances counted on its node and folded in one row under it.
    post("/api/v1/job-definitions", {"id": "browser-fanout", "tasks": {
        "each": {"id": "each", "functionName": "echo", "forEach": "params.items"}}})
    fanned = post("/api/v1/jobs/browser-fanout/execute", {"items": [1, 2, 3]})["executionId"]
    driver.get(base + f"/#/executions/{fanned}")
    wait("the fan-out to finish", lambda: "COMPLETED" in driver.find_element(By.ID, "execution-status").text)
    node = wait("the fan-out's node", lambda: driver.execute_script(
        "const n = document.querySelector('#dag [data-task=\"each\"]'); return n ? n.textContent : null"))
    assert "3/3 done" in node, node
    assert not driver.find_elements(By.CSS_SELECTOR, '#dag [data-task="each[0]"]'), "instances are not graph nodes"
    folded = driver.find_element(By.CSS_SELECTOR, 'tr[data-instances-of="each"] summary').text
    assert "3 instances" in folded, folded

    driver.save_screenshot(shot)
    with open(shot, "rb") as f:
        size = len(f.read())
    assert size > 5000, f"screenshot is only {size} bytes"
    print(f"browser: dashboard followed {execution} live through {sorted(seen)}, showed {branched}'s "
          f"condition-skipped task apart, when {later['executionId']} starts and {fanned}'s instances folded; "
          f"screenshot {shot} ({size} bytes)")
finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
