"""ST-MEM's 12 lead slots and how the lead names found in files map onto them."""

from __future__ import annotations

import re

STMEM_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

_ALIASES = {
    "i": "I", "ii": "II", "iii": "III", "avr": "aVR", "avl": "aVL", "avf": "aVF",
    "mli": "I", "mlii": "II", "mliii": "III", "d1": "I", "d2": "II", "d3": "III",
    "di": "I", "dii": "II", "diii": "III",
}  # fmt: skip


def canonical_lead(name: str) -> str | None:
    """ST-MEM name of a lead label as files write it ("Lead I", "MLII", "avf", "V5"), else None.

    Modified limb leads (MLII of MIT-BIH) go to their limb slot: they are the closest lead ST-MEM knows.
    """
    key = re.sub(r"[\s_\-]+", "", name.strip().lower())
    key = re.sub(r"^(lead|ableitung|dérivation|derivation|derivación|derivazione|誘導)", "", key)
    key = re.sub(r"(誘導)$", "", key)
    if key in _ALIASES:
        return _ALIASES[key]
    match = re.fullmatch(r"(?:ml)?v([1-6])", key)
    if match:
        return f"V{match.group(1)}"
    return None


def lead_slot(name: str) -> int | None:
    """Index of a lead in ST-MEM order, or None when the name is not one of the 12 standard leads."""
    canonical = canonical_lead(name)
    return None if canonical is None else STMEM_LEADS.index(canonical)
