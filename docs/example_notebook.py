"""Patron in a notebook: a shop's export in, metrics, a model, lists and segments out.

    .venv/bin/python docs/example_notebook.py        # runs in CI (tests/test_notebook_api.py)
"""

import patron
from features.synthetic import generate_purchases

# a shop's export (here: a synthetic one with planted structure)
generate_purchases(n_customers=200, n_items=80, n_days=120, seed=1).purchases.to_csv(
    "example-export.csv", index=False)

purchases = patron.load_purchases("example-export.csv")
print(f"{len(purchases):,} purchases of {purchases['customer_id'].nunique()} customers")

metrics = patron.evaluate(purchases, models=["popularity", "repeat_buy", "itemknn"])
print(metrics.pivot_table(index=["model", "mode"], columns="metric", values="value")
      [["ndcg", "recall"]].round(4))

model = patron.train(purchases, model="itemknn")
print(patron.recommend(model, purchases["customer_id"].unique()[:3], k=5))

tables = patron.segments(purchases)
print(tables.customers["value_segment"].value_counts().head())
