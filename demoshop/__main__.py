"""`python -m demoshop [--port N] [--data DIR] [--db PATH] [--reset]`: start the demo shop's back office.

The bearer token comes from DEMOSHOP_TOKEN (required); every flag also has a DEMOSHOP_* variable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError

from demoshop.app import create_app
from demoshop.loader import DataError
from demoshop.settings import ShopSettings
from demoshop.store import Shop


def parse_settings(argv: list[str] | None = None) -> tuple[ShopSettings, bool]:
    parser = argparse.ArgumentParser(prog="python -m demoshop", description=__doc__)
    parser.add_argument("--host", help="listen address (DEMOSHOP_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (DEMOSHOP_PORT; default 8090)")
    parser.add_argument("--data", type=Path, help="the τ-bench retail data folder (DEMOSHOP_DATA)")
    parser.add_argument("--db", type=Path, help="the SQLite file (DEMOSHOP_DB; default var/demoshop/shop.db)")
    parser.add_argument("--reset", action="store_true", help="reload the data folder, dropping every change")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {
        name: value for name in ("host", "port", "data", "db") if (value := getattr(args, name)) is not None
    }
    return ShopSettings(**overrides), args.reset


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings, reset = parse_settings(argv)
    except ValidationError as error:
        fields = ", ".join(f"DEMOSHOP_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        print(f"demoshop: bad settings: {fields}", file=sys.stderr)
        return 2
    shop = Shop(settings.db, settings.data)
    try:
        loaded = shop.prepare(reset=reset)
    except DataError as error:
        print(f"demoshop: {error}", file=sys.stderr)
        return 2
    logging.getLogger("demoshop").info(
        "store %s at %s (data %s)", "loaded" if loaded else "kept", settings.db, settings.data
    )
    app = create_app(shop, settings.token.get_secret_value())
    try:
        # Our own request log line (app.py) replaces uvicorn's, which would show ids and e-mails in query strings.
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False)
    finally:
        shop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
