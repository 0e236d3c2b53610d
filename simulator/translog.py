"""Read a customer purchase log as it comes from real systems, for simulator calibration.

One row per purchase: customer id, date, amount; any other columns are ignored. The reader accepts
files with or without a header row; comma-, semicolon-, tab- or whitespace-separated fields (found
from the first lines); LF or CRLF line endings; UTF-8 with or without a BOM; CSV quoting; dates as
`YYYY-MM-DD` (a time part and UTC offset are dropped, the date is taken as written) or `YYYYMMDD`.
In files not separated by commas, amounts may use a decimal comma (`12,50`) if none uses a dot.

A row with an empty customer id, a bad date or a missing, non-numeric, non-finite or negative
amount is malformed: by default the reader raises `TransactionFileError` naming the file and line
of each (up to ten) bad row; with `on_error="skip"` it drops them and lists them in
`TransactionLog.skipped`. Several orders by one customer on one day are one transaction: their
amounts are summed. Parsing and validation are vectorised (pandas), so a million rows take seconds.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import AnstossError

WHITESPACE = "whitespace"  # `TransactionLog.delimiter` for fields separated by runs of blanks
KEYS = ("customer", "date", "amount")
DEFAULT_NAMES = {
    "customer": ("customer", "customer_id", "cust", "cust_id", "id", "client"),
    "date": ("date", "day", "order_date", "purchase_date", "timestamp"),
    "amount": ("amount", "value", "sales", "revenue", "total", "price", "dollar_value"),
}
MAX_LISTED = 10  # malformed lines shown in an error message
_SNIFF_CHARS = 64 * 1024
_SNIFF_LINES = 50
_ISO_DATE = (  # [0-9], not \d: that matches any Unicode digit and makes pandas fall back to `re`
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # then an optional time and UTC offset, which are dropped
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)? ?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
_FIRST_DAY, _LAST_DAY = pd.Timestamp("1678-01-01"), pd.Timestamp("2261-12-31")  # datetime64[ns]


class TransactionFileError(AnstossError, ValueError):
    """A transaction file cannot be read; the message names the file, the line and the problem."""


@dataclass(frozen=True, eq=False)
class TransactionLog:
    """A validated purchase log: one row per customer and purchase day, sorted by both.

    `rows_read` counts data rows (not the header, not blank lines); `merged_rows` counts rows folded
    into an earlier same-day row of the same customer, so that
    `len(frame) == rows_read - len(skipped) - merged_rows`.
    """

    frame: pd.DataFrame  # customer_id (str), date (datetime64[ns]), amount (float64)
    source: Path
    rows_read: int
    merged_rows: int
    skipped: list[tuple[int, str]]  # (1-based line number, problem) with on_error="skip"
    delimiter: str  # ",", ";", "\t" or WHITESPACE
    has_header: bool


def read_transactions(
    path: str | Path, columns: str | None = None, *, on_error: str = "raise"
) -> TransactionLog:
    """Read and validate a purchase log; `columns` is e.g. "customer=1,date=2,amount=4".

    Columns are given by 1-based position or by header name. Without `columns`, a header's names
    are matched against `DEFAULT_NAMES`; a file without a header has customer, date, amount first.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    spec = _parse_spec(columns) if columns is not None else None
    path = Path(path)
    data, text = _load(path)
    first_line, head = _head(path, text)
    delimiter = _detect_delimiter(path, head)
    first = _first_record(path, head, delimiter)
    positions, has_header = _resolve_columns(path, spec, first, delimiter)
    raw, lines = _read_fields(path, data, text, delimiter, positions, first_line, has_header)
    if raw.empty:
        raise TransactionFileError(f"{path}: the file has a header but no data rows")
    frame, bad = _validate(raw, delimiter)
    skipped = _report(path, lines[bad.index], bad, on_error)
    if frame.empty:
        raise TransactionFileError(
            f"{path}: no valid rows ({len(skipped)} malformed, e.g. line {skipped[0][0]}: "
            f"{skipped[0][1]})"
        )
    merged = frame.groupby(["customer_id", "date"], sort=True, as_index=False)["amount"].sum()
    return TransactionLog(
        frame=merged,
        source=path,
        rows_read=len(raw),
        merged_rows=len(frame) - len(merged),
        skipped=skipped,
        delimiter=delimiter,
        has_header=has_header,
    )


def cohort_days(log: TransactionLog) -> pd.DataFrame:
    """Purchases relative to each customer's first: customer_id, first_date, day, amount.

    `day` counts days since the customer's first purchase (0 for the first purchase itself).
    """
    frame = log.frame
    first = frame.groupby("customer_id", sort=False)["date"].transform("min")
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "first_date": first,
            "day": (frame["date"] - first).dt.days.astype("int64"),
            "amount": frame["amount"],
        }
    ).reset_index(drop=True)


# --- the columns spec ---------------------------------------------------------------------------


def _parse_spec(columns: str) -> dict[str, int | str]:
    """Parse e.g. 'customer=1,date=order_date,amount=4' into {"customer": 1, "date": ...}."""
    spec: dict[str, int | str] = {}
    for part in columns.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not value:
            raise TransactionFileError(
                f"columns {columns!r}: {part.strip()!r} is not KEY=COLUMN "
                "(e.g. 'customer=1,date=2,amount=3' or 'customer=cust_id,date=day,amount=sales')"
            )
        if key.lower() not in KEYS:
            raise TransactionFileError(
                f"columns {columns!r}: unknown key {key!r}; the keys are customer, date, amount"
            )
        if key.lower() in spec:
            raise TransactionFileError(f"columns {columns!r}: {key!r} is given twice")
        number = re.fullmatch(r"[+-]?[0-9]+", value)
        if number and int(value) < 1:
            raise TransactionFileError(
                f"columns {columns!r}: bad position {value} for {key}; positions start at 1"
            )
        spec[key.lower()] = int(value) if number else value
    missing = [key for key in KEYS if key not in spec]
    if missing:
        raise TransactionFileError(f"columns {columns!r}: missing {', '.join(missing)}")
    return spec


def _resolve_columns(
    path: Path, spec: dict[str, int | str] | None, first: list[str], delimiter: str
) -> tuple[dict[str, int], bool]:
    """1-based positions of customer, date, amount, and whether the first row is a header."""
    if spec is not None and any(isinstance(v, str) for v in spec.values()):
        positions = {
            k: v if isinstance(v, int) else _find_name(path, k, v, first) for k, v in spec.items()
        }
        has_header = True
    else:
        positions = {
            k: int(v) for k, v in (spec or {"customer": 1, "date": 2, "amount": 3}).items()
        }
        has_header = _is_header(first, positions["date"], positions["amount"], delimiter)
        if spec is None and has_header:
            positions = {key: _match_default(path, key, first) for key in KEYS}
    for key, position in positions.items():  # pandas takes the number of columns from row 1
        if position > len(first):
            raise TransactionFileError(
                f"{path}: {key} is column {position}, but the first row has only {len(first)} "
                f"fields (delimiter {delimiter!r})"
            )
    if len(set(positions.values())) < len(KEYS):
        where = ", ".join(f"{key} = column {position}" for key, position in positions.items())
        raise TransactionFileError(f"{path}: two keys name the same column ({where})")
    return positions, has_header


def _is_header(row: list[str], date: int, amount: int, delimiter: str) -> bool:
    """Whether neither the row's date nor its amount field (1-based positions) parses; a row
    where only one does is a data row, and validation will say what is wrong with it."""
    fields = pd.Series([row[p - 1] if p <= len(row) else "" for p in (date, amount)], dtype="str")
    return bool(
        _parse_dates(fields[:1]).isna().all() and _parse_amounts(fields[1:], delimiter).isna().all()
    )


def _find_name(path: Path, key: str, name: str, header: list[str]) -> int:
    hits = [i for i, h in enumerate(header) if h == name] or [
        i for i, h in enumerate(header) if h.casefold() == name.casefold()
    ]
    if len(hits) != 1:
        problem = "is not in the header" if not hits else "appears more than once in the header"
        raise TransactionFileError(
            f"{path}: {key} column {name!r} {problem}; header names: {_names(header)}"
        )
    return hits[0] + 1


def _match_default(path: Path, key: str, header: list[str]) -> int:
    normal = [re.sub(r"[^0-9a-z]+", "_", h.casefold()).strip("_") for h in header]
    hits = [i for i, n in enumerate(normal) if n in DEFAULT_NAMES[key]]
    if len(hits) == 1:
        return hits[0] + 1
    problem = (
        f"no {key} column (looked for {', '.join(DEFAULT_NAMES[key])})"
        if not hits
        else f"ambiguous {key} column: {_names([header[i] for i in hits])}"
    )
    raise TransactionFileError(
        f"{path}: the header has {problem}; header names: {_names(header)}. Name the columns, "
        "e.g. columns='customer=cust_id,date=order_date,amount=sales' (or by position, "
        "'customer=1,date=2,amount=3', if the file has no header)"
    )


# --- reading ------------------------------------------------------------------------------------


def _load(path: Path) -> tuple[bytes, str]:
    """The file's bytes and its text (BOM removed); unreadable, binary or non-UTF-8 files fail."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TransactionFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise TransactionFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise TransactionFileError(f"{path}: the file is UTF-16 text; save it as UTF-8")
    if b"\x00" in data:
        raise TransactionFileError(f"{path}: this is a binary file, not a delimited text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TransactionFileError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    return data, text


def _is_blank(line: str) -> bool:
    return not line.strip(' \t\r\n,;"')


def _head(path: Path, text: str) -> tuple[int, str]:
    """The first non-blank line's number, and the text from there on (some kB), for sniffing."""
    lines = text[:_SNIFF_CHARS].split("\n")
    if len(text) > _SNIFF_CHARS and len(lines) > 1:
        lines.pop()  # cut in the middle
    start = next((i for i, line in enumerate(lines) if not _is_blank(line)), None)
    if start is None:
        raise TransactionFileError(f"{path}: the file has no rows")
    return start + 1, "\n".join(lines[start:])


def _detect_delimiter(path: Path, head: str) -> str:
    """The first of tab, semicolon, comma, whitespace that splits nearly all sniffed lines into the
    same number (>= 3) of fields, else the first that splits most lines into >= 3 fields."""
    unquoted = re.sub(r'"[^"]*"', "q", head).split("\n")
    lines = [line for line in unquoted if not _is_blank(line)][:_SNIFF_LINES]
    splits = {d: [line.count(d) + 1 for line in lines] for d in ("\t", ";", ",")}
    splits[WHITESPACE] = [len(line.split()) for line in lines]
    for d, fields in splits.items():
        mode = max(fields, key=fields.count)
        if mode >= 3 and fields.count(mode) >= 0.9 * len(lines):
            return d
    for d, fields in splits.items():
        if sum(n >= 3 for n in fields) >= 0.5 * len(lines):
            return d
    raise TransactionFileError(
        f"{path}: cannot find the field delimiter: the first lines do not split into 3 or more "
        f"fields by comma, semicolon, tab or whitespace; first line: {lines[0][:80]!r}"
    )


def _parse_csv(path: Path, source: io.IOBase, delimiter: str, **options: object) -> pd.DataFrame:
    """pandas.read_csv with every field a string, no NA values and blank lines kept as rows."""
    sep = r"\s+" if delimiter == WHITESPACE else delimiter
    options = {
        "header": None,
        "dtype": str,
        "na_filter": False,
        "skip_blank_lines": False,
    } | options
    try:
        return pd.read_csv(source, sep=sep, **options)
    except (ValueError, pd.errors.ParserError) as exc:
        raise TransactionFileError(f"{path}: cannot parse the file: {exc}") from None


def _first_record(path: Path, head: str, delimiter: str) -> list[str]:
    """The stripped fields of the first row, parsed exactly as the full read will parse them."""
    row = _parse_csv(path, io.StringIO(head), delimiter, nrows=1)
    return [str(v).strip() for v in row.iloc[0]]


def _read_fields(
    path: Path,
    data: bytes,
    text: str,
    delimiter: str,
    positions: dict[str, int],
    first_line: int,
    has_header: bool,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The stripped customer, date and amount fields of the data rows (not blank, not the header),
    read from `first_line` on (the lines before are blank), and the line number of every row read:
    `lines[fields.index]` are those of the data rows."""
    usecols = sorted(p - 1 for p in positions.values())  # shorter rows get "", longer are cut
    options = {"usecols": usecols, "skiprows": first_line - 1, "encoding": "utf-8-sig"}
    raw = _parse_csv(path, io.BytesIO(data), delimiter, **options)
    fields = pd.DataFrame({key: raw[p - 1].str.strip() for key, p in positions.items()})
    n_lines = data.count(b"\n") + (not data.endswith(b"\n")) - (first_line - 1)
    if len(fields) == n_lines:
        lines = np.arange(first_line, first_line + len(fields))
    else:  # quoted fields span lines: let the csv module count them
        lines = _record_lines(text, delimiter)
        lines = lines[lines >= first_line]
        if len(lines) != len(fields):
            raise TransactionFileError(f"{path}: cannot tell rows from lines; check the quoting")
    data_rows = ~(fields == "").all(axis=1).to_numpy()
    data_rows[0] &= not has_header
    return fields[data_rows], lines


def _record_lines(text: str, delimiter: str) -> np.ndarray:
    """The 1-based line on which each record starts (Python's csv reader counts the lines)."""
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=" " if delimiter == WHITESPACE else delimiter,
        skipinitialspace=delimiter == WHITESPACE,
    )
    starts, line = [], 0
    for _ in reader:
        starts.append(line + 1)
        line = reader.line_num
    return np.asarray(starts, dtype=np.int64)


# --- validation ---------------------------------------------------------------------------------


def _parse_dates(values: pd.Series) -> pd.Series:
    """YYYY-MM-DD[ time] or YYYYMMDD -> datetime64[ns] day; NaT when bad or out of range."""
    day = values.str.slice(0, 10).where(values.str.fullmatch(_ISO_DATE))
    compact = values.str.fullmatch(r"[0-9]{8}")
    if compact.any():
        iso = values.str.slice(0, 4) + "-" + values.str.slice(4, 6) + "-" + values.str.slice(6, 8)
        day = day.where(~compact, iso)
    parsed = pd.to_datetime(day, format="%Y-%m-%d", errors="coerce")
    return parsed.where(parsed.between(_FIRST_DAY, _LAST_DAY)).astype("datetime64[ns]")


def _parse_amounts(values: pd.Series, delimiter: str) -> pd.Series:
    """Numbers as float64 (NaN when not a number); a decimal comma is read if no value has a dot."""
    if (
        delimiter != ","
        and not values.str.contains(".", regex=False).any()
        and values.str.fullmatch(r"[+-]?[0-9]*,[0-9]+").any()
    ):
        values = values.str.replace(",", ".", regex=False)
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _validate(raw: pd.DataFrame, delimiter: str) -> tuple[pd.DataFrame, pd.Series]:
    """Valid rows as customer_id/date/amount, and the problem of each bad row (same index)."""
    dates = _parse_dates(raw["date"])
    amounts = _parse_amounts(raw["amount"], delimiter)
    checks = [  # in order of precedence; the first word names the field shown for {}
        (raw["customer"] == "", "customer id is empty"),
        (raw["date"] == "", "date is empty"),
        (dates.isna(), "date {} is not a date (YYYY-MM-DD or YYYYMMDD, years 1678-2261)"),
        (raw["amount"] == "", "amount is empty"),
        (
            amounts.isna() & ~raw["amount"].str.fullmatch(r"(?i)[+-]?nan"),
            "amount {} is not a number",
        ),
        (~np.isfinite(amounts), "amount {} is not a finite number"),
        (amounts < 0, "amount {} is negative"),
    ]
    bad_mask = np.logical_or.reduce([mask.to_numpy() for mask, _ in checks])
    bad = raw[bad_mask]
    problems = pd.Series("", index=bad.index, dtype=object)
    for mask, message in reversed(checks):  # so that the first problem of a row wins
        hit = mask[bad_mask]
        if hit.any() and "{}" in message:
            values = _quoted(bad.loc[hit, message.split()[0]])
            problems[hit] = [message.format(value) for value in values]
        elif hit.any():
            problems[hit] = message
    good = ~bad_mask
    frame = pd.DataFrame(
        {
            "customer_id": raw["customer"][good].astype("str"),
            "date": dates[good],
            "amount": amounts[good] + 0.0,  # -0.0 -> 0.0
        }
    )
    return frame, problems


def _report(
    path: Path, lines: np.ndarray, problems: pd.Series, on_error: str
) -> list[tuple[int, str]]:
    """(line, problem) of the malformed rows, in file order; raises unless on_error is "skip"."""
    found = list(zip(lines.tolist(), problems.tolist(), strict=True))
    if found and on_error == "raise":
        more = f", the first {MAX_LISTED}" if len(found) > MAX_LISTED else ""
        listed = "\n".join(f"  {path}:{line}: {problem}" for line, problem in found[:MAX_LISTED])
        raise TransactionFileError(
            f"{path}: {len(found)} malformed row{'s' if len(found) > 1 else ''}{more}:\n{listed}\n"
            "Fix them, or drop them with on_error='skip' (anstoss: --skip-bad-rows)."
        )
    return found


# --- small helpers ------------------------------------------------------------------------------


def _quoted(values: pd.Series, width: int = 40) -> list[str]:
    return [repr(v if len(v) <= width else v[: width - 3] + "...") for v in values.tolist()]


def _names(header: list[str]) -> str:
    return ", ".join(repr(h) for h in header)
