"""Crowd feedback loop: routing, assignment, reviewers, truth inference, redaction."""
