"""The platform: enrollment changes pushed to its endpoint, and the flags snapshot it can load."""
