"""Checks of specs/*.yaml and of the clients generated from them."""
