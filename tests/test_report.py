"""The HTML report in a real headless Chromium (Debian's ``chromium``): it renders, loads nothing
from the network, and injected markup in prompts executes nothing."""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser

import pytest

from probattr_monitor import ProbeSettings
from probattr_monitor.report import REPORT_FILE
from probattr_monitor.sweep import SweepConfig, run_sweep

from .callbacks.helpers import PROMPTS
from .run_if import chromium as chromium_path
from .run_if import run_if

INJECTED = ["<img src=x onerror=\"document.title='pwned'\">", "<script>document.title='pwned'</script> the cat"]
CHROMIUM = chromium_path()


@pytest.fixture(scope="module")
def report(plain_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    summary = run_sweep(SweepConfig(run_dir=str(plain_run), out=str(out), prompts=PROMPTS + INJECTED,
                                    settings=ProbeSettings(max_new_tokens=4, progress=False), progress=False))
    return out / REPORT_FILE, summary


def chromium(*args, timeout=120):
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


class Elements(HTMLParser):
    """Every element and attribute name of a document, as parsed (escaped text is not an element)."""

    def __init__(self):
        super().__init__()
        self.tags, self.attributes = set(), set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


def test_report_is_self_contained_and_escaped(report):
    path, summary = report
    text = path.read_text(encoding="utf-8")
    parsed = Elements()
    parsed.feed(text)
    assert not parsed.tags & {"script", "img", "link", "iframe", "object", "embed", "image", "use"}
    assert not parsed.attributes & {"src", "href", "xlink:href", "srcset", "action"}
    assert not any(name.startswith("on") for name in parsed.attributes), "no event handler"
    assert "url(" not in text and "@import" not in text
    assert "default-src 'none'" in text
    assert "&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;" in text
    assert f"Recommended: <b>{summary.recommended['checkpoint']}</b>" in text


@run_if(browser=True)
def test_report_renders_in_headless_chromium_and_executes_nothing(report, tmp_path):
    path, summary = report
    dumped = chromium("--virtual-time-budget=3000", "--dump-dom", path.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert "<title>probattr report:" in dom and "pwned" not in dom.split("</title>")[0]
    assert re.search(r"<svg[^>]*id=\"curve\"", dom) and "<polyline" in dom and 'id="recommended-marker"' in dom
    assert dom.count('class="heatmap"') == len(PROMPTS) + len(INJECTED)
    assert dom.count('class="cell') > 20 and dom.count("<figure class=\"scatter\">") == len(summary.rows)
    assert "&lt;img src=x onerror=" in dom and "&lt;script&gt;document.title=" in dom  # shown as text
    assert "<img" not in dom and "<script" not in dom  # no element was created from data
    screenshot = path.parent / "probattr_report.png"
    shot = chromium("--window-size=1280,2200", f"--screenshot={screenshot}", path.as_uri())
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000


def test_report_command_builds_from_callback_records(tmp_path, plain_run):
    """``probattr-monitor report`` on a run trained with the callback: no sweep needed."""
    import os
    import sys

    from probattr_monitor import ProbAttrCallback

    from .callbacks.helpers import make_trainer

    run = tmp_path / "run"
    callback = ProbAttrCallback(prompts=PROMPTS, responses=[" the mat", " in the tree"], max_overhead=None)
    make_trainer(run, [callback], max_steps=6, save_steps=2, evaluate=True).train()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run([sys.executable, "-m", "probattr_monitor", "report", str(run)], capture_output=True,
                               text=True, timeout=120, env=env)
    assert completed.returncode == 0, completed.stderr[-2000:]
    text = (run / REPORT_FILE).read_text(encoding="utf-8")
    assert "checkpoint-2" in text and "checkpoint-4" in text and "Recommended:" in text
    assert "whose guard set has not regressed with 95% confidence" in text, "the reason is printed"
    for key in ("log_p_response", "soft_noise", "drift_attribution"):
        assert f"id='stat-{key}'" in text, key
    assert "id='plateau'" in text and "H (nats)" in text and "AS 0" in text, "scatter plots have axes"
    bare = subprocess.run([sys.executable, "-m", "probattr_monitor", "report", str(plain_run)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert bare.returncode == 2 and "no probattr.json in the checkpoints" in bare.stderr


def test_the_report_draws_guard_retention_and_says_when_target_and_guard_disagree():
    from probattr_monitor.monitoring.decision import recommend
    from probattr_monitor.report import build_report
    from probattr_monitor.sweep import ROW_KEYS

    from .monitoring.test_decision import guard_rows

    rows = guard_rows([-1.0, -0.2, 0.0, -0.6, -0.9, -1.5], eval_losses=[2.0, 1.8, 1.6, 1.4, 1.2, 1.0])
    for row in rows:
        row.update(error=None, reused=False, seconds=0.0)
        for key in ROW_KEYS:
            row.setdefault(key, None)
    chosen = recommend(rows)
    text = build_report(rows, {}, chosen, "a forgetting run")
    assert "id='guard-retention'" in text and text.count("class='guard-regressed'") == 3
    assert text.count("class='guard-kept'") == 2 and "id='disagreement'" in text
    assert "the lowest eval loss is at step 600" in text
