"""The `shop` demo company's back office: a stand-in for a real company's order system.

It is NOT part of aftercare. aftercare's `actions` service reaches it over HTTP, as it would reach
any company's system, through the tenant's connector catalog. It serves the τ-bench retail store
(users, orders, products) from a SQLite database loaded from the data folder, with the τ-bench
retail tools' semantics behind a small REST-ish JSON API (see README.md).
"""
