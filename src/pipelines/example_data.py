"""The workshop notebook's web shop data generator (faker), reproducible with a seed.

    from pipelines.example_data import generate_webshop, write_webshop_csv
    rows = generate_webshop(records=100, customers=10, products=5, seed=1)
    write_webshop_csv("example_input.csv", records=10_000, customers=500, products=50, seed=42)

Same columns as the notebook's ``example_input.csv``: transactionId, userId, email, age,
tshirtSize, fullName, phoneNumber, address, transactionAmount, items, totalItems, date,
purposeConsent. ``date`` is 'YYYY-MM-DD HH:mm:ss' (UTC) within 180 days before ``now``.
"""
from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from privacy.private_files import open_private

COLUMNS = [
    "transactionId", "userId", "email", "age", "tshirtSize", "fullName", "phoneNumber",
    "address", "transactionAmount", "items", "totalItems", "date", "purposeConsent",
]
DEFAULT_RECORDS, DEFAULT_CUSTOMERS, DEFAULT_PRODUCTS = 10_000, 500, 50


def generate_webshop(records: int = DEFAULT_RECORDS, customers: int = DEFAULT_CUSTOMERS,
                     products: int = DEFAULT_PRODUCTS, seed: int | None = 42, now: datetime | None = None):
    """Yield web shop transactions as dicts of the notebook's columns (``items`` as a list)."""
    if customers < 1 or products < 1 or records < 0:
        raise ValueError("records >= 0, customers >= 1 and products >= 1 are required")
    try:
        from faker import Faker   # the workshop extra: the graph and its workers never need it
    except ImportError:
        raise ValueError("generating example data needs faker: pip install 'beam-privacy-streams[workshop]'") from None
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    customer_ids = rng.sample(range(100000, 999999), customers)
    people = [
        (customer_ids[i], fake.free_email(), rng.randrange(99), rng.choice(["XS", "S", "M", "L", "XL"]),
         fake.name(), fake.phone_number(), fake.street_address())
        for i in range(customers)
    ]
    product_ids = rng.sample(range(10000, 19999), products)
    for _ in range(records):
        items = rng.choices(product_ids, k=rng.randrange(1, 7))
        user_id, email, age, size, name, phone, address = rng.choice(people)
        yield {
            "transactionId": rng.randrange(100000000, 999999999),
            "userId": user_id,
            "email": email,
            "age": age,
            "tshirtSize": size,
            "fullName": name,
            "phoneNumber": phone,
            "address": address,
            "transactionAmount": rng.randrange(323),
            "items": items,
            "totalItems": len(items),
            "date": (now - timedelta(days=rng.randrange(180))).strftime("%Y-%m-%d %H:%M:%S"),
            "purposeConsent": rng.randint(0, 2),
        }


def write_webshop_csv(path: str | Path, **kwargs) -> int:
    """Write the generated rows as the notebook's CSV (``items`` as '[1, 2]'); returns the count."""
    count = 0
    with open_private(path, "w", newline="") as handle:  # personal data (made up, but shaped like the real)
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in generate_webshop(**kwargs):
            row["items"] = "[" + ", ".join(str(i) for i in row["items"]) + "]"
            writer.writerow(row)
            count += 1
    return count
