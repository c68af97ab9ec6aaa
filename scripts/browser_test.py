"""The dashboard in a real browser: an execution appears in the list, its DAG's tasks turn
COMPLETED live (from the event stream, without a reload), and a screenshot is saved.

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

    request = urllib.request.Request(base + "/api/v1/jobs/sample-2/execute", data=b'{"sleepMs": 700}',
                                     headers={"Content-Type": "application/json"}, method="POST")
    execution = json.load(urllib.request.urlopen(request))["executionId"]

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

    driver.save_screenshot(shot)
    with open(shot, "rb") as f:
        size = len(f.read())
    assert size > 5000, f"screenshot is only {size} bytes"
    print(f"browser: dashboard followed {execution} live through {sorted(seen)}; screenshot {shot} ({size} bytes)")
finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
