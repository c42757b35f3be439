"""Column names of the canonical purchase-log schema and of derived tables."""

CUSTOMER_ID = "customer_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"
QUANTITY = "quantity"
PRICE = "price"  # unit price
ORDER_ID = "order_id"  # basket / invoice
CATEGORY = "category"
ITEM_NAME = "item_name"

REQUIRED = (CUSTOMER_ID, ITEM_ID, TIMESTAMP)
OPTIONAL = (QUANTITY, PRICE, ORDER_ID, CATEGORY, ITEM_NAME)
ALL = REQUIRED + OPTIONAL

# derived
SPEND = "spend"  # quantity * price
RANK = "rank"
SCORE = "score"
PRICE_TIER = "price_tier"

__all__ = [
    "CUSTOMER_ID", "ITEM_ID", "TIMESTAMP", "QUANTITY", "PRICE", "ORDER_ID", "CATEGORY",
    "ITEM_NAME", "REQUIRED", "OPTIONAL", "ALL", "SPEND", "RANK", "SCORE", "PRICE_TIER",
]
