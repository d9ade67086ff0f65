"""Seller accounts: the stored ones and the environment's, their encrypted secrets, the Open
Platform's tokens kept alive, and each account's platform as the services use it."""
