"""Shared musical types, music theory and the rule-based composer."""
