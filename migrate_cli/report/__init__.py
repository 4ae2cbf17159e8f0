"""The adoption report: figures from the store, drawn as one self-contained HTML file."""
