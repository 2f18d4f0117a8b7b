"""Marshmallow schemas for each contract, one module per document."""
