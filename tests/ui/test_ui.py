"""The web UI end to end: a real server, a real broker and processor, the real SDK, headless chromium."""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from conftest import XSS, login

pytestmark = pytest.mark.broker
WAIT = 30


def wait(driver, timeout: float = WAIT) -> WebDriverWait:
    return WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException])  # rows re-render


def log_run(client, experiment: str, name: str, steps: int, *, params=None, tags=None, end: bool = True):
    run = client.start_run(experiment=experiment, name=name, tags=tags or {})
    run.log_params(params or {})
    for s in range(steps):
        run.log_metrics({"loss": math.exp(-s / 300) + (4.0 if s == steps // 2 else 0.0), "auc": 1 - math.exp(-s / 500)},
                        step=s)
    if end:
        run.end()
    return run


def no_alert(driver) -> bool:
    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_pages_need_a_session(stack):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    for path in ("/", "/experiments/x", "/runs/x", "/compare", "/models", "/lineage", "/monitoring", "/audit"):
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(stack.base + path)
        e.value.close()
        assert e.value.code == 303 and e.value.headers["Location"].startswith("/login"), path
    with pytest.raises(urllib.error.HTTPError) as e:  # data only through the guarded API
        urllib.request.urlopen(stack.base + "/api/v1/me")
    e.value.close()
    assert e.value.code == 401


def test_runs_table_filter_sort_pages_and_compare(stack, browser):
    client = stack.client()
    try:
        for i in range(7):
            log_run(client, "tbl", f"r{i}", 20, params={"lr": [0.1, 0.01, 0.001][i % 3], "model": ["gbt", "rf"][i % 2]})
        client.wait_projected(timeout=60)
    finally:
        client.close()
    browser.get(stack.base + "/")
    browser.find_element(By.LINK_TEXT, "tbl").click()
    rows = "#runs-table tbody tr[data-run-id]"
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == 7)
    # the filter language with OR, in the search box
    box = browser.find_element(By.ID, "filter")
    box.send_keys("params.lr = 0.1 OR params.model = 'rf'")
    box.submit()
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == 5)  # r0 r1 r3 r5 r6
    # a bad filter says why, in the page's live region
    box.clear()
    box.send_keys("params.lr >")
    box.submit()
    wait(browser).until(lambda d: "filter" in d.find_element(By.ID, "status-line").text
                        and "error" in d.find_element(By.ID, "status-line").get_attribute("class"))
    box.clear()
    box.submit()
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == 7)
    # sort by a param column (a button in its header), then keyset pages of 25 -> not needed for 7: use the API's limit
    browser.find_element(By.CSS_SELECTOR, 'button.sort[data-field="name"]').click()  # DESC first
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, rows)[0].text.split("\n")[0].startswith("r6")
                        or "r6" in d.find_elements(By.CSS_SELECTOR, rows)[0].text)
    browser.find_element(By.CSS_SELECTOR, 'button.sort[data-field="name"]').click()  # then ASC
    wait(browser).until(lambda d: "r0" in d.find_elements(By.CSS_SELECTOR, rows)[0].text)
    # select two runs and compare them
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == 7)
    for tr in browser.find_elements(By.CSS_SELECTOR, rows)[:2]:
        tr.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    button = browser.find_element(By.ID, "compare-btn")
    assert button.is_enabled() and "(2)" in button.text
    button.click()
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#compare-table tr.diff[data-key='lr']")))
    assert browser.find_element(By.CSS_SELECTOR, "#compare-table tr.same[data-key='auc']")  # same history, same value
    charts = wait(browser).until(lambda d: [c for c in d.find_elements(By.CSS_SELECTOR, "figure.chart")
                                            if c.get_attribute("data-state") == "ready"] or None)
    assert {c.get_attribute("data-key") for c in browser.find_elements(By.CSS_SELECTOR, "figure.chart")} == {"loss", "auc"}
    assert int(charts[0].get_attribute("data-total")) == 40  # two runs x 20 points, overlaid
    assert browser.find_element(By.CSS_SELECTOR, "#explore svg polyline")  # parallel coordinates drawn


def test_run_chart_has_the_servers_buckets(stack, browser):
    client = stack.client()
    try:
        run = log_run(client, "charts", "long", 3000, params={"lr": 0.1})
        client.wait_projected(timeout=60)
    finally:
        client.close()
    browser.get(f"{stack.base}/runs/{run.id}")
    fig = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "figure.chart[data-key='loss']")))
    wait(browser).until(lambda d: fig.get_attribute("data-state") == "ready")
    api = stack.api(f"/api/v1/runs/{run.id}/metrics/loss?max_points=1000")
    assert int(fig.get_attribute("data-buckets")) == len(api["buckets"]) == 1000
    assert int(fig.get_attribute("data-points")) == 3000
    assert browser.find_element(By.CSS_SELECTOR, "figure.chart[data-key='loss'] canvas")
    assert "FINISHED" in browser.find_element(By.ID, "run-status").text
    assert browser.find_element(By.XPATH, "//table[@id='params']//td[text()='0.1']")


def test_a_running_runs_chart_grows_live(stack, browser):
    client = stack.client()
    try:
        run = client.start_run(experiment="live", name="growing")
        for s in range(10):
            run.log_metric("loss", 1.0 / (s + 1), step=s)
        client.wait_projected(timeout=60)
        stack.wait_stream_live()
        browser.get(f"{stack.base}/runs/{run.id}")
        fig = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "figure.chart[data-key='loss']")))
        wait(browser).until(lambda d: fig.get_attribute("data-points") == "10")
        # pushed by server-sent events (GET /api/v1/stream), not the polling fallback
        wait(browser).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "sse")
        for s in range(10, 60):
            run.log_metric("loss", 1.0 / (s + 1), step=s)
        client.flush()
        # the page is not reloaded: the stream (or, without one, the polling fallback) refetches the chart
        wait(browser, 60).until(lambda d: fig.get_attribute("data-points") == "60")
        assert fig.get_attribute("data-last-step") == "59"
        assert int(browser.find_element(By.ID, "run-app").get_attribute("data-events")) >= 1  # events arrived
        run.end()
        wait(browser, 60).until(lambda d: "FINISHED" in d.find_element(By.ID, "run-status").text)
    finally:
        client.close()


def test_approve_shows_only_to_an_approver(stack, driver):
    stack.cli("policy", "set", "--require-approval", "PROMOTE:production=approver")
    stack.cli("access", "grant", "bob", "approver")  # the processor's rule: bob may approve
    bob = stack.token("bob", "approver")  # the server's rule: bob's token carries the approve permission
    carol = stack.token("carol", "maintainer")
    client = stack.client("carol")
    try:
        run = log_run(client, "reg", "candidate", 5)
        client.wait_projected(timeout=60)
        mv = run.register_model("churn", semver="1.0.0")
        req = client.registry.promote("churn", mv.version, "production", comment=f"ship it {XSS}", wait=True, timeout=5)
        assert req.status == "PENDING"
    finally:
        client.close()
    row = f"#pending tr[data-request-id='{req.request_id}']"

    login(driver, f"{stack.base}/?token={carol}")  # the requester: sees the request, no buttons
    driver.get(f"{stack.base}/models/churn")
    assert driver.find_element(By.CSS_SELECTOR, row)
    assert not driver.find_elements(By.CSS_SELECTOR, "button.approve") and not driver.find_elements(By.CSS_SELECTOR, "button.reject")
    assert "approve" in driver.find_element(By.ID, "h-pending").find_element(By.XPATH, "..").text
    assert XSS in driver.find_element(By.CSS_SELECTOR, row).text and no_alert(driver)  # the comment, as text

    login(driver, f"{stack.base}/?token={bob}")
    driver.get(f"{stack.base}/models/churn")
    driver.find_element(By.CSS_SELECTOR, f"{row} input.comment").send_keys("looks good")
    driver.find_element(By.CSS_SELECTOR, f"{row} button.approve").click()
    # the approval goes to the log, the processor decides, the page reloads without the pending row
    wait(driver, 60).until(lambda d: not d.find_elements(By.CSS_SELECTOR, row)
                           and d.find_elements(By.CSS_SELECTOR, "#versions .badge.stage-production"))
    got = stack.api("/api/v1/requests?model=churn")
    assert [r["status"] for r in got["requests"] if r["request_id"] == req.request_id] == ["APPROVED"]


def test_follow_a_lineage_edge(stack, browser):
    import pandas as pd

    client = stack.client()
    try:
        with client.start_run(experiment="lin", name="trainer") as run:
            ds = run.log_dataset("loans", pd.DataFrame({"x": [1, 2, 3]}), role="train")
        client.wait_projected(timeout=60)
    finally:
        client.close()
    browser.get(f"{stack.base}/lineage?node=" + urllib.parse.quote(f"run:{run.id}"))
    node = wait(browser).until(EC.element_to_be_clickable((By.CSS_SELECTOR, f'#graph a.node[data-node="{ds.node}"]')))
    assert browser.find_element(By.CSS_SELECTOR, f'#graph a.node.root[data-node="run:{run.id}"]')
    node.click()
    wait(browser).until(lambda d: d.find_element(By.ID, "lineage-root").text == ds.node)
    # and back downstream, with the keyboard: focus the run's node and press Enter
    run_node = browser.find_element(By.CSS_SELECTOR, f'#graph a.node[data-node="run:{run.id}"]')
    browser.execute_script("arguments[0].focus()", run_node)
    run_node.send_keys("\n")
    wait(browser).until(lambda d: d.find_element(By.ID, "lineage-root").text == f"run:{run.id}")


def test_an_alert_appears_on_the_monitoring_page(stack, browser):
    browser.get(f"{stack.base}/monitoring")
    alert_id = f"fraud/prod/dataset_drift/{int(time.time())}"
    assert not browser.find_elements(By.CSS_SELECTOR, f'#alerts tr[data-alert-id="{alert_id}"]')
    client = stack.client("drift-processor")
    try:
        client.publish("AlertChanged", "monitor", "monitor:fraud/prod", alert_id=alert_id, model="fraud",
                       deployment="prod", rule="dataset_drift", state="RAISED", severity="warning", window=4,
                       value=0.6, threshold=0.5, message=f"fraud/prod: 60% of features drifted {XSS}")
        client.flush()
        row = wait(browser, 60).until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, f'#alerts tr[data-alert-id="{alert_id}"]')))
        assert "OPEN" in row.text and XSS in row.text
    finally:
        client.close()
    assert no_alert(browser)


def test_user_values_render_as_text(stack, browser):
    client = stack.client()
    try:
        # run names are restricted to letters, digits and ' _-./:' by the SDK's rules; tags and params are free text
        run = log_run(client, "xss", "payload", 3, params={"model": XSS}, tags={"note": XSS})
        client.wait_projected(timeout=60)
    finally:
        client.close()
    browser.get(f"{stack.base}/runs/{run.id}")
    cell = wait(browser).until(EC.presence_of_element_located((By.XPATH, "//table[@id='tags']//td[contains(., 'onerror')]")))
    assert cell.text == XSS and cell.is_displayed()
    assert browser.find_element(By.XPATH, "//table[@id='params']//td[contains(., 'onerror')]").text == XSS
    browser.get(f"{stack.base}/experiments/xss?cols=params.model|tags.note")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr[data-run-id]"))
    assert [c.text for c in browser.find_elements(By.XPATH, "//table[@id='runs-table']//td[contains(., 'onerror')]")] == [XSS, XSS]
    # the audit timeline, searched by the run's id; a row links to its raw event, read back from the log
    browser.get(f"{stack.base}/audit?q=" + urllib.parse.quote(run.id))
    tags_row = browser.find_element(By.XPATH, "//ol[@id='audit']/li[.//a[text()='RunStarted']]")
    tags_row.find_element(By.CSS_SELECTOR, "a.what").click()
    raw = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#raw-event[data-state='ready']")))
    assert "RunStarted" in raw.text and XSS in raw.text and no_alert(browser)
    for path in (f"/runs/{run.id}", "/experiments/xss?cols=params.model|tags.note", f"/compare?run={run.id}"):
        browser.get(stack.base + path)
        time.sleep(0.5)  # let the scripts render; nothing should ever become an element
        assert not browser.find_elements(By.CSS_SELECTOR, "img"), path
        assert no_alert(browser), path


def test_a_stored_artifact_downloads_from_the_run_page(stack, browser, tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"weights for the browser")
    (tmp_path / "ref.csv").write_text("a,b")
    client = stack.client()
    try:
        run = log_run(client, "artifacts-ui", "stored", 1, end=False)
        run.log_artifact(tmp_path / "model.pkl", "models/model.pkl")
        run.log_artifact(tmp_path / "ref.csv", store=False)
        run.end()
        client.wait_projected(timeout=60)
    finally:
        client.close()
    browser.get(f"{stack.base}/runs/{run.id}")
    link = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#artifacts a[download]")))
    assert link.text == "models/model.pkl"
    assert link.get_attribute("href").endswith(f"/api/v1/runs/{run.id}/artifacts/models/model.pkl")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#artifacts a[download]")) == 1  # ref.csv: a reference only
    body = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.text().then(t => done(r.status + ' ' + t)));", link.get_attribute("href"))
    assert body == "200 weights for the browser"  # with the session cookie, checked by the server
