"""Delivery events from the providers (bounces, complaints, deliveries) and what they do."""
