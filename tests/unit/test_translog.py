"""Reading purchase logs as real systems write them: formats, column specs, errors, merging."""

from __future__ import annotations

import string
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.translog import (
    WHITESPACE,
    TransactionFileError,
    TransactionLog,
    cohort_days,
    read_transactions,
)

# The same small log in every format: c1 buys twice, c2 once (a zero amount), c10 once.
EXPECTED = pd.DataFrame(
    {
        "customer_id": pd.Series(["c1", "c1", "c10", "c2"], dtype="str"),
        "date": pd.to_datetime(["2024-01-05", "2024-02-01", "2024-01-07", "2024-01-06"]).astype(
            "datetime64[ns]"
        ),
        "amount": [12.5, 3.0, 7.25, 0.0],
    }
)
ROWS = [("c1", "2024-01-05", "12.5"), ("c2", "2024-01-06", "0"), ("c10", "2024-01-07", "7.25")]
ROWS.append(("c1", "2024-02-01", "3"))


def _lines(rows: Sequence[Sequence[str]], sep: str = ",") -> str:
    return "".join(sep.join(row) + "\n" for row in rows)


def _write(tmp_path: Path, content: str | bytes, name: str = "sales.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))  # no newline translation
    else:
        path.write_bytes(content)
    return path


def _read(tmp_path: Path, content: str | bytes, **kwargs: object) -> TransactionLog:
    return read_transactions(_write(tmp_path, content), **kwargs)  # type: ignore[arg-type]


FORMATS = {
    "comma, header": ("customer_id,date,amount\n" + _lines(ROWS), ",", True),
    "comma, no header": (_lines(ROWS), ",", False),
    "semicolon": ("customer;date;amount\n" + _lines(ROWS, ";"), ";", True),
    "tab, no header": (_lines(ROWS, "\t"), "\t", False),
    "tab, spaces in a field": (
        _lines([(c, d + " 10:30:00", a) for c, d, a in ROWS], "\t"),
        "\t",
        False,
    ),
    "whitespace": ("  id   day \t value\n" + _lines(ROWS, " \t  "), WHITESPACE, True),
    "CRLF": ("customer,date,amount\r\n" + _lines(ROWS).replace("\n", "\r\n"), ",", True),
    "BOM": ("\ufeffcustomer,date,amount\n" + _lines(ROWS), ",", True),
    "BOM, no header": ("\ufeff" + _lines(ROWS), ",", False),
    "YYYYMMDD": (_lines([(c, d.replace("-", ""), a) for c, d, a in ROWS]), ",", False),
    "ISO with time": (
        "c1,2024-01-05T23:59:59Z,12.5\nc2,2024-01-06 08:00,0\n"
        "c10,2024-01-07T01:02:03.123+02:00,7.25\nc1,2024-02-01 00:00:00,3\n",
        ",",
        False,
    ),
    "extra columns": (
        "order,customer,region,date,amount,note\n"
        + _lines([(str(i), c, "north", d, a, "x") for i, (c, d, a) in enumerate(ROWS)]),
        ",",
        True,
    ),
    "ragged extra fields": (
        "customer,date,amount\n" + _lines([(*row, *["x"] * i) for i, row in enumerate(ROWS)]),
        ",",
        True,
    ),
    "extra columns, no header": (_lines([(*row, "x", "y") for row in ROWS]), ",", False),
    "quoted fields": (
        '"customer","date","amount"\n' + _lines([(f'"{c}"', d, f'"{a}"') for c, d, a in ROWS]),
        ",",
        True,
    ),
    "header name variants": ("Customer ID,Order-Date,SALES\n" + _lines(ROWS), ",", True),
    "decimal comma": (_lines([(c, d, a.replace(".", ",")) for c, d, a in ROWS], ";"), ";", False),
    "blank lines": (
        "\n\ncustomer,date,amount\n\n" + _lines(ROWS[:2]) + "   \n,,\n" + _lines(ROWS[2:]) + "\n\n",
        ",",
        True,
    ),
    "no final newline": (_lines(ROWS).rstrip("\n"), ",", False),
}


@pytest.mark.parametrize("name", FORMATS)
def test_every_supported_format_gives_the_same_frame(tmp_path: Path, name: str) -> None:
    content, delimiter, has_header = FORMATS[name]
    log = _read(tmp_path, content)
    pd.testing.assert_frame_equal(log.frame, EXPECTED)
    assert (log.delimiter, log.has_header) == (delimiter, has_header)
    assert (log.rows_read, log.merged_rows, log.skipped) == (4, 0, [])
    assert log.source == tmp_path / "sales.csv"


def test_quoted_fields_may_hold_delimiters_quotes_and_line_breaks(tmp_path: Path) -> None:
    content = (
        'customer,date,amount\n"Smith, J.",2024-01-05,1\n"say ""hi""",2024-01-05,2\n'
        '"two\nlines",2024-01-05,3\nx,2024-01-05,oops\n'
    )
    with pytest.raises(TransactionFileError, match=r"sales\.csv:6: amount 'oops'"):
        _read(tmp_path, content)
    log = _read(tmp_path, content, on_error="skip")
    assert log.frame["customer_id"].tolist() == ["Smith, J.", 'say "hi"', "two\nlines"]
    assert log.skipped == [(6, "amount 'oops' is not a number")]


def test_customer_ids_stay_strings(tmp_path: Path) -> None:
    log = _read(
        tmp_path, "NA,2024-01-01,1\nnull,2024-01-01,1\n007,2024-01-01,1\n 7 ,2024-01-01,1\n"
    )
    assert log.frame["customer_id"].tolist() == ["007", "7", "NA", "null"]
    assert pd.api.types.is_string_dtype(log.frame["customer_id"])


# --- the columns spec ---------------------------------------------------------------------------


def test_columns_by_position_without_header(tmp_path: Path) -> None:
    content = _lines([(a, "x", c, d) for c, d, a in ROWS])
    log = _read(tmp_path, content, columns="customer=3, date=4, amount=1")
    pd.testing.assert_frame_equal(log.frame, EXPECTED)
    assert not log.has_header


def test_columns_by_position_skips_a_header(tmp_path: Path) -> None:
    content = "a,b,c,d\n" + _lines([(a, "x", c, d) for c, d, a in ROWS])
    log = _read(tmp_path, content, columns="customer=3,date=4,amount=1")
    pd.testing.assert_frame_equal(log.frame, EXPECTED)
    assert log.has_header


def test_columns_by_name(tmp_path: Path) -> None:
    content = "sales,cust_id,id,order_date\n" + _lines([(a, c, "o1", d) for c, d, a in ROWS])
    log = _read(tmp_path, content, columns="customer=cust_id,date=ORDER_DATE,amount=1")
    pd.testing.assert_frame_equal(log.frame, EXPECTED)
    assert log.has_header


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ("customer=1,date=2", "missing amount"),
        ("customer=1,date=2,amount=3,store=4", "unknown key 'store'"),
        ("customer=1,date=2,amount=0", "positions start at 1"),
        ("customer=1,date=2,amount=-3", "positions start at 1"),
        ("customer=1,date=2,amount", "is not KEY=COLUMN"),
        ("customer=1,date=2,date=3", "'date' is given twice"),
        ("customer=1,date=2,amount=5", "amount is column 5, but the first row has only 3 fields"),
        (
            "customer=1,date=2,amount=2",
            r"same column \(customer = column 1, date = column 2, amount",
        ),
        ("customer=cust,date=date,amount=sales", "customer column 'cust' is not in the header"),
    ],
)
def test_bad_columns_spec(tmp_path: Path, columns: str, message: str) -> None:
    with pytest.raises(TransactionFileError, match=message):
        _read(tmp_path, "customer,date,amount\n" + _lines(ROWS), columns=columns)


def test_unknown_name_lists_the_header(tmp_path: Path) -> None:
    with pytest.raises(TransactionFileError) as info:
        _read(tmp_path, "client,day,price\n" + _lines(ROWS), columns="customer=c,date=d,amount=a")
    assert "header names: 'client', 'day', 'price'" in str(info.value)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("customer,day,total,value", "ambiguous amount column: 'total', 'value'"),
        ("who,date,amount", "no customer column"),
    ],
)
def test_default_names_must_match_once(tmp_path: Path, header: str, message: str) -> None:
    with pytest.raises(TransactionFileError, match=message) as info:
        _read(tmp_path, header + "\n" + _lines(ROWS))
    assert "header names:" in str(info.value)
    assert "columns=" in str(info.value)


# --- malformed rows -----------------------------------------------------------------------------

BAD = (
    "customer,date,amount\n"  # 1
    "c1,2024-01-05,12.5\n"  # 2
    "\n"  # 3
    "c2,2024-01-06,abc\n"  # 4
    ",2024-01-06,1\n"  # 5
    "c3,2024-13-01,1\n"  # 6
    "\r\n"  # 7
    "c4,,1\n"  # 8
    "c5,05/01/2024,1\n"  # 9
    "c6,2024-01-06,\n"  # 10
    "c7,2024-01-06,-0.01\n"  # 11
    "c8,2024-01-06,nan\n"  # 12
    "c9,2024-01-06,inf\n"  # 13
    "c10,0001-01-01,1\n"  # 14
    "c11\n"  # 15
    "c12,2024-01-06,0\n"  # 16
)
BAD_PROBLEMS = [
    (4, "amount 'abc' is not a number"),
    (5, "customer id is empty"),
    (6, "date '2024-13-01' is not a date (YYYY-MM-DD or YYYYMMDD, years 1678-2261)"),
    (8, "date is empty"),
    (9, "date '05/01/2024' is not a date (YYYY-MM-DD or YYYYMMDD, years 1678-2261)"),
    (10, "amount is empty"),
    (11, "amount '-0.01' is negative"),
    (12, "amount 'nan' is not a finite number"),
    (13, "amount 'inf' is not a finite number"),
    (14, "date '0001-01-01' is not a date (YYYY-MM-DD or YYYYMMDD, years 1678-2261)"),
    (15, "date is empty"),
]


def test_malformed_rows_raise_with_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TransactionFileError) as info:
        _read(tmp_path, BAD)
    message = str(info.value)
    path = tmp_path / "sales.csv"
    assert message.startswith(f"{path}: 11 malformed rows, the first 10:\n")
    for line, problem in BAD_PROBLEMS[:10]:
        assert f"  {path}:{line}: {problem}\n" in message
    assert f"{path}:15:" not in message
    assert isinstance(info.value, ValueError)


def test_on_error_skip_drops_and_reports_malformed_rows(tmp_path: Path) -> None:
    log = _read(tmp_path, BAD, on_error="skip")
    assert log.skipped == BAD_PROBLEMS
    assert log.rows_read == 13
    assert log.frame["customer_id"].tolist() == ["c1", "c12"]
    assert log.frame["amount"].tolist() == [12.5, 0.0]


def test_line_numbers_count_leading_blank_lines_and_crlf(tmp_path: Path) -> None:
    content = "\r\n  \r\ncustomer;date;amount\r\n\r\nc1;2024-01-01;1\r\nc2;2024-01-01;x\r\n"
    with pytest.raises(TransactionFileError, match=r"sales\.csv:6: amount 'x' is not a number"):
        _read(tmp_path, content)


@pytest.mark.parametrize("columns", [None, "customer=1,date=2,amount=3"])
def test_a_bad_first_row_is_data_not_a_header(tmp_path: Path, columns: str | None) -> None:
    content = "c0,2024-01-05,abc\n" + _lines(ROWS)
    with pytest.raises(TransactionFileError, match=r"sales\.csv:1: amount 'abc' is not a number"):
        _read(tmp_path, content, columns=columns)
    log = _read(tmp_path, content, columns=columns, on_error="skip")
    assert not log.has_header
    assert log.skipped == [(1, "amount 'abc' is not a number")]
    pd.testing.assert_frame_equal(log.frame, EXPECTED)


def test_on_error_must_be_raise_or_skip(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_error"):
        _read(tmp_path, _lines(ROWS), on_error="ignore")


def test_a_single_bad_line_is_named_exactly(tmp_path: Path) -> None:
    rows = [("c", "2024-01-01", "1")] * 15 + [("c", "2024-01-02", "abc")]
    path = _write(tmp_path, "customer,date,amount\n" + _lines(rows))
    with pytest.raises(TransactionFileError) as info:
        read_transactions(path)
    assert f"{path}:17: amount 'abc' is not a number" in str(info.value)
    assert "1 malformed row:" in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file has no rows"),
        (b"\n \r\n\n", "the file has no rows"),
        (b"customer,date,amount\n\n", "header but no data rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        ("customer,date,amount\n".encode("utf-16"), "UTF-16"),
        (b"c1,2024-01-01,1\nc\xe9,2024-01-01,1\n", r"sales\.csv:2: not UTF-8 text \(byte 0xe9\)"),
        (b"one field\nper line\n", "cannot find the field delimiter"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(TransactionFileError, match=message):
        _read(tmp_path, content)


def test_no_valid_rows_in_skip_mode(tmp_path: Path) -> None:
    with pytest.raises(TransactionFileError, match=r"no valid rows \(2 malformed, e.g. line 1"):
        _read(
            tmp_path,
            "c1,2024-01-01,-1\nc2,2024-01-01,-2\n",
            columns="customer=1,date=2,amount=3",
            on_error="skip",
        )


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TransactionFileError, match="no such file"):
        read_transactions(tmp_path / "absent.csv")
    with pytest.raises(TransactionFileError, match="cannot read"):
        read_transactions(tmp_path)


def test_many_rows_with_a_multiline_field_and_bad_rows(tmp_path: Path) -> None:
    n = 100_000
    days = (np.datetime64("2024-01-01") + np.arange(n) % 365).astype(str)
    amounts = np.where(np.arange(n) % 1000 == 999, "bad", "1.5")
    body = "\n".join(
        f"c{i % 5000},{d},{a}" for i, (d, a) in enumerate(zip(days, amounts, strict=True))
    )
    path = _write(tmp_path, 'customer,date,amount\n"multi\nline",2024-01-01,2\n' + body + "\n")
    log = read_transactions(path, on_error="skip")
    assert [line for line, _ in log.skipped] == [i + 4 for i in range(999, n, 1000)]
    assert log.rows_read == n + 1
    assert len(log.frame) == n + 1 - len(log.skipped) - log.merged_rows
    assert log.frame["customer_id"].is_monotonic_increasing


# --- merging and cohorts ------------------------------------------------------------------------


def test_same_day_orders_are_one_transaction(tmp_path: Path) -> None:
    content = _lines(
        [
            ("b", "2024-01-02", "1.5"),
            ("a", "2024-01-03T09:00", "2"),
            ("b", "2024-01-01", "4"),
            ("a", "2024-01-03T18:00", "0"),
            ("b", "20240102", "2.5"),
            ("a", "2024-01-03", "1"),
        ]
    )
    log = _read(tmp_path, content)
    assert log.frame["customer_id"].tolist() == ["a", "b", "b"]
    assert log.frame["date"].dt.day.tolist() == [3, 1, 2]
    assert log.frame["amount"].tolist() == [3.0, 4.0, 4.0]
    assert (log.rows_read, log.merged_rows) == (6, 3)
    assert log.frame.index.tolist() == [0, 1, 2]


def test_cohort_days(tmp_path: Path) -> None:
    log = _read(tmp_path, "customer,date,amount\n" + _lines(ROWS))
    cohorts = cohort_days(log)
    assert list(cohorts.columns) == ["customer_id", "first_date", "day", "amount"]
    assert cohorts["day"].dtype == np.int64
    assert cohorts["day"].tolist() == [0, 27, 0, 0]
    assert cohorts["first_date"].astype(str).tolist() == [
        "2024-01-05",
        "2024-01-05",
        "2024-01-07",
        "2024-01-06",
    ]
    assert cohorts["amount"].tolist() == EXPECTED["amount"].tolist()


# --- property: any valid log in any supported format reads back as written ----------------------

DELIMITERS = {",": ",", ";": ";", "\t": "\t", WHITESPACE: "  "}
Row = tuple[str, str, float]


@st.composite
def _logs(draw: st.DrawFn, quoted: bool) -> list[Row]:
    """1-30 purchases by 1-5 customers; quoted ids may hold blanks, delimiters, line breaks."""
    chars = string.ascii_letters + string.digits + "_-." + (" ,;\t\n" if quoted else "")
    ids = st.text(chars, min_size=1, max_size=6).filter(lambda c: c == c.strip())
    customers = draw(st.lists(ids, min_size=1, max_size=5))
    days = st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 12, 31)).map(str)
    amounts = st.one_of(st.just(0.0), st.floats(0, 1e6).map(lambda x: round(x, 2)))
    return draw(
        st.lists(st.tuples(st.sampled_from(customers), days, amounts), min_size=1, max_size=30)
    )


@st.composite
def _files(draw: st.DrawFn) -> tuple[list[Row], str, bool, bytes, int]:
    """A log written in a random supported format, with blank lines and one bad row at random
    places; returns the log, the delimiter, whether there is a header, the bytes, the bad line."""
    delimiter, quote = draw(st.sampled_from(list(DELIMITERS))), draw(st.booleans())
    header, extra, compact = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    rows = draw(_logs(quote))

    def line(customer: str, day: str, amount: str) -> str:
        fields = [f'"{customer}"' if quote else customer, day, amount] + ["x"] * extra
        return DELIMITERS[delimiter].join(fields)

    lines = [line(c, d.replace("-", "") if compact else d, repr(a)) for c, d, a in rows]
    lines.insert(draw(st.integers(0, len(lines))), line("bad", "2024-01-01", "oops"))
    lines = [line("customer_id", "date", "amount")] * header + lines
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "  ", "\t"])))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = "\ufeff" * draw(st.booleans()) + newline.join(lines) + newline * draw(st.booleans())
    bad = lines.index(line("bad", "2024-01-01", "oops"))
    bad_line = newline.join(lines[: bad + 1]).count("\n") + 1  # quoted ids may span lines
    return rows, delimiter, header, text.encode("utf-8"), bad_line


@settings(max_examples=60, deadline=None)
@given(case=_files())
def test_round_trip(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[list[Row], str, bool, bytes, int]
) -> None:
    rows, delimiter, header, content, bad_line = case
    path = tmp_path_factory.mktemp("log") / "log.txt"
    path.write_bytes(content)

    log = read_transactions(path, on_error="skip")

    written = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    written["customer_id"] = written["customer_id"].astype("str")
    written["date"] = pd.to_datetime(written["date"]).astype("datetime64[ns]")
    expected = written.groupby(["customer_id", "date"], as_index=False)["amount"].sum()
    pd.testing.assert_frame_equal(log.frame, expected)
    assert (log.delimiter, log.has_header) == (delimiter, header)
    assert log.skipped == [(bad_line, "amount 'oops' is not a number")]
    assert (log.rows_read, log.merged_rows) == (len(rows) + 1, len(rows) - len(expected))
