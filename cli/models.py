"""A model file served by `anstoss serve --model`, reloaded on SIGHUP."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from engine.decide import DecisionEngine
from engine.errors import ModelError

log = logging.getLogger("anstoss.models")


class ModelFile:
    def __init__(self, engine: DecisionEngine, path: Path, arm: str) -> None:
        self.engine = engine
        self.path = path
        self.arm = arm

    def _read(self) -> tuple[bytes, str]:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{self.path}: cannot read model: {exc.strerror}") from None
        return data, hashlib.sha256(data).hexdigest()[:10]

    def _swap(self, data: bytes, label: str) -> str:
        try:
            return self.engine.swap_model(self.arm, data, label)
        except ModelError as exc:  # not a model, or no bandit arm of that name: name the file
            raise ModelError(f"{self.path}: {exc}") from None

    def load_if_new(self) -> None:
        """Serve the file unless the arm already continues from it (a restart keeps learning)."""
        data, label = self._read()
        current = self.engine.model_versions().get(self.arm, "")
        if current.split("+")[0] == label:
            log.info("arm %s continues from model %s (%s)", self.arm, label, current)
            return
        version = self._swap(data, label)
        log.info("arm %s serves %s as %s", self.arm, self.path, version)

    def reload(self) -> None:
        """SIGHUP: swap to the file's current content; a bad file leaves the old model serving."""
        try:
            data, label = self._read()
            version = self._swap(data, label)
            log.info("arm %s reloaded %s as %s", self.arm, self.path, version)
        except ModelError as exc:
            log.error("model reload refused, previous model keeps serving: %s", exc)
