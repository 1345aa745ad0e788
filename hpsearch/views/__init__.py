"""Stage 7, looking at results: listings, summaries and the HTML report, exported bundles,
and the dashboard. Views read what the search wrote; they never run workers.
"""
