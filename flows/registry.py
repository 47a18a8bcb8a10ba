"""The champion registry: which model is in service, every promotion decision, and which dumps were consumed.

One small JSON file per registry, ``<data root>/registry/<name>.json``, rewritten whole on every decision (write to a
temporary name, then move), so it can be read with ``cat`` or ``gptforge champion`` (``flows.cards.format_registry``)::

    {"name": "weekly",
     "champion": {"cycle": "weekly-0001", "pretrain": "weekly-0001", "finetune": {"fortunes": "weekly-0001-fortunes"},
                  "tokenizer": "weekly-0001", "metric": "bits_per_byte", "value": 1.93, "eval": "weekly-0001", …},
     "dumps_seen": {"RS_2019-06.zst": 123456},          # name → size in bytes
     "history": [{"cycle": …, "decision": "promoted" | "kept" | "nothing-new", "reason": …, …}, …]}
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from flows.store import DataRoot, utc_now
from gptcore.names import check_name

FOLDER = "registry"


@dataclass
class Registry:
    name: str
    champion: dict[str, Any] | None = None
    dumps_seen: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, root: DataRoot, name: str) -> "Registry":
        path = registry_path(root, name)
        if not root.fs.exists(path):
            return cls(name)
        with root.fs.open(path, "rb") as fh:
            data = json.loads(fh.read())
        return cls(name, data.get("champion"), data.get("dumps_seen", {}), data.get("history", []))

    def record(self, root: DataRoot, decision: dict[str, Any], champion: dict[str, Any] | None = None,
               dumps: dict[str, int] | None = None) -> None:
        """Append a decision (and the new champion, and the dumps it consumed) and save the registry."""
        self.history.append({"at": utc_now(), **decision})
        if champion is not None:
            self.champion = champion
        self.dumps_seen.update(dumps or {})
        self.save(root)

    def save(self, root: DataRoot) -> None:
        path = registry_path(root, self.name)
        root.fs.makedirs(f"{root.url}/{FOLDER}", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with root.fs.open(tmp, "wb") as fh:
            fh.write((json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n").encode())
        root.fs.mv(tmp, path)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "champion": self.champion, "dumps_seen": self.dumps_seen, "history": self.history}


def registry_path(root: DataRoot, name: str) -> str:
    return f"{root.url}/{FOLDER}/{check_name(name, 'registry')}.json"
