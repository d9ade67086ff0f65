"""The outbox: events written in the transaction that makes work final, delivered after commit
to the shop's callback task and its webhooks, at least once."""
