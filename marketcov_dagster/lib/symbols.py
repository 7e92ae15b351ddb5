"""Reversible mapping between market symbols and Dagster-legal asset key components.

Dagster names allow ``[A-Za-z0-9_]``. Letters and digits pass through unchanged; every other
character, including ``_`` itself, becomes ``_XX_`` with ``XX`` its two-digit upper-case hex
code. ``BRK.B`` -> ``BRK_2E_B``, ``BTC/USD`` -> ``BTC_2F_USD``. Because ``_`` always starts an
escape, decoding is unambiguous.
"""

from __future__ import annotations

import re

SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-/=^_]{0,31}$")
_ESCAPE_RE = re.compile(r"_([0-9A-F]{2})_")
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def is_valid_symbol(symbol: str) -> bool:
    """Upper-case letters and digits, plus ``. - / = ^ _`` after the first character."""
    return bool(SYMBOL_RE.match(symbol))


def symbol_to_key_part(symbol: str) -> str:
    return "".join(c if c in _PLAIN else f"_{ord(c):02X}_" for c in symbol)


def key_part_to_symbol(part: str) -> str:
    decoded = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), part)
    if symbol_to_key_part(decoded) != part:
        raise ValueError(f"{part!r} is not an encoded symbol")
    return decoded
