"""Growable struct-of-arrays storage for the memory store."""

from __future__ import annotations

from typing import Any

import numpy as np


class Columns:
    """Named numpy columns that grow by doubling; rows are appended in batches."""

    def __init__(self, specs: dict[str, tuple[Any, tuple[int, ...], Any]]) -> None:
        self.n = 0
        self._specs = specs
        self.data = {
            name: np.full((16, *shape), fill, dtype=dtype)
            for name, (dtype, shape, fill) in specs.items()
        }

    def reserve(self, rows: int) -> None:
        capacity = len(next(iter(self.data.values())))
        if self.n + rows <= capacity:
            return
        while capacity < self.n + rows:
            capacity *= 2
        for name, (dtype, shape, fill) in self._specs.items():
            grown = np.empty((capacity, *shape), dtype=dtype)
            grown[: self.n] = self.data[name][: self.n]
            grown[self.n :] = fill
            self.data[name] = grown

    def append(self, **columns: Any) -> np.ndarray:
        rows = len(next(iter(columns.values())))
        self.reserve(rows)
        for name, values in columns.items():
            self.data[name][self.n : self.n + rows] = values
        index = np.arange(self.n, self.n + rows)
        self.n += rows
        return index

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]


def grow_rows(array: np.ndarray, rows: int, fill: Any) -> np.ndarray:
    grown = np.full((rows, *array.shape[1:]), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def grow_cols(array: np.ndarray, fill: Any) -> np.ndarray:
    grown = np.full((array.shape[0], array.shape[1] * 2), fill, dtype=array.dtype)
    grown[:, : array.shape[1]] = array
    return grown
