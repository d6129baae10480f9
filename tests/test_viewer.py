"""The trace viewer: the page builder in Python, then the pages in real headless Chromium."""

from __future__ import annotations

import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from evals.rundir import TRACES, trace_filename
from evals.runner import Runner
from evals.viewer import trace_page, write_viewer
from evals.viewer.__main__ import main as viewer_main
from evals.viewer.page import STATUS_MEANING, view_data
from reasoning import Problem
from reasoning.tree import ROOT, NodeStatus, SearchTree
from reasoning.types import Chain, FinishReason
from search import Beam
from tests.fakes import ConstantVerifier, ScriptedGenerator

NASTY = "Check: 4 < 5 </script><b>bold</b> & done"  # must show as text, never as markup


def _chain(cid: str, *steps: str, parent: str | None = None, **kw: Any) -> Chain:
    scores = kw.pop("scores", tuple(0.1 * (i + 5) for i in range(len(steps))))
    return Chain(steps=steps, scores=scores, tokens=4 * len(steps), parent=parent, id=cid, **kw)


S1, S2 = "Let x be the number.", "So 2x = 8, x = 4."
JOIN = "Both threads agree: \\boxed{4}"


def _tree() -> SearchTree:
    """root -> a (selected), b (pruned), c (cut by budget); a -> a1 (forked), a2 (finished);
    a1 -> t1, t2 (expanded threads) -> j (joined, two parents: the answer's chain)."""
    tree = SearchTree()
    tree.add(_chain("a", S1), NodeStatus.SELECTED, iteration=0)
    tree.add(_chain("b", "Guess 7."), NodeStatus.PRUNED)
    tree.add(_chain("c", "Try x = 3."), NodeStatus.PRUNED, cut_by_budget=True)
    tree.add(_chain("a1", S1, S2, parent="a"), NodeStatus.FORKED)
    done = {"finished": True, "finish_reason": FinishReason.BOXED}
    tree.add(_chain("a2", S1, "Then x = 5, \\boxed{5}", parent="a", **done), NodeStatus.FINISHED)
    tree.add(_chain("t1", S1, S2, "Check: 2 * 4 = 8.", parent="a1", scores=(0.9, 0.9, math.nan)))
    tree.add(_chain("t2", S1, S2, NASTY, parent="a1"))
    tree.add(_chain("j", S1, S2, "Check: 2 * 4 = 8.", JOIN, **done), "joined", parents=["t1", "t2"])
    return tree


def correct_trace() -> dict[str, Any]:
    return {
        "id": "alg/7",
        "question": "Solve 2x = 8.",
        "metadata": {},
        "gold": "4",
        "prediction": "4",
        "correct": True,
        "selected": "j",
        "chains": [
            {"id": "j", "text": f"{S1}\n\n{S2}\n\n{JOIN}", "steps": 3, "scores": [0.9] * 3,
             "tokens": 16, "finish_reason": "boxed"},
            {"id": "a2", "text": f"{S1}\n\nThen x = 5, \\boxed{{5}}", "steps": 2,
             "scores": [0.5, 0.6], "tokens": 8, "finish_reason": "boxed"},
        ],
        "details": {
            "events": [
                {"event": "trim", "policy": "trimr", "sample": 1, "reason": "settled",
                 "at_token": 12, "tokens_saved": 88},
                {"event": "hyper", "interval": 2, "action": "fork", "forked": 2, "paths": 4},
            ]
        },
        "tree": _tree().to_json(),
        "ledger": {"generated_tokens": 40, "samples": 8, "wall_s": 0.5},
    }  # fmt: skip


def wrong_trace() -> dict[str, Any]:
    tree = SearchTree()
    done = {"finished": True, "finish_reason": FinishReason.EOS}
    for i, answer in enumerate(["5", "5", "4"]):
        tree.add(_chain(f"s{i}", f"It is \\boxed{{{answer}}}", **done), NodeStatus.FINISHED)
    tree.mark_selected("s0")
    return {
        "id": "2",
        "question": "What is 2 + 2?",
        "gold": "4",
        "prediction": "5",
        "correct": False,
        "selected": "s0",
        "chains": [],
        "details": {"events": []},
        "tree": tree.to_json(),
    }


def failed_trace() -> dict[str, Any]:
    return {"id": "10", "question": "?", "gold": "1", "prediction": None, "correct": None,
            "error": "engine died", "error_stage": "search"}  # fmt: skip


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / TRACES).mkdir(parents=True)
    for trace in (correct_trace(), wrong_trace(), failed_trace()):
        (run / TRACES / trace_filename(trace["id"])).write_text(json.dumps(trace, indent=1))
    (run / TRACES / "torn.json").write_text('{"id": "torn", "question": ')
    return run


def _embedded(page: str) -> dict[str, Any]:
    (text,) = re.findall(r'<script type="application/json" id="trace-data">(.*?)</script>', page)
    return json.loads(text)


# --- the page builder ---------------------------------------------------------------------------


def test_every_node_gets_a_position_and_children_sit_below_their_parents() -> None:
    trace = correct_trace()
    data = view_data(trace)
    nodes = {n["id"]: n for n in data["nodes"]}
    assert set(nodes) == {n["id"] for n in trace["tree"]["nodes"]} and len(nodes) == 9
    spots = {(n["x"], n["y"]) for n in nodes.values()}
    assert len(spots) == 9  # no two nodes on one spot
    for n in nodes.values():
        assert 0 < n["x"] <= data["width"] and 0 < n["y"] <= data["height"]
        for p in n["parents"]:
            assert nodes[p]["y"] < n["y"]
    assert nodes["j"]["parents"] == ["t1", "t2"]  # a join keeps both parents, first one first
    assert nodes[ROOT]["parents"] == [] and nodes[ROOT]["layer"] == 0
    assert [nodes[i]["layer"] for i in ("a", "a1", "t1", "j")] == [1, 2, 3, 4]
    # layers are rows: one y per layer, and the three children of the root side by side
    assert len({nodes[i]["y"] for i in ("a", "b", "c")}) == 1
    assert len({nodes[i]["x"] for i in ("a", "b", "c")}) == 3


def test_the_page_embeds_the_data_and_its_assets_and_needs_no_network() -> None:
    trace = correct_trace()
    page = trace_page(trace)
    data = _embedded(page)  # parses: NaN became a string, and the nasty step did not close it
    assert data == json.loads(json.dumps(view_data(trace)))
    assert data["nodes"][[n["id"] for n in data["nodes"]].index("t1")]["data"]["scores"][2] == (
        "nan"
    )
    assert any(n["data"].get("step") == NASTY for n in data["nodes"])
    static = resources.files("evals.viewer") / "static"
    assert (static / "viewer.js").read_text() in page
    assert (static / "viewer.css").read_text() in page
    assert page.count("</script>") == 2 and "<b>bold</b>" not in page
    assert not re.search(r"https?:|//cdn|<script[^>]*\bsrc=|<link\b|@import", page)
    assert '<output id="prediction">4</output>' in page and '<output id="gold">4</output>' in page
    assert "tokens_saved" in page and "1 trim, 1 hyper" in page  # the events are listed


def test_the_legend_and_the_styles_cover_every_status() -> None:
    css = (resources.files("evals.viewer") / "static" / "viewer.css").read_text()
    page = trace_page(correct_trace())
    for status in NodeStatus:
        assert status in STATUS_MEANING
        assert f".st-{status.value} {{" in css
        assert f'class="shape st-{status.value}"' in page


def test_write_viewer_writes_an_index_and_a_page_per_problem(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    index = write_viewer(run)
    assert index == run / "viewer" / "index.html"
    html = index.read_text()
    hrefs = re.findall(r'<a href="(problems/[^"]+)">([^<]+)</a>', html)
    assert [name for _, name in hrefs] == ["2", "10", "alg/7"]  # natural order of the ids
    for href, _ in hrefs:
        assert (index.parent / href).is_file()
    assert len(list((index.parent / "problems").glob("*.html"))) == 3
    assert "1 of 2 graded problems correct; 3 traces" in html
    assert "torn.json" in html and "JSONDecodeError" in html  # listed, not hidden
    assert "✓ correct" in html and "✗ incorrect" in html and ">error<" in html
    other = write_viewer(run, tmp_path / "elsewhere")
    assert other == tmp_path / "elsewhere" / "index.html" and other.is_file()


def test_the_viewer_reads_traces_the_runner_wrote(tmp_path: Path) -> None:
    import asyncio

    gen = ScriptedGenerator(steps=["Add 2 and 2.", "It is 4. \\boxed{4}", "Think more."])
    problems = [Problem("p/1", "What is 2 + 2?", "4"), Problem("q", "What is 1 + 3?", "4")]
    runner = Runner(gen, Beam(n=4, width=2, max_steps=3), tmp_path, progress=False,
                    verifier=ConstantVerifier(lambda t: 0.2 + len(t) % 7 / 10))  # fmt: skip
    asyncio.run(runner.run(problems))
    write_viewer(tmp_path)
    for problem in problems:
        name = trace_filename(problem.id)
        trace = json.loads((tmp_path / TRACES / name).read_text())
        page = (tmp_path / "viewer" / "problems" / name.replace(".json", ".html")).read_text()
        data = _embedded(page)
        assert len(data["nodes"]) == len(trace["tree"]["nodes"]) > 4
        assert data["selected"] == trace["selected"] is not None


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path)
    assert viewer_main([str(run), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "index.html")
    assert (tmp_path / "out" / "problems" / "2.html").is_file()
    assert viewer_main([str(tmp_path / "nothing")]) == 2
    assert "no traces/" in capsys.readouterr().err
    with pytest.raises(SystemExit) as help_exit:
        viewer_main(["--help"])
    assert help_exit.value.code == 0 and "RUN_DIR" in capsys.readouterr().out


# --- in headless Chromium -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_viewer(_run_dir(tmp_path_factory.mktemp("viewer"))).parent


def _open(driver: Any, path: Path, fragment: str = "") -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.as_uri() + fragment)


def _severe(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _page_of(site: Path, problem_id: str) -> Path:
    return site / "problems" / trace_filename(problem_id).replace(".json", ".html")


def _click(driver: Any, node_id: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f'svg#tree g.node[data-id="{node_id}"]').click()


def _steps(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#chain-steps pre.step")]


@pytest.mark.browser
def test_the_page_loads_cleanly_and_draws_every_node(browser: Any, site: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, _page_of(site, "alg/7"))
    nodes = browser.find_elements(By.CSS_SELECTOR, "svg#tree g.node")
    assert len(nodes) == 9
    assert _severe(browser) == []
    statuses = [n.get_attribute("class").split()[1] for n in nodes]
    assert statuses.count("st-pruned") == 2 and statuses.count("st-joined") == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg#tree path.edge")) == 9
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg#tree path.edge.extra")) == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg#tree rect.shape")) == 2  # finished
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg#tree .shape.budget")) == 1
    assert browser.find_element(By.CSS_SELECTOR, "svg#tree circle.ring")  # the answer's chain
    answer = browser.find_element(By.CSS_SELECTOR, 'g.node[data-id="j"]')
    assert answer.find_element(By.CSS_SELECTOR, "circle.ring")


@pytest.mark.browser
def test_clicking_a_node_shows_its_chain(browser: Any, site: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, _page_of(site, "alg/7"))
    panel = browser.find_element(By.ID, "panel")
    assert S2 not in panel.text
    _click(browser, "a1")
    assert _steps(browser) == [S1, S2]
    assert "Node a1" in panel.text and "forked" in panel.text
    _click(browser, "t2")
    assert _steps(browser) == [S1, S2, NASTY]  # shown as text, not markup
    assert panel.find_elements(By.TAG_NAME, "b") == []
    _click(browser, "j")  # the join: both parents listed, the chain through the first
    parents = panel.find_elements(By.CSS_SELECTOR, ".join button.goto-node")
    assert [b.text for b in parents] == ["t1", "t2"]
    assert _steps(browser) == [S1, S2, "Check: 2 * 4 = 8.", JOIN]
    assert browser.find_element(By.ID, "chain-text").text.endswith(JOIN)
    parents[1].click()  # jump to the second parent from the panel
    assert _steps(browser) == [S1, S2, NASTY]
    active = browser.find_elements(By.CSS_SELECTOR, "svg#tree g.node.active")
    assert [g.get_attribute("data-id") for g in active] == ["t2"]
    assert _severe(browser) == []


@pytest.mark.browser
def test_a_link_to_a_node_opens_its_chain(browser: Any, site: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, _page_of(site, "alg/7"), "#node=a2")
    assert "Node a2" in browser.find_element(By.ID, "panel").text
    assert browser.find_element(By.ID, "chain-text").text.endswith("\\boxed{5}")
    assert _severe(browser) == []


@pytest.mark.browser
def test_the_selected_and_the_gold_answer_side_by_side(browser: Any, site: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, _page_of(site, "2"))
    prediction = browser.find_element(By.ID, "prediction")
    gold = browser.find_element(By.ID, "gold")
    assert (prediction.text, gold.text) == ("5", "4")
    assert prediction.location["x"] < gold.location["x"]
    assert abs(prediction.location["y"] - gold.location["y"]) < 5
    assert "incorrect" in browser.find_element(By.ID, "answers").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg#tree g.node")) == 4
    assert _severe(browser) == []


@pytest.mark.browser
def test_the_index_links_every_problem_and_a_failed_one_still_opens(
    browser: Any, site: Path
) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, site / "index.html")
    links = browser.find_elements(By.CSS_SELECTOR, "#problems a")
    assert [a.text for a in links] == ["2", "10", "alg/7"]
    assert _severe(browser) == []
    links[2].click()
    assert browser.find_element(By.ID, "problem-id").text == "alg/7"
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg#tree g.node")) == 9
    _open(browser, _page_of(site, "10"))
    assert "engine died" in browser.find_element(By.ID, "no-tree").text
    assert browser.find_elements(By.CSS_SELECTOR, "g.node") == []
    assert _severe(browser) == []
