"""The status page (issue 19): `/` on metrics.address, loaded in a headless Chromium, shows
the services with live figures; after a service is killed and restarted the table says so.
A screenshot goes to build/status-page.png for the README."""
import html
import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import SRC, wait_for
from master_harness import master  # noqa: F401
from test_metrics import hub_master, http_get, mqtt

CHROMIUM = shutil.which("chromium")


def chromium(procs, tmp, url, *args):
    """Runs headless Chromium (its own profile) on url; returns its stdout."""
    out = open(os.path.join(tmp, "chromium.out"), "w+")
    p = procs.start([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                     f"--user-data-dir={os.path.join(tmp, 'profile')}",
                     "--virtual-time-budget=6000", "--window-size=1100,900", *args, url],
                    stdout=out, stderr=subprocess.DEVNULL)
    try:
        p.wait(90)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    out.seek(0)
    text = out.read()
    out.close()
    return text


def rows(dom, table):
    """The text cells of each body row of table #id."""
    body = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
            for r in re.findall(r"<tr>(.*?)</tr>", body)]


@pytest.mark.skipif(not CHROMIUM, reason="scripts/deps.sh installs chromium")
def test_page_shows_a_restart_and_the_hub(master, procs):
    m = hub_master(master)
    url = f"http://127.0.0.1:{m.metrics_port}/"
    status, ctype, page = http_get(url)
    assert status == 200 and ctype.startswith("text/html")
    assert len(page.encode()) < 30 * 1024
    assert "http" not in page.replace(url, ""), "no external assets"
    assert mqtt(m, "mosquitto_pub", "-q", "1", "-t", "x", "-m", "1").returncode == 0
    wait_for(lambda: "baetyl_hub_connections{" in http_get(url + "metrics")[2], 15,
             what="hub metrics reported")

    tmp = m.path("chromium")
    os.makedirs(tmp)
    dom = chromium(procs, tmp, url, "--dump-dom")
    svc = {r[0]: r for r in rows(dom, "services")}
    assert svc["sleepy"][2] == "running" and svc["sleepy"][3] == "0", svc
    assert svc["hub"][2] == "running", svc
    hub = rows(dom, "hub")
    assert hub and hub[0][0] == "hub", hub

    pid = m.running_pid("sleepy")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: m.running_pid("sleepy") not in (None, pid), 15, what="sleepy restarted")
    dom = chromium(procs, tmp, url, "--dump-dom")
    svc = {r[0]: r for r in rows(dom, "services")}
    assert svc["sleepy"][2] == "running", svc
    assert svc["sleepy"][3] == "1" and svc["sleepy"][4] == "137", svc

    shot = os.path.join(SRC, "build", "status-page.png")
    os.makedirs(os.path.dirname(shot), exist_ok=True)
    chromium(procs, tmp, url, f"--screenshot={shot}")
    assert os.path.getsize(shot) > 1000
