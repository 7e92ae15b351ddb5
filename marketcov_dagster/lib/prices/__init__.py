"""Prices true to the market: the corporate-actions ledger (``actions``), adjustment factors
(``factors``), adjusted views of raw bars derived on read (``adjust``), the check that raw price
jumps are explained by the ledger (``jumps``) and revisions of stored bars (``revisions``).

Bars are stored raw, as traded; nothing adjusted is ever stored as the truth. Every adjusted
value is ``raw × factor`` with the factor a product of ledger entries, so it can be proven back.
"""
