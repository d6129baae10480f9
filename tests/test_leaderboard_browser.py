"""The leaderboard page in headless Chromium: clicking a header sorts the rows, typing in the
box filters them. The board is the hand-written sweep of tests/test_leaderboard.py:

    row  dataset  search     params  accuracy  tokens_per_problem
    1    arith    best_of_n  n=4     0.400     160.0
    2    arith    best_of_n  n=8     0.600     320.0
    3    arith    best_of_n  n=16    0.500     640.0
    4    arith    greedy             0.200      40.0
    5    math500  beam               1.000     200.0
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evals.leaderboard import build_leaderboard
from tests.test_leaderboard import _sweep

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("leaderboard")
    _sweep(root / "runs")
    build_leaderboard([root / "runs"], root / "board", n_bootstrap=50, audit=False)
    return root / "board" / "leaderboard.html"


@pytest.fixture
def board(browser: Any, page: Path) -> Iterator[Any]:
    """The page, freshly loaded (no sort, no filter), with nothing logged as an error."""
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(page.as_uri())
    yield browser
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def rows(driver: Any) -> list[int]:
    """The board's rows, top to bottom, by their row number."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, "table.board tbody tr")
    return [int(r.get_attribute("data-row")) for r in found]


def visible(driver: Any) -> list[int]:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, "table.board tbody tr")
    return [int(r.get_attribute("data-row")) for r in found if r.is_displayed()]


def click(driver: Any, column: str) -> str:
    """Click a column's header; its class after the click ("asc" or "desc")."""
    from selenium.webdriver.common.by import By

    header = driver.find_element(By.CSS_SELECTOR, f'table.board th[data-column="{column}"]')
    header.click()
    return header.get_attribute("class")


def test_the_page_lists_every_row_in_build_order(board: Any) -> None:
    assert rows(board) == [1, 2, 3, 4, 5] == visible(board)


def test_a_click_sorts_numbers_as_numbers_and_a_second_click_reverses(board: Any) -> None:
    assert click(board, "accuracy") == "asc"
    assert rows(board) == [4, 1, 3, 2, 5]  # 0.2, 0.4, 0.5, 0.6, 1.0
    assert click(board, "accuracy") == "desc"
    assert rows(board) == [5, 2, 3, 1, 4]
    # as text "40.0" would sort between "320.0" and "640.0"
    assert click(board, "tokens_per_problem") == "asc"
    assert rows(board) == [4, 1, 5, 2, 3]  # 40, 160, 200, 320, 640
    from selenium.webdriver.common.by import By

    marked = board.find_elements(By.CSS_SELECTOR, "table.board th.asc, table.board th.desc")
    assert [h.get_attribute("data-column") for h in marked] == ["tokens_per_problem"]


def test_text_sorts_alphabetically_ties_keep_their_order_and_blanks_stay_last(board: Any) -> None:
    click(board, "search")
    assert rows(board) == [5, 1, 2, 3, 4]  # beam, best_of_n x3 (in row order), greedy
    # n=16 < n=4 < n=8 as text; rows 4 and 5 have none, and keep the order the last sort gave
    click(board, "params")
    assert rows(board) == [3, 1, 2, 5, 4]
    click(board, "params")
    assert rows(board) == [2, 1, 3, 5, 4]  # reversed, the blanks still last


def test_the_filter_keeps_rows_holding_every_word(board: Any) -> None:
    from selenium.webdriver.common.by import By

    box = board.find_element(By.ID, "filter")
    box.send_keys("greedy")
    assert visible(board) == [4]
    box.clear()
    box.send_keys("BEST_OF_N  n=1")  # any case, any spacing; "n=1" matches n=16 only
    assert visible(board) == [3]
    box.clear()
    box.send_keys("arith")
    assert visible(board) == [1, 2, 3, 4]
    click(board, "accuracy")  # sorting keeps the filter
    assert visible(board) == [4, 1, 3, 2] and rows(board) == [4, 1, 3, 2, 5]
    box.clear()
    box.send_keys("no such row")
    assert visible(board) == []
    box.clear()
    box.send_keys(" ")
    assert visible(board) == [4, 1, 3, 2, 5]  # an empty filter shows every row
